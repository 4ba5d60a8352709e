/** The verdict of one case, and of a run of cases. */
import type { CaseRole, ConformanceCase, Level } from "./case.ts";

/** "error": the harness itself failed (a bug, or a fixture command that failed), not the peer. */
export type CaseStatus = "pass" | "fail" | "skip" | "error";

export interface CaseResult {
  id: string;
  role: CaseRole;
  title: string;
  requirement: string;
  level: Level;
  status: CaseStatus;
  /** Why it failed, was skipped or errored; empty when it passed. */
  reason: string;
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
