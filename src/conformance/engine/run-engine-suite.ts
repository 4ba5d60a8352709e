/** Runs the engine cases one after another against a running engine. */
import type { ConformanceCase } from "../case.ts";
import { summarize, type CaseResult, type RunSummary } from "../result.ts";
import { EngineCaseRun, type EngineTarget } from "./case-run.ts";

export type { EngineTarget } from "./case-run.ts";

export async function runEngineSuite(target: EngineTarget, cases: readonly ConformanceCase[], onResult?: (result: CaseResult) => void): Promise<RunSummary> {
  const results: CaseResult[] = [];
  for (const c of cases) {
    if (c.role !== "engine") throw new Error(`case ${c.id} is for role ${c.role}, not engine`);
    const result = await new EngineCaseRun(c, target).runCase();
    results.push(result);
    onResult?.(result);
  }
  return summarize(`engine at ${target.address}`, results);
}
