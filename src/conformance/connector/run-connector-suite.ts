/** Runs a role's cases one after another against a connector command, each in a fresh world. */
import type { ConformanceCase } from "../case.ts";
import { summarize, type CaseResult, type RunSummary } from "../result.ts";
import { ConnectorCaseRun, type ConnectorTarget } from "./case-run.ts";

export async function runConnectorSuite(target: ConnectorTarget, cases: readonly ConformanceCase[], onResult?: (result: CaseResult) => void): Promise<RunSummary> {
  const results: CaseResult[] = [];
  for (const c of cases) {
    if (c.role !== target.role) throw new Error(`case ${c.id} is for role ${c.role}, not ${target.role}`);
    const result = await new ConnectorCaseRun(c, target).run();
    results.push(result);
    onResult?.(result);
  }
  return summarize(`${target.role} connector: ${target.command.join(" ")}`, results);
}
