import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { corpus, expectExact, lineCount } from "../helpers/cluster.ts";

/** Lines "word n", in any order, are exactly each word's counts 1..total. */
function expectExactSet(output: string, counts: Map<string, number>): void {
  const byWord = new Map<string, number[]>();
  for (const line of output.split("\n")) {
    const [word, n] = line.split(" ");
    byWord.set(word!, [...(byWord.get(word!) ?? []), Number(n)]);
  }
  expect(byWord.size).toBe(counts.size);
  for (const [word, ns] of byWord) expect(ns.sort((a, b) => a - b), word).toEqual(Array.from({ length: counts.get(word)! }, (_, i) => i + 1));
}
import { freePort, scratchDir, startKeyway, waitFor, type Running } from "../helpers/process.ts";

const running: Running[] = [];
afterEach(() => {
  for (const r of running.splice(0)) {
    r.child.kill("SIGCONT");
    r.child.kill("SIGKILL");
  }
});

describe("liveness", () => {
  it("a stopped source connector loses its session within --session-timeout-ms: another instance takes its stream, and every count is exact", async () => {
    const dir = scratchDir("liveness");
    const counts = corpus(dir, 1, 400_000);
    const input = join(dir, "in", "part-0.txt");
    const output = join(dir, "out.txt");
    const engineAt = `127.0.0.1:${await freePort()}`;
    const engine = startKeyway(["run", "examples/word-count/app.ts", "--source", "lines=connector", "--sink", "counts=connector", "--listen", engineAt, "--session-timeout-ms", "2000"]);
    const sink = startKeyway(["connector", "file-sink", "--engine", engineAt, "--target", "counts", "--path", output, "--instance-id", "sink"]);
    const frozen = startKeyway(["connector", "file-source", "--engine", engineAt, "--target", "lines", "--path", input, "--instance-id", "frozen"]);
    running.push(engine, sink, frozen);
    await waitFor("counts flowing", () => (lineCount(output) > 1000 ? true : undefined), 60_000);
    // Stopped mid-file, its connection open: only the engine's pings can tell it is gone.
    frozen.child.kill("SIGSTOP");
    const stoppedAt = Date.now();
    const heir = startKeyway(["connector", "file-source", "--engine", engineAt, "--target", "lines", "--path", input, "--instance-id", "heir"]);
    running.push(heir);
    const finished = await heir.finished;
    expect(finished.code, finished.stderr).toBe(0);
    // STREAM_BUSY until the stopped session was dropped, then the heir's backoff (at most 5 s).
    expect(Date.now() - stoppedAt).toBeLessThan(30_000);
    const total = [...counts.values()].reduce((a, b) => a + b, 0);
    await waitFor("every count at the sink", () => (lineCount(output) >= total ? true : undefined), 60_000);
    expect(lineCount(output)).toBe(total);
    expectExact(readFileSync(output, "utf8"), counts);
    expect(frozen.child.signalCode).toBeNull();
  });

  it("with --data-dir, a stopped sink connector beside a healthy one holds nothing up past --session-timeout-ms: the run completes while it stays stopped, and every count arrives", async () => {
    const dir = scratchDir("frozen-sink");
    const counts = corpus(dir, 1, 300_000);
    const [healthyOut, frozenOut] = [join(dir, "healthy.txt"), join(dir, "frozen.txt")];
    const engineAt = `127.0.0.1:${await freePort()}`;
    const engine = startKeyway(["run", "examples/word-count/app.ts", "--source", `lines=file:${join(dir, "in")}`, "--sink", "counts=connector", "--listen", engineAt,
      "--data-dir", join(dir, "data"), "--checkpoint-interval-ms", "200", "--session-timeout-ms", "2000"]);
    const frozen = startKeyway(["connector", "file-sink", "--engine", engineAt, "--target", "counts", "--path", frozenOut, "--instance-id", "frozen"]);
    const healthy = startKeyway(["connector", "file-sink", "--engine", engineAt, "--target", "counts", "--path", healthyOut, "--instance-id", "healthy"]);
    running.push(engine, frozen, healthy);
    await waitFor("both sinks writing", () => (lineCount(frozenOut) > 0 && lineCount(healthyOut) > 0 ? true : undefined), 60_000);
    // Stopped with batches unacked: checkpoints wait for them until its session is dropped.
    frozen.child.kill("SIGSTOP");
    const stopped = readFileSync(frozenOut, "utf8");
    const finished = await engine.finished;
    expect(finished.code, finished.stderr).toBe(0);
    // Every count once across both files, but for what the stopped sink wrote and never acked:
    // those were sent again to the healthy one.
    const written = readFileSync(healthyOut, "utf8") + stopped;
    const unique = [...new Set(written.split("\n").filter((l) => l !== ""))].join("\n");
    expectExactSet(unique, counts);
    const duplicates = written.split("\n").filter((l) => l !== "").length - unique.split("\n").length;
    expect(duplicates).toBeLessThanOrEqual(lineCount(frozenOut));
  });

  it("the same instance reconnecting takes its stream over at once; the old session, when it wakes, ends with SESSION_REPLACED; every count is exact", async () => {
    const dir = scratchDir("takeover");
    const counts = corpus(dir, 1, 400_000);
    const input = join(dir, "in", "part-0.txt");
    const output = join(dir, "out.txt");
    const engineAt = `127.0.0.1:${await freePort()}`;
    // Keepalive would end the stopped session only after ten minutes, far past this test's limit.
    const engine = startKeyway(["run", "examples/word-count/app.ts", "--source", "lines=connector", "--sink", "counts=connector", "--listen", engineAt, "--session-timeout-ms", "600000"]);
    const sink = startKeyway(["connector", "file-sink", "--engine", engineAt, "--target", "counts", "--path", output, "--instance-id", "sink"]);
    const frozen = startKeyway(["connector", "file-source", "--engine", engineAt, "--target", "lines", "--path", input, "--instance-id", "reader"]);
    running.push(engine, sink, frozen);
    await waitFor("counts flowing", () => (lineCount(output) > 1000 ? true : undefined), 60_000);
    frozen.child.kill("SIGSTOP");
    const restarted = startKeyway(["connector", "file-source", "--engine", engineAt, "--target", "lines", "--path", input, "--instance-id", "reader"]);
    running.push(restarted);
    const finished = await restarted.finished;
    expect(finished.code, finished.stderr).toBe(0);
    const total = [...counts.values()].reduce((a, b) => a + b, 0);
    await waitFor("every count at the sink", () => (lineCount(output) >= total ? true : undefined), 60_000);
    expectExact(readFileSync(output, "utf8"), counts);
    // Woken, the old process learns it was replaced and stops rather than take the stream back.
    frozen.child.kill("SIGCONT");
    const woken = await frozen.finished;
    expect(woken.code).not.toBe(0);
    expect(woken.stderr).toMatch(/SESSION_REPLACED/);
    expect(lineCount(output)).toBe(total);
  });
});
