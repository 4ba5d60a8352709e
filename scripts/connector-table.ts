/**
 * Writes the README's table of connector URIs from the registry (connectors/registry.ts), between
 * the markers below; test/connectors/registry.test.ts fails when the README is out of date. Run
 * after adding or changing a scheme:
 *
 *   node --import tsx scripts/connector-table.ts
 */
import { readFileSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { CONNECTOR_SCHEMES } from "../connectors/registry.ts";

export const BEGIN = "<!-- connectors:begin -->";
export const END = "<!-- connectors:end -->";
export const README = resolve(fileURLToPath(import.meta.url), "../../README.md");

/**
 * The `connector` binding is not a scheme of the registry (it binds gRPC connector-protocol
 * sessions, handled by the CLI), but a reader looks for it in the same table.
 */
const CONNECTOR_ROW =
  "| `connector` | the Keyway connector protocol (gRPC) | connector processes in any language attach and send records (`Source` sessions); runs until stopped | connector processes attach and receive output in acked batches (`Sink` sessions) |";

export function connectorTable(): string {
  const rows = CONNECTOR_SCHEMES.map((s) => `| ${s.forms.map((f) => `\`${f}\``).join("<br>")} | ${s.description} | ${s.asSource} | ${s.asSink} |`);
  return ["| URI | carries | as a source | as a sink |", "| --- | --- | --- | --- |", ...rows, CONNECTOR_ROW].join("\n");
}

/** The README with the table between the markers replaced; throws if the markers are missing. */
export function withConnectorTable(readme: string): string {
  const begin = readme.indexOf(BEGIN);
  const end = readme.indexOf(END);
  if (begin < 0 || end < begin) throw new Error(`README.md must hold ${BEGIN} then ${END}`);
  return `${readme.slice(0, begin + BEGIN.length)}\n${connectorTable()}\n${readme.slice(end)}`;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const before = readFileSync(README, "utf8");
  const after = withConnectorTable(before);
  if (after !== before) writeFileSync(README, after);
  console.log(after === before ? "README.md: connector table already up to date" : "README.md: connector table rewritten");
}
