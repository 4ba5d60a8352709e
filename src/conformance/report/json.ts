/** --json: the whole run as one JSON document, stable for tools to read. */
import { runVerdict, type RunSummary } from "../result.ts";

export function formatJson(summary: RunSummary): string {
  const verdict = runVerdict(summary);
  return `${JSON.stringify({ ...summary, verdict, conforms: verdict === "conforms" }, null, 2)}\n`;
}
