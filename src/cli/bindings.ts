/** Parses --source/--sink NAME=URI arguments and the --config file into one binding table. */
import { readFileSync } from "node:fs";
import { ErrorCode, KeywayError } from "../errors.ts";

export interface BindingTable {
  sources: Map<string, string>;
  sinks: Map<string, string>;
}

export function parseBinding(flag: string, arg: string): [string, string] {
  const eq = arg.indexOf("=");
  if (eq <= 0 || eq === arg.length - 1) {
    throw new KeywayError(ErrorCode.USAGE, `${flag} expects NAME=URI, got "${arg}"`);
  }
  return [arg.slice(0, eq), arg.slice(eq + 1)];
}

function addAll(flag: string, into: Map<string, string>, pairs: Array<[string, string]>): void {
  for (const [name, uri] of pairs) {
    if (into.has(name)) throw new KeywayError(ErrorCode.USAGE, `${flag} ${name} is bound twice`);
    into.set(name, uri);
  }
}

function readConfigSection(file: string, config: Record<string, unknown>, section: "sources" | "sinks"): Array<[string, string]> {
  const value = config[section];
  if (value === undefined) return [];
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new KeywayError(ErrorCode.USAGE, `config ${file}: "${section}" must be an object of NAME: URI`);
  }
  return Object.entries(value).map(([name, uri]) => {
    if (typeof uri !== "string") throw new KeywayError(ErrorCode.USAGE, `config ${file}: ${section}.${name} must be a URI string`);
    return [name, uri];
  });
}

/** The config file is JSON: {"sources": {"NAME": "URI"}, "sinks": {"NAME": "URI"}}. */
function readConfig(file: string): { sources: Array<[string, string]>; sinks: Array<[string, string]> } {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    throw new KeywayError(ErrorCode.FILE_NOT_FOUND, `config file not found: ${file}`);
  }
  let config: unknown;
  try {
    config = JSON.parse(text);
  } catch (err) {
    throw new KeywayError(ErrorCode.USAGE, `config ${file} is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof config !== "object" || config === null || Array.isArray(config)) {
    throw new KeywayError(ErrorCode.USAGE, `config ${file} must hold a JSON object`);
  }
  const known = new Set(["sources", "sinks"]);
  const unknown = Object.keys(config).find((k) => !known.has(k));
  if (unknown !== undefined) throw new KeywayError(ErrorCode.USAGE, `config ${file}: unknown key "${unknown}"`);
  const record = config as Record<string, unknown>;
  return { sources: readConfigSection(file, record, "sources"), sinks: readConfigSection(file, record, "sinks") };
}

/** Flags and config together; a name bound twice, in either or both, is a usage error. */
export function collectBindings(sourceArgs: string[], sinkArgs: string[], configFile?: string): BindingTable {
  const table: BindingTable = { sources: new Map(), sinks: new Map() };
  if (configFile !== undefined) {
    const config = readConfig(configFile);
    addAll("--source", table.sources, config.sources);
    addAll("--sink", table.sinks, config.sinks);
  }
  addAll("--source", table.sources, sourceArgs.map((a) => parseBinding("--source", a)));
  addAll("--sink", table.sinks, sinkArgs.map((a) => parseBinding("--sink", a)));
  return table;
}
