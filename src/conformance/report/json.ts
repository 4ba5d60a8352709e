/** --json: the whole run as one JSON document, stable for tools to read. */
import type { RunSummary } from "../result.ts";

export function formatJson(summary: RunSummary): string {
  return `${JSON.stringify({ ...summary, conforms: summary.mustFailures === 0 }, null, 2)}\n`;
}
