/**
 * Conformance cases as data (conformance/cases/*.json, schema conformance/schema/cases.schema.json):
 * each case names the role it tests, the requirement of docs/protocol.md it checks and its level,
 * what the harness does (steps, run in order) and what it then judges (expect, over everything
 * observed). The harness reads them; nothing about a case lives in code except the meaning of
 * each step op and check name, which docs/conformance.md and the schema define.
 */
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Role } from "./wire.ts";

export type Level = "MUST" | "SHOULD";
export type CaseRole = Role | "engine";
export const CASE_ROLES: readonly CaseRole[] = ["source", "sink", "partitioner", "engine"];

/**
 * Needs that say whether a case applies to the peer at all, as its fixture or flags describe it,
 * rather than what the harness lacks to run it: "finite" (an unbounded source never ends a
 * stream), "queue" (a source that replays by position sets no idempotency ids), "token" (an engine
 * without a token has no token checks), "no-partitioner". A case skipped for one of these does not
 * apply; a MUST case skipped for any other need was not run, and the run is no verdict.
 */
export const APPLICABILITY_NEEDS: ReadonlySet<string> = new Set(["finite", "queue", "token", "no-partitioner"]);

/** One step: `op` names the action; the other fields are its parameters. */
export interface Step {
  op: string;
  [param: string]: unknown;
}

/** One judgement over the case's trace: `check` names it; the other fields are its parameters. */
export interface Check {
  check: string;
  [param: string]: unknown;
}

export interface ConformanceCase {
  id: string;
  role: CaseRole;
  title: string;
  /** The requirement id of docs/protocol.md, e.g. "R-SRC-CREDITS". */
  requirement: string;
  level: Level;
  /**
   * What the connector's fixture (or, for the engine, the command line) must provide for the case
   * to apply; a case whose needs are not met is skipped, with the reason.
   */
  needs?: string[];
  steps: Step[];
  expect: Check[];
}

export interface CaseFile {
  role: CaseRole;
  cases: ConformanceCase[];
}

/** The repository's conformance/ directory. */
export const CONFORMANCE_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "../../conformance");
export const CASES_DIR = join(CONFORMANCE_DIR, "cases");

const ID_PATTERN = /^[a-z]+(\.[a-z0-9-]+)+$/;
const REQUIREMENT_PATTERN = /^R-[A-Z0-9-]+$/;

/** Loads every case of a role from `dir` (default conformance/cases), checked for shape. */
export function loadCases(role: CaseRole, dir = CASES_DIR): ConformanceCase[] {
  const cases: ConformanceCase[] = [];
  for (const name of readdirSync(dir).filter((n) => n.endsWith(".json")).sort()) {
    const path = join(dir, name);
    const file = JSON.parse(readFileSync(path, "utf8")) as CaseFile;
    if (file.role !== role) continue;
    for (const c of file.cases) cases.push(checkCase(c, path));
  }
  const ids = new Set<string>();
  for (const c of cases) {
    if (ids.has(c.id)) throw new Error(`case id "${c.id}" is defined twice`);
    ids.add(c.id);
  }
  return cases;
}

function checkCase(c: ConformanceCase, path: string): ConformanceCase {
  const where = `${path}: case ${JSON.stringify(c.id)}`;
  if (typeof c.id !== "string" || !ID_PATTERN.test(c.id)) throw new Error(`${where}: id must look like "role.some-name"`);
  if (!CASE_ROLES.includes(c.role)) throw new Error(`${where}: role must be one of ${CASE_ROLES.join(", ")}`);
  if (typeof c.title !== "string" || c.title === "") throw new Error(`${where}: title is required`);
  if (typeof c.requirement !== "string" || !REQUIREMENT_PATTERN.test(c.requirement)) throw new Error(`${where}: requirement must be an R-... id`);
  if (c.level !== "MUST" && c.level !== "SHOULD") throw new Error(`${where}: level must be MUST or SHOULD`);
  if (!Array.isArray(c.steps) || c.steps.some((s) => typeof s?.op !== "string")) throw new Error(`${where}: steps must be objects with an op`);
  if (!Array.isArray(c.expect) || c.expect.some((e) => typeof e?.check !== "string")) throw new Error(`${where}: expect must be objects with a check`);
  if (c.needs !== undefined && (!Array.isArray(c.needs) || c.needs.some((n) => typeof n !== "string"))) throw new Error(`${where}: needs must be strings`);
  return c;
}

/** The cases selected by --case (exact ids, or a prefix ending in "*"); all when none given. */
export function selectCases(cases: readonly ConformanceCase[], selectors: readonly string[]): ConformanceCase[] {
  if (selectors.length === 0) return [...cases];
  const chosen = cases.filter((c) => selectors.some((s) => (s.endsWith("*") ? c.id.startsWith(s.slice(0, -1)) : c.id === s)));
  const unknown = selectors.filter((s) => !s.endsWith("*") && !cases.some((c) => c.id === s));
  if (unknown.length > 0) throw new Error(`no such case: ${unknown.join(", ")} (see --list)`);
  return chosen;
}

/** Typed access to a step's or check's parameters, failing loudly on a malformed case. */
export class Params {
  constructor(
    private readonly owner: Step | Check,
    private readonly where: string,
  ) {}

  number(name: string, fallback?: number): number {
    const v = this.owner[name];
    if (v === undefined && fallback !== undefined) return fallback;
    if (typeof v !== "number" || !Number.isFinite(v)) throw new Error(`${this.where}: "${name}" must be a number`);
    return v;
  }

  optionalNumber(name: string): number | undefined {
    return this.owner[name] === undefined ? undefined : this.number(name);
  }

  string(name: string, fallback?: string): string {
    const v = this.owner[name];
    if (v === undefined && fallback !== undefined) return fallback;
    if (typeof v !== "string") throw new Error(`${this.where}: "${name}" must be a string`);
    return v;
  }

  optionalString(name: string): string | undefined {
    return this.owner[name] === undefined ? undefined : this.string(name);
  }

  boolean(name: string, fallback: boolean): boolean {
    const v = this.owner[name];
    if (v === undefined) return fallback;
    if (typeof v !== "boolean") throw new Error(`${this.where}: "${name}" must be true or false`);
    return v;
  }

  raw(name: string): unknown {
    return this.owner[name];
  }
}
