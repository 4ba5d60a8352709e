// `keyway conformance` as a user runs it: the listing, the table, --json, --junit, and the exit
// codes (1 when a MUST case fails, 2 on bad usage, 3 when MUST cases were not run).
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { expectOneLineError, runKeyway, scratchDir } from "../helpers/process.ts";

const CONTROL = [
  "--fixture", "conformance/negative-controls/source.fixture.json", "--",
  process.execPath, "--import", "tsx", "conformance/negative-controls/source.ts", "--input", "{workdir}/in.txt", "--acks", "{workdir}/acks",
];
const RUN_MS_MAX = 120_000;

describe("keyway conformance", () => {
  it("lists a role's cases with their requirements", async () => {
    const source = await runKeyway(["conformance", "source", "--list"]);
    expect(source.code).toBe(0);
    expect(source.stdout).toMatch(/^source\.credits-initial +R-SRC-CREDITS +MUST /m);
    expect(source.stdout).toMatch(/^\d+ cases$/m);
    const engine = await runKeyway(["conformance", "engine", "--list", "--case", "engine.token-*"]);
    expect(engine.stdout.trim().split("\n").slice(1, -1).map((l) => l.split(/ +/)[0])).toEqual(["engine.token-wrong", "engine.token-missing"]);
  });

  it("refuses bad usage with exit code 2 and one line", async () => {
    await expectOneLineError(["conformance", "producer", "--list"], 2, /the role must be one of source, sink, partitioner, engine/);
    await expectOneLineError(["conformance", "source"], 2, /give the connector's command after --/);
    await expectOneLineError(["conformance", "engine"], 2, /engine mode needs --target HOST:PORT/);
    await expectOneLineError(["conformance", "source", "--case", "source.no-such-case", "--", "true"], 2, /no such case: source\.no-such-case/);
  });

  it("exits 1 when a MUST case fails, with --json and --junit reports", async () => {
    const junit = join(scratchDir("conformance-cli"), "results.xml");
    const run = await runKeyway(["conformance", "source", "--case", "source.credits-initial", "source.positions", "--json", "--junit", junit, ...CONTROL, "--break", "credits"]);
    expect(run.code, run.stderr).toBe(1);
    const report = JSON.parse(run.stdout) as { conforms: boolean; mustFailures: number; results: Array<{ id: string; status: string; reason: string }> };
    expect(report.conforms).toBe(false);
    expect(report.mustFailures).toBe(1);
    expect(report.results.map((r) => [r.id, r.status])).toEqual([
      ["source.credits-initial", "fail"],
      ["source.positions", "pass"],
    ]);
    expect(report.results[0]!.reason).toMatch(/records sent with 1 credit granted/);
    const xml = readFileSync(junit, "utf8");
    expect(xml).toMatch(/<testsuite name="keyway-conformance-source" tests="2" failures="1"/);
    expect(xml).toMatch(/<testcase [^>]*name="source\.credits-initial \[R-SRC-CREDITS MUST\]"[^>]*>\s*<failure /);
  }, RUN_MS_MAX);

  it("prints a table and exits 0 when no MUST case fails", async () => {
    const run = await runKeyway(["conformance", "source", "--case", "source.positions", ...CONTROL]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^CASE +REQUIREMENT +LEVEL +RESULT +REASON$/m);
    expect(run.stdout).toMatch(/^source\.positions +R-SRC-POSITION +MUST +pass$/m);
    expect(run.stdout).toMatch(/1 cases, 1 passed, 0 failed, 0 skipped; conforms/);
  }, RUN_MS_MAX);

  it("gives no verdict of conformance, and exits 3, when MUST cases were not run for want of a fixture field", async () => {
    // The control's own fixture without "acks" (commit-gates-ack cannot be judged: not run) and
    // without "finite" (end-of-stream does not apply to an unbounded source: no bar to a verdict).
    const control = JSON.parse(readFileSync("conformance/negative-controls/source.fixture.json", "utf8")) as Record<string, unknown>;
    delete control.acks;
    delete control.finite;
    const fixture = join(scratchDir("conformance-cli"), "no-acks.fixture.json");
    writeFileSync(fixture, JSON.stringify(control));
    const connector = ["--fixture", fixture, ...CONTROL.slice(2)];

    const incomplete = await runKeyway(["conformance", "source", "--case", "source.positions", "source.commit-gates-ack", "source.end-of-stream", ...connector]);
    expect(incomplete.code, incomplete.stderr).toBe(3);
    expect(incomplete.stdout).toMatch(/^source\.commit-gates-ack +R-SRC-COMMIT +MUST +SKIP +needs a way to read upstream acknowledgements/m);
    expect(incomplete.stdout).toMatch(/3 cases, 1 passed, 0 failed, 2 skipped; no MUST case failed, but 1 MUST case\(s\) not run .*: not a verdict of conformance$/m);
    expect(incomplete.stdout).not.toMatch(/; conforms/);

    const json = await runKeyway(["conformance", "source", "--case", "source.commit-gates-ack", "--json", ...connector]);
    expect(json.code, json.stderr).toBe(3);
    const report = JSON.parse(json.stdout) as { conforms: boolean; verdict: string; mustFailures: number; mustNotRun: number; results: Array<{ status: string; skip: string }> };
    expect([report.conforms, report.verdict, report.mustFailures, report.mustNotRun]).toEqual([false, "incomplete", 0, 1]);
    expect(report.results.map((r) => [r.status, r.skip])).toEqual([["skip", "not-run"]]);

    // A MUST case that does not apply (end-of-stream, for an unbounded source) does not stand in the way.
    const applicable = await runKeyway(["conformance", "source", "--case", "source.positions", "source.end-of-stream", ...connector]);
    expect(applicable.code, applicable.stderr).toBe(0);
    expect(applicable.stdout).toMatch(/^source\.end-of-stream +R-SRC-END +MUST +SKIP +applies to finite sources/m);
    expect(applicable.stdout).toMatch(/2 cases, 1 passed, 0 failed, 1 skipped; conforms/);
  }, RUN_MS_MAX);
});
