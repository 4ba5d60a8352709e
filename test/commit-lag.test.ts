/**
 * Commit lag is bounded: with --data-dir, a source waits while its pipeline's output since the
 * last checkpoint reaches --max-uncommitted-records, so what a crash sends the sink again (that,
 * and the output of the one batch in hand) stays within the sink's id window. The engine is
 * SIGKILLed under load beside processes hogging every core (checkpoints slow down), restarted each
 * time, and the exactly-once sink ends with every count once.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { corpus, expectExact, lineCount } from "./helpers/cluster.ts";
import { freePort, scratchDir, startKeyway, startNode, waitFor, type Running } from "./helpers/process.ts";

const running: Running[] = [];
afterEach(() => {
  for (const r of running.splice(0)) r.child.kill("SIGKILL");
});

/** Killed this many times, each once the output has grown by a step. */
const KILLS = 3;
const DEDUP_WINDOW = 3000;

describe("commit lag", () => {
  it(`SIGKILLs of the engine with --data-dir beside a CPU hog: every count once at a sink keeping ${DEDUP_WINDOW} ids`, async () => {
    const dir = scratchDir("commit-lag");
    const counts = corpus(dir, 1, 120_000);
    const total = [...counts.values()].reduce((a, b) => a + b, 0);
    const output = join(dir, "out.txt");
    const engineAt = `127.0.0.1:${await freePort()}`;
    // Checkpoints are rare and slow: without the bound, far more than the window would be replayed.
    const run = () =>
      startKeyway(["run", "examples/word-count/app.ts", "--source", "lines=connector", "--sink", "counts=connector", "--listen", engineAt,
        "--data-dir", join(dir, "data"), "--checkpoint-interval-ms", "5000", "--max-uncommitted-records", String(DEDUP_WINDOW / 3)]);
    for (let i = 0; i < 2; i++) running.push(startNode(["-e", "for (;;) {}"]));
    // Connector batches are about a hundred lines: the batch in hand adds about a thousand outputs to the bound.
    const source = startKeyway(["connector", "file-source", "--engine", engineAt, "--target", "lines", "--path", join(dir, "in", "part-0.txt"), "--instance-id", "source"]);
    const sink = startKeyway(["connector", "file-sink", "--engine", engineAt, "--target", "counts", "--path", output, "--dedup-window", String(DEDUP_WINDOW), "--instance-id", "sink"]);
    running.push(source, sink);
    for (let kill = 1; kill <= KILLS; kill++) {
      const engine = run();
      running.push(engine);
      const step = (kill * total) / (KILLS + 1);
      await waitFor(`the output past ${Math.round(step)} lines`, () => (lineCount(output) >= step ? true : undefined), 90_000);
      engine.child.kill("SIGKILL");
      await engine.finished;
    }
    const last = run();
    running.push(last);
    const done = await source.finished;
    expect(done.code, done.stderr).toBe(0);
    await waitFor("every count at the sink", () => (lineCount(output) >= total ? true : undefined), 60_000);
    expectExact(readFileSync(output, "utf8"), counts);
    last.child.kill("SIGTERM");
    const finished = await last.finished;
    expect(finished.code, finished.stderr).toBe(0);
  }, 240_000);
});
