import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { corpus, expectExact, lineCount } from "../helpers/cluster.ts";
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
