// The cases are data: each file matches its schema, every case cites a requirement that
// docs/protocol.md defines, at the level it defines, and the fixtures match theirs.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { CASES_DIR, CONFORMANCE_DIR, loadCases, selectCases, type CaseRole } from "../../src/conformance/case.ts";
import { ROOT } from "../helpers/process.ts";
import { validate } from "./helpers/json-schema.ts";

const readJson = (path: string): unknown => JSON.parse(readFileSync(path, "utf8"));
const caseSchema = readJson(join(CONFORMANCE_DIR, "schema/cases.schema.json")) as Record<string, unknown>;
const fixtureSchema = readJson(join(CONFORMANCE_DIR, "schema/fixture.schema.json")) as Record<string, unknown>;

/** The requirement summary table of docs/protocol.md: id -> party and level. */
function requirements(): Map<string, { party: string; level: string; mustPart: boolean }> {
  const table = new Map<string, { party: string; level: string; mustPart: boolean }>();
  const spec = readFileSync(join(ROOT, "docs/protocol.md"), "utf8");
  for (const m of spec.matchAll(/^\| (R-[A-Z0-9-]+) \| (C\+E|C|E) \| ([A-Z /]+) \| ([^|]*) \|/gm)) {
    table.set(m[1]!, { party: m[2]!, level: m[3]!.trim(), mustPart: m[4]!.includes("(MUST)") });
  }
  return table;
}

describe("conformance cases", () => {
  const files = readdirSync(CASES_DIR).filter((n) => n.endsWith(".json"));

  it("has one file per role, each valid against conformance/schema/cases.schema.json", () => {
    expect(files.sort()).toEqual(["engine.json", "partitioner.json", "sink.json", "source.json"]);
    for (const name of files) expect(validate(caseSchema, readJson(join(CASES_DIR, name))), name).toEqual([]);
  });

  it("cites requirements docs/protocol.md defines, at their level, for the party they bind", () => {
    const table = requirements();
    expect(table.size).toBeGreaterThan(50);
    for (const role of ["source", "sink", "partitioner", "engine"] as CaseRole[]) {
      for (const c of loadCases(role)) {
        const r = table.get(c.requirement);
        expect(r, `${c.id} cites ${c.requirement}`).toBeDefined();
        // "MUST / SHOULD" rows bind the engine with MUST and the connector with SHOULD (R-PART-CREDITS);
        // a SHOULD row whose statement has a "(MUST)" part may have MUST cases (R-AUTH-CONFIG: never log the token).
        const level = r!.level === "MUST / SHOULD" ? (role === "engine" ? "MUST" : "SHOULD") : r!.level;
        if (!(c.level === "MUST" && r!.mustPart)) expect(c.level, `${c.id} (${c.requirement} is ${r!.level})`).toBe(level);
        const party = role === "engine" ? "E" : "C";
        expect(r!.party.includes(party), `${c.id}: ${c.requirement} binds ${r!.party}, not ${party}`).toBe(true);
      }
    }
  });

  it("selects cases by id and by prefix, and refuses unknown ids", () => {
    const cases = loadCases("source");
    expect(selectCases(cases, ["source.positions"]).map((c) => c.id)).toEqual(["source.positions"]);
    expect(selectCases(cases, ["source.fatal-*"]).length).toBe(5);
    expect(() => selectCases(cases, ["source.nope"])).toThrow(/no such case/);
  });

  it("ships fixtures valid against conformance/schema/fixture.schema.json", () => {
    const dirs = [join(CONFORMANCE_DIR, "fixtures"), join(CONFORMANCE_DIR, "negative-controls")];
    const fixtures = dirs.flatMap((d) => readdirSync(d).filter((n) => n.endsWith(".json") && n !== "tsconfig.json").map((n) => join(d, n)));
    expect(fixtures.length).toBeGreaterThan(5);
    for (const path of fixtures) expect(validate(fixtureSchema, readJson(path)), path).toEqual([]);
  });
});
