/** The readable report: one row per case (case, requirement, level, result, reason), then a summary. */
import type { ConformanceCase } from "../case.ts";
import { runVerdict, type CaseResult, type RunSummary } from "../result.ts";

const ID_WIDTH = 38;
const REQUIREMENT_WIDTH = 24;

export function tableHeader(): string {
  return `${pad("CASE", ID_WIDTH)} ${pad("REQUIREMENT", REQUIREMENT_WIDTH)} ${pad("LEVEL", 6)} ${pad("RESULT", 6)} REASON\n`;
}

export function tableRow(result: CaseResult): string {
  const status = result.status === "pass" ? "pass" : result.status.toUpperCase();
  return `${pad(result.id, ID_WIDTH)} ${pad(result.requirement, REQUIREMENT_WIDTH)} ${pad(result.level, 6)} ${pad(status, 6)} ${result.reason}`.trimEnd() + "\n";
}

export function summaryLine(summary: RunSummary): string {
  const parts = [`${summary.passed} passed`, `${summary.failed} failed`, `${summary.skipped} skipped`];
  if (summary.errored > 0) parts.push(`${summary.errored} harness errors`);
  const notRun = `${summary.mustNotRun} MUST case(s) not run (no fixture field or flag for them; see the SKIP reasons)`;
  const verdict = {
    conforms: "conforms: no MUST case failed",
    "does-not-conform": `does not conform: ${summary.mustFailures} MUST case(s) failed${summary.mustNotRun > 0 ? `, ${summary.mustNotRun} not run` : ""}`,
    incomplete: `no MUST case failed, but ${notRun}: not a verdict of conformance`,
  }[runVerdict(summary)];
  return `${summary.subject}: ${summary.results.length} cases, ${parts.join(", ")}; ${verdict}\n`;
}

export function formatTable(summary: RunSummary): string {
  return tableHeader() + summary.results.map(tableRow).join("") + "\n" + summaryLine(summary);
}

/** --list: the cases, without running them. */
export function formatList(cases: readonly ConformanceCase[]): string {
  const header = `${pad("CASE", ID_WIDTH)} ${pad("REQUIREMENT", REQUIREMENT_WIDTH)} ${pad("LEVEL", 6)} ${pad("NEEDS", 18)} TITLE\n`;
  return (
    header +
    cases.map((c) => `${pad(c.id, ID_WIDTH)} ${pad(c.requirement, REQUIREMENT_WIDTH)} ${pad(c.level, 6)} ${pad((c.needs ?? []).join(","), 18)} ${c.title}\n`).join("") +
    `${cases.length} cases\n`
  );
}

function pad(text: string, width: number): string {
  return text.length >= width ? text : text + " ".repeat(width - text.length);
}
