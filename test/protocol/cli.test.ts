/** `keyway run` with connectors attached over the protocol: a real CLI process, real sessions. */
import { createServer, type Server } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { expectOneLineError, runKeyway, scratchDir, startKeyway, waitFor, type Running } from "../helpers/process.ts";
import { TestSink, TestSource } from "./helpers/connectors.ts";
import { closeClients } from "./helpers/raw-session.ts";

const APP = "examples/word-count/app.ts";

let running: Running | undefined;
let busy: Server | undefined;
afterEach(() => {
  closeClients();
  running?.child.kill("SIGKILL");
  running = undefined;
  busy?.close();
  busy = undefined;
});

describe("keyway run with connector bindings", () => {
  it("lists the protocol flags and the connector URI in its help", async () => {
    const help = await runKeyway(["run", "--help"]);
    expect(help.code).toBe(0);
    for (const flag of [
      "--listen",
      "--token",
      "--max-batch-records",
      "--max-message-bytes",
      "--idempotency-window",
      "--max-streams-per-session",
      "--max-streams-per-source",
      "--max-stream-name-bytes",
      "--stream-retention-ms",
      "connector",
    ]) {
      expect(help.stdout).toContain(flag);
    }
  });

  it("counts words from a connector source into a connector sink, logging where it serves", async () => {
    running = startKeyway(["run", APP, "--source", "lines=connector", "--sink", "counts=connector", "--listen", "127.0.0.1:0", "--token", "t0ken", "--no-progress"]);
    const address = await waitFor("the serving address", () => {
      const line = running!.stderr().split("\n").find((l) => l.includes("serving connectors on"));
      return line === undefined ? undefined : (JSON.parse(line) as { address: string }).address;
    });
    expect(address).toMatch(/^127\.0\.0\.1:\d+$/);

    const sink = await TestSink.connect(address, "counts", { token: "t0ken" });
    // Without checkpoints a restart sends nothing acked again.
    expect(sink.welcome.limits?.maxReplayRecords).toBe(0);
    const source = await TestSource.connect(address, "lines", { token: "t0ken" });
    await source.open("book");
    await source.send("book", [
      { position: 1, value: "It was the best" },
      { position: 2, value: "it was the worst" },
    ]);
    source.end("book");
    expect(await source.session.next("ended")).toMatchObject({ stream: "book", position: 2n });
    await sink.untilValues(8);
    expect(sink.values()).toEqual(["it 1", "was 1", "the 1", "best 1", "it 2", "was 2", "the 2", "worst 1"]);
    expect(sink.ids()[0]).toBe("word-count:book@1:0.0");

    running.child.kill("SIGTERM");
    const finished = await running.finished;
    expect(finished.code).toBe(0);
    const status = await source.session.status;
    expect(status.details).toContain("SHUTTING_DOWN");
  });

  it("refuses a malformed --listen", () =>
    expectOneLineError(["run", APP, "--source", "lines=connector", "--sink", "counts=connector", "--listen", "nowhere"], 2, /\[USAGE\]: --listen expects HOST:PORT/));

  it("refuses limits out of range", () =>
    expectOneLineError(["run", APP, "--source", "lines=connector", "--sink", "counts=connector", "--max-message-bytes", "10"], 2, /\[USAGE\]: --max-message-bytes must be an integer from 1024/));

  it("takes the stream limits and retention: advertised in Welcome, and a stream retired after --stream-retention-ms frees its place", async () => {
    running = startKeyway([
      "run", APP, "--source", "lines=connector", "--sink", "counts=connector", "--listen", "127.0.0.1:0", "--no-progress",
      "--max-streams-per-session", "7", "--max-streams-per-source", "1", "--max-stream-name-bytes", "100", "--stream-retention-ms", "200",
    ]);
    const address = await waitFor("the serving address", () => {
      const line = running!.stderr().split("\n").find((l) => l.includes("serving connectors on"));
      return line === undefined ? undefined : (JSON.parse(line) as { address: string }).address;
    });
    await TestSink.connect(address, "counts");
    const first = await TestSource.connect(address, "lines", { instanceId: "first" });
    expect(first.welcome.limits).toMatchObject({ maxStreamsPerSession: 7, maxStreamsPerSource: 1, maxStreamNameBytes: 100 });
    await first.open("a");
    await first.send("a", [{ position: 1, value: "one" }]);
    await first.untilCommitted("a", 1);
    first.session.end();
    await first.session.status;
    // The table holds "a" (one stream is the most) until it is retired.
    const second = await TestSource.connect(address, "lines", { instanceId: "second" });
    await waitFor("stream a retired", async () => {
      const probe = await TestSource.connect(address, "lines", { instanceId: `probe-${Date.now()}` });
      probe.session.send({ kind: { case: "open", value: { stream: "b" } } });
      const answer = await Promise.race([probe.session.next("opened").then(() => true), probe.session.status.then(() => false)]);
      // A half-close is answered once the engine has ended the session: "b", empty, is gone by then.
      probe.session.end();
      await probe.session.status;
      return answer ? true : undefined;
    }, 10_000);
    expect(await second.open("a")).toMatchObject({ resumeAfter: 0n, committed: 0n });
  });

  it("passes the limit flags to local workers: every worker's Welcome advertises them", async () => {
    running = startKeyway([
      "run", APP, "--source", "lines=connector", "--sink", "counts=connector", "--listen", "127.0.0.1:0", "--no-progress", "--workers", "2",
      "--max-batch-records", "77", "--max-message-bytes", "65536", "--idempotency-window", "500", "--session-timeout-ms", "9000",
      "--max-streams-per-session", "7", "--max-streams-per-source", "9", "--max-stream-name-bytes", "100",
    ]);
    // Local workers write to the first worker's stderr: one line per worker.
    const addresses = await waitFor("both workers serving", () => {
      const lines = running!.stderr().split("\n").filter((l) => l.includes("serving connectors on"));
      return lines.length === 2 ? lines.map((l) => (JSON.parse(l) as { address: string }).address) : undefined;
    }, 30_000);
    for (const address of addresses) {
      const source = await TestSource.connect(address, "lines");
      expect(source.welcome.limits, address).toMatchObject({ maxBatchRecords: 77, maxMessageBytes: 65536, idempotencyWindow: 500, maxStreamsPerSession: 7, maxStreamsPerSource: 9, maxStreamNameBytes: 100 });
    }
    const help = await runKeyway(["worker", "--help"]);
    for (const flag of ["--max-batch-records", "--max-message-bytes", "--session-timeout-ms", "--idempotency-window", "--max-streams-per-session", "--max-streams-per-source", "--max-stream-name-bytes"]) expect(help.stdout).toContain(flag);
  });

  it("with --data-dir tells a sink session how much a restart may send it again: --max-uncommitted-records per pipeline writing there", async () => {
    running = startKeyway([
      "run", APP, "--source", "lines=connector", "--sink", "counts=connector", "--listen", "127.0.0.1:0", "--no-progress",
      "--data-dir", scratchDir("replay-bound"), "--max-uncommitted-records", "1234",
    ]);
    const address = await waitFor("the serving address", () => {
      const line = running!.stderr().split("\n").find((l) => l.includes("serving connectors on"));
      return line === undefined ? undefined : (JSON.parse(line) as { address: string }).address;
    });
    const sink = await TestSink.connect(address, "counts");
    expect(sink.welcome.limits?.maxReplayRecords).toBe(1234);
    const source = await TestSource.connect(address, "lines");
    expect(source.welcome.limits?.maxReplayRecords).toBe(0);
  });

  it("refuses --stream-retention-ms in a cluster", () =>
    expectOneLineError(["run", APP, "--source", "lines=connector", "--sink", "counts=connector", "--workers", "2", "--stream-retention-ms", "1000"], 2, /\[USAGE\]: --stream-retention-ms cannot be combined with a cluster yet/));

  it("refuses a --listen address in use", async () => {
    busy = createServer();
    await new Promise<void>((resolve) => busy!.listen(0, "127.0.0.1", () => resolve()));
    const { port } = busy.address() as { port: number };
    await expectOneLineError(
      ["run", APP, "--source", "lines=connector", "--sink", "counts=connector", "--listen", `127.0.0.1:${port}`],
      1,
      new RegExp(`\\[PORT_IN_USE\\]: cannot listen on 127\\.0\\.0\\.1:${port} for connectors: address in use$`),
    );
  });
});
