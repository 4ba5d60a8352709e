/** The verdict of one case, and of a run of cases. */
import { APPLICABILITY_NEEDS, type CaseRole, type ConformanceCase, type Level } from "./case.ts";

/** "error": the harness itself failed (a bug, or a fixture command that failed), not the peer. */
export type CaseStatus = "pass" | "fail" | "skip" | "error";

/**
 * Why a case was skipped. "not-applicable": it does not apply to the peer as its fixture or flags
 * describe it (an end-of-stream case for an unbounded source). "not-run": the harness lacked what
 * it needs to run it (a fixture field, a name); its requirement was not checked.
 */
export type SkipKind = "not-applicable" | "not-run";

/** The first need of a case the fixture or flags do not meet, and why. */
export interface UnmetNeed {
  need: string;
  reason: string;
}

export function skipKindOf(need: string): SkipKind {
  return APPLICABILITY_NEEDS.has(need) ? "not-applicable" : "not-run";
}

export interface CaseResult {
  id: string;
  role: CaseRole;
  title: string;
  requirement: string;
  level: Level;
  status: CaseStatus;
  /** Why it failed, was skipped or errored; empty when it passed. */
  reason: string;
  /** Set when status is "skip". */
  skip?: SkipKind;
  durationMs: number;
}

export interface RunSummary {
  /** What ran: "source connector: node x.js", "engine at 127.0.0.1:7700". */
  subject: string;
  results: CaseResult[];
  passed: number;
  failed: number;
  skipped: number;
  errored: number;
  /** MUST cases that failed or errored: the run fails when there is one. */
  mustFailures: number;
  /** MUST cases skipped as "not-run": while there is one, the run is no verdict of conformance. */
  mustNotRun: number;
}

/**
 * "conforms": every MUST case that applies ran, and none failed. "does-not-conform": a MUST case
 * failed (or errored). "incomplete": none failed, but some MUST case was not run.
 */
export type RunVerdict = "conforms" | "does-not-conform" | "incomplete";

export function runVerdict(summary: RunSummary): RunVerdict {
  if (summary.mustFailures > 0) return "does-not-conform";
  return summary.mustNotRun > 0 ? "incomplete" : "conforms";
}

/** The command's exit code for a run: 0 conforms, 1 does not conform, 3 incomplete (2 is bad usage). */
export function exitCodeOf(summary: RunSummary): number {
  const verdict = runVerdict(summary);
  return verdict === "conforms" ? 0 : verdict === "does-not-conform" ? 1 : 3;
}

export function summarize(subject: string, results: CaseResult[]): RunSummary {
  const count = (status: CaseStatus) => results.filter((r) => r.status === status).length;
  return {
    subject,
    results,
    passed: count("pass"),
    failed: count("fail"),
    skipped: count("skip"),
    errored: count("error"),
    mustFailures: results.filter((r) => r.level === "MUST" && (r.status === "fail" || r.status === "error")).length,
    mustNotRun: results.filter((r) => r.level === "MUST" && r.status === "skip" && r.skip !== "not-applicable").length,
  };
}

/** A function that gives a case's verdict, timed from startedMs. */
export function verdictOf(spec: ConformanceCase, startedMs: number): (status: CaseStatus, reason: string) => CaseResult {
  return (status, reason) => ({
    id: spec.id,
    role: spec.role,
    title: spec.title,
    requirement: spec.requirement,
    level: spec.level,
    status,
    reason,
    durationMs: Date.now() - startedMs,
  });
}
