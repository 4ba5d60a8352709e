/**
 * The deterministic cluster simulator (sim/), run as `npm run simulate` runs it: a fixed set of
 * seeds under every fault, the seeds of every bug it found (kept as regression cases), overload
 * that must end in STATE_LOST and never in a wrong result, deliberately broken variants it must
 * catch, and replays that reproduce a seed exactly.
 */
import { describe, expect, it } from "vitest";
import { startNode, type Finished } from "./helpers/process.ts";

const simulate = (args: string[]): Promise<Finished> => startNode(["--import", "tsx", "sim/main.ts", ...args]).finished;
const summary = (out: Finished) => out.stdout.trim().split("\n").at(-1)!;
const expectAllPassed = (out: Finished, seeds: number) => {
  expect(out.stderr).toBe("");
  expect(summary(out)).toMatch(new RegExp(`^simulate: ${seeds} seeds, ${seeds} passed, 0 failed;`));
  expect(out.code, out.stdout.slice(0, 4000)).toBe(0);
};

/** Seeds on which the simulator found a bug, each fixed (the sequence-window app; safe mode unless noted). */
const REGRESSIONS = [18, 24, 36, 121, 123, 416, 532, 568, 659, 661, 710, 723, 761, 794, 906, 967];
const OVERLOAD_REGRESSIONS = [15];
/** A broken variant must be caught within this many seeds. */
const CATCH_WITHIN = 30;

describe("cluster simulator", () => {
  it("runs a fixed set of seeds under crashes, pauses, partitions, broken links, joins and leaves with every invariant holding", async () => {
    expectAllPassed(await simulate(["--seeds", "150", "--from", "1001"]), 150);
  });

  it("passes every seed on which it found a bug", async () => {
    expectAllPassed(await simulate(["--app", "sequence-window", ...REGRESSIONS.flatMap((s) => ["--seed", String(s)])]), REGRESSIONS.length);
    expectAllPassed(await simulate(["--app", "sequence-window", "--mode", "overload", ...OVERLOAD_REGRESSIONS.flatMap((s) => ["--seed", String(s)])]), OVERLOAD_REGRESSIONS.length);
  });

  it("overload (more copies lost than the replicas cover) ends in STATE_LOST or a complete run, never a wrong result", async () => {
    const out = await simulate(["--seeds", "80", "--mode", "overload"]);
    expectAllPassed(out, 80);
    const lost = Number(/(\d+) ended in STATE_LOST/.exec(summary(out))![1]);
    expect(lost).toBeGreaterThan(0);
  });

  for (const mutation of ["skip-replicas", "forget-in-flight"]) {
    it(`catches the broken variant ${mutation} within ${CATCH_WITHIN} seeds, and says how to replay it`, async () => {
      const out = await simulate(["--seeds", String(CATCH_WITHIN), "--mutation", mutation, "--until-failure"]);
      expect(out.code).toBe(1);
      const seed = Number(/first failing seed (\d+)/.exec(summary(out))![1]);
      expect(seed).toBeLessThanOrEqual(CATCH_WITHIN);
      expect(out.stdout).toContain(`seed ${seed} FAILED after`);
      expect(out.stdout).toContain("run and faults:");
      expect(out.stdout).toContain(`replay: npm run simulate -- --seed ${seed} --mutation ${mutation}`);
      // The replay breaks the same invariant at the same step.
      const replay = await simulate(["--seed", String(seed), "--mutation", mutation]);
      expect(replay.code).toBe(1);
      const failure = (o: Finished) => o.stdout.split("\n").find((l) => l.startsWith(`seed ${seed} FAILED`));
      expect(failure(replay)).toBe(failure(out));
    });
  }

  it("replays a seed exactly, alone or among others", async () => {
    const line = (o: Finished, seed: number) => o.stdout.split("\n").find((l) => l.startsWith(`seed ${seed} `));
    const among = await simulate(["--seeds", "3", "--from", "22", "--verbose"]);
    const alone = await simulate(["--seed", "24"]);
    const again = await simulate(["--seed", "24"]);
    expect(line(alone, 24)).toMatch(/^seed 24 ok \([a-z-]+\): complete, \d+ steps/);
    expect(line(again, 24)).toBe(line(alone, 24));
    expect(line(among, 24)).toBe(line(alone, 24));
  });
});
