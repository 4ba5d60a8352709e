/**
 * No wait in the engine is silent or unbounded: a checkpoint held up by a sink that takes nothing
 * says what it waits for and is given up at --checkpoint-timeout-ms (the run goes on and ends
 * exact), and a stop by signal that cannot deliver what the sinks hold ends at
 * --shutdown-timeout-ms with one line saying so.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { corpus, expectExact, lineCount, steadyLoad } from "./helpers/cluster.ts";
import { freePort, scratchDir, startKeyway, waitFor, type Running } from "./helpers/process.ts";

const running: Running[] = [];
afterEach(() => {
  for (const r of running.splice(0)) r.child.kill("SIGKILL");
});

/** The engine's JSON log lines with this message. */
const logged = (stderr: string, msg: string) =>
  stderr
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.msg === msg);

describe("bounded waits", () => {
  it("a checkpoint waiting on a sink with no session logs what it waits for and is given up; once a sink attaches the run ends exact, and a restart from its data dir has nothing left to do", async () => {
    const dir = scratchDir("checkpoint-timeout");
    const counts = corpus(dir, 1, 200_000);
    const output = join(dir, "out.txt");
    const dataDir = join(dir, "data");
    const engineAt = `127.0.0.1:${await freePort()}`;
    const run = (extra: string[] = []) =>
      startKeyway(["run", "examples/word-count/app.ts", "--source", `lines=file:${join(dir, "in")}`, "--sink", "counts=connector", "--listen", engineAt,
        "--data-dir", dataDir, "--checkpoint-interval-ms", "100", "--checkpoint-timeout-ms", "1000", ...extra]);
    const engine = run();
    running.push(engine);
    // No sink session: the sink's buffer fills, the pipeline's batch in hand waits for room, and so does every checkpoint.
    await waitFor("a checkpoint given up", () => (logged(engine.stderr(), "checkpoint given up; the pipelines go on and the next checkpoint tries again").length > 0 ? true : undefined), 60_000);
    const waiting = logged(engine.stderr(), "checkpoint still waiting");
    expect(waiting.length).toBeGreaterThan(0);
    expect(waiting[0]).toMatchObject({ level: 40 });
    expect((waiting[0]!.sinks as Record<string, number>).counts).toBeGreaterThan(0);
    const sink = startKeyway(["connector", "file-sink", "--engine", engineAt, "--target", "counts", "--path", output, "--instance-id", "sink"]);
    running.push(sink);
    const finished = await engine.finished;
    expect(finished.code, finished.stderr).toBe(0);
    const total = [...counts.values()].reduce((a, b) => a + b, 0);
    await waitFor("every count at the sink", () => (lineCount(output) >= total ? true : undefined), 60_000);
    expectExact(readFileSync(output, "utf8"), counts);
    // Given-up checkpoints left no gap: the last one covers the whole file, so a restart reads nothing.
    const again = run();
    running.push(again);
    const second = await again.finished;
    expect(second.code, second.stderr).toBe(0);
    expect(lineCount(output)).toBe(total);
  });

  it("a stop by signal whose sink has no session says what it waits for, then exits 1 at --shutdown-timeout-ms with one line naming what was not delivered", async () => {
    const [tcpPort, connectorPort] = [await freePort(), await freePort()];
    const engine = startKeyway(["run", "examples/validation/sequence-window.ts", "--source", `in=tcp://127.0.0.1:${tcpPort}`, "--sink", "out=connector",
      "--listen", `127.0.0.1:${connectorPort}`, "--shutdown-timeout-ms", "12000"]);
    running.push(engine);
    const load = await steadyLoad(tcpPort, 10, 50, 5);
    await waitFor("records held for the sink", () => (load.sent() > 2000 ? true : undefined), 60_000);
    await load.stop();
    engine.child.kill("SIGTERM");
    const finished = await engine.finished;
    expect(finished.code).toBe(1);
    const errors = finished.stderr.split("\n").filter((l) => l.startsWith("keyway: error"));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/^keyway: error \[TIMED_OUT\]: stopping took longer than 12000 ms \(--shutdown-timeout-ms\); [1-9]\d* records the sinks held were not delivered/);
    const waiting = logged(finished.stderr, "the end of the run (a second signal exits without what the sinks hold) still waiting");
    expect(waiting.length).toBeGreaterThan(0);
    expect((waiting[0]!.sinks as Record<string, number>).out).toBeGreaterThan(0);
  });
});
