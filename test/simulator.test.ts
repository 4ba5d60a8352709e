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

/** Seeds on which the simulator found a bug, each fixed (the sequence-window app on the embedded coordinator; safe mode unless noted). */
const REGRESSIONS = [18, 24, 33, 36, 121, 123, 129, 416, 532, 568, 659, 661, 710, 723, 761, 794, 906, 967];
const OVERLOAD_REGRESSIONS = [15];
/** Found with etcd in overload mode: a failover's map thawed slots frozen for a move. */
const ETCD_OVERLOAD_REGRESSIONS = [24];
/** Found with word count: a failed move's epoch reused for a different map. */
const WORD_COUNT_REGRESSIONS = [258];
/** Found with the etcd control plane (any app); 111 fails with only the fix for 814; 3256: a shrink cut short by its coordinator's loss. */
const ETCD_REGRESSIONS = [2, 52, 87, 91, 111, 186, 349, 404, 607, 814, 919, 3256];
/** A broken variant must be caught within this many seeds. */
const CATCH_WITHIN = 30;

describe("cluster simulator", () => {
  it("runs a fixed set of seeds under crashes, pauses, partitions, broken links, joins and leaves with every invariant holding", async () => {
    expectAllPassed(await simulate(["--seeds", "120", "--from", "1001", "--control", "embedded"]), 120);
  });

  it("runs seeds with the control plane on etcd: the coordinator's worker crashes too, and another takes over", async () => {
    const out = await simulate(["--seeds", "40", "--from", "2001", "--control", "etcd", "--verbose"]);
    expectAllPassed(out, 40);
    expect(out.stdout).toMatch(/sequence-window, etcd/);
  });

  it("passes every seed on which it found a bug", async () => {
    const seeds = (list: number[]) => list.flatMap((s) => ["--seed", String(s)]);
    expectAllPassed(await simulate(["--app", "sequence-window", "--control", "embedded", ...seeds(REGRESSIONS)]), REGRESSIONS.length);
    expectAllPassed(await simulate(["--app", "sequence-window", "--control", "embedded", "--mode", "overload", ...seeds(OVERLOAD_REGRESSIONS)]), OVERLOAD_REGRESSIONS.length);
    expectAllPassed(await simulate(["--app", "word-count", "--control", "embedded", ...seeds(WORD_COUNT_REGRESSIONS)]), WORD_COUNT_REGRESSIONS.length);
    expectAllPassed(await simulate(["--control", "etcd", ...seeds(ETCD_REGRESSIONS)]), ETCD_REGRESSIONS.length);
    expectAllPassed(await simulate(["--control", "etcd", "--mode", "overload", ...seeds(ETCD_OVERLOAD_REGRESSIONS)]), ETCD_OVERLOAD_REGRESSIONS.length);
  });

  it("overload (more copies lost than the replicas cover) ends in STATE_LOST or a complete run, never a wrong result", async () => {
    const out = await simulate(["--seeds", "80", "--mode", "overload", "--control", "embedded"]);
    expectAllPassed(out, 80);
    const lost = Number(/(\d+) ended in STATE_LOST/.exec(summary(out))![1]);
    expect(lost).toBeGreaterThan(0);
  });

  for (const mutation of ["skip-replicas", "forget-in-flight"]) {
    it(`catches the broken variant ${mutation} within ${CATCH_WITHIN} seeds, and says how to replay it`, async () => {
      const out = await simulate(["--seeds", String(CATCH_WITHIN), "--control", "embedded", "--mutation", mutation, "--until-failure"]);
      expect(out.code).toBe(1);
      const seed = Number(/first failing seed (\d+)/.exec(summary(out))![1]);
      expect(seed).toBeLessThanOrEqual(CATCH_WITHIN);
      expect(out.stdout).toContain(`seed ${seed} FAILED after`);
      expect(out.stdout).toContain("run and faults:");
      expect(out.stdout).toContain(`replay: npm run simulate -- --seed ${seed} --control embedded --mutation ${mutation}`);
      // The replay breaks the same invariant at the same step.
      const replay = await simulate(["--seed", String(seed), "--control", "embedded", "--mutation", mutation]);
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
    expect(line(alone, 24)).toMatch(/^seed 24 ok \([a-z-]+, [a-z]+\): complete, \d+ steps/);
    expect(line(again, 24)).toBe(line(alone, 24));
    expect(line(among, 24)).toBe(line(alone, 24));
  });
});
