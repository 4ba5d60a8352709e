/** Source sessions: credits, resume positions, dropping replays and duplicates, commits, ends. */
import { afterEach, describe, expect, it } from "vitest";
import { records, TestPartitioner, TestSink, TestSource } from "./helpers/connectors.ts";
import { startHarness, type Harness } from "./helpers/harness.ts";
import { scratchDir } from "../helpers/process.ts";
import { closeClients, hello, openSource } from "./helpers/raw-session.ts";

let harness: Harness | undefined;
afterEach(async () => {
  closeClients();
  await harness?.stop();
  harness = undefined;
});

/** Values "S1".."S<to>" (the upper pipeline's outputs of "s1".."s<to>"). */
const upper = (from: number, to: number) => records(from, to, "S").map((r) => r.value);

// An interval no test outlives: commits then come only from the checkpoint at stop.
const NO_PERIODIC_CHECKPOINT_MS = 3_600_000;

describe("source sessions", () => {
  it("grants two batches of credits, then one credit back per record the pipeline takes, never more", async () => {
    harness = await startHarness({ limits: { maxBatchRecords: 4 } });
    const sink = await TestSink.connect(harness.address);
    const source = await TestSource.connect(harness.address);
    const window = 8;
    expect(source.welcome.initialCredits).toBe(window);
    let granted = 0;
    let grants = 0;
    let mostAvailable = 0;
    source.session.onResponse((r) => {
      if (r.kind.case !== "credits") return;
      granted += r.kind.value.records;
      grants++;
      mostAvailable = Math.max(mostAvailable, source.credits);
    });
    await source.open("s");
    await source.send("s", records(1, 100, "s"));
    await source.untilCommitted("s", 100);
    await sink.untilValues(100);
    expect(sink.values()).toEqual(upper(1, 100));
    // Every record's credit came back, and the connector never held more than the window.
    await source.session.until("every credit back", () => granted === 100);
    expect(source.credits).toBe(window);
    expect(mostAvailable).toBeLessThanOrEqual(window);
    expect(grants).toBeGreaterThan(1);
  });

  it("answers OpenStream with where to resume: applied and committed positions", async () => {
    harness = await startHarness({ dataDir: scratchDir("protocol-resume"), checkpointIntervalMs: NO_PERIODIC_CHECKPOINT_MS });
    const sink = await TestSink.connect(harness.address);
    const first = await TestSource.connect(harness.address);
    expect(await first.open("s")).toMatchObject({ stream: "s", resumeAfter: 0n, committed: 0n });
    await first.send("s", records(1, 5, "s"));
    await sink.untilValues(5);
    first.session.cancel();
    await first.session.status;
    // Applied through 5, but no checkpoint has made it durable yet.
    const second = await TestSource.connect(harness.address);
    expect(await second.open("s")).toMatchObject({ stream: "s", resumeAfter: 5n, committed: 0n });
  });

  it("resumes from a checkpoint after a restart, with the idempotency window restored", async () => {
    const dataDir = scratchDir("protocol-restart");
    harness = await startHarness({ dataDir, checkpointIntervalMs: NO_PERIODIC_CHECKPOINT_MS });
    const sink = await TestSink.connect(harness.address);
    const source = await TestSource.connect(harness.address);
    await source.open("s");
    await source.send("s", records(1, 5, "s").map((r) => ({ ...r, idempotencyId: `id-${r.position}` })));
    await sink.untilValues(5);
    // Stopping the engine takes a last checkpoint, once the sink has acked everything.
    await harness.engine!.stop();
    closeClients();
    await harness.stop();

    harness = await startHarness({ dataDir, checkpointIntervalMs: 50, deferEngine: true });
    // A session that arrives before the engine has restored the source waits for it.
    const early = openSource(harness.address);
    early.send(hello("in"));
    early.send({ kind: { case: "open", value: { stream: "s" } } });
    await harness.startEngine();
    expect(await early.next("opened")).toMatchObject({ resumeAfter: 5n, committed: 5n });
    early.cancel();

    const sinkAfter = await TestSink.connect(harness.address);
    const again = await TestSource.connect(harness.address);
    expect(await again.open("s")).toMatchObject({ resumeAfter: 5n, committed: 5n });
    // Position 6 repeats an id applied before the restart: dropped, yet committed.
    await again.send("s", [
      { position: 6, value: "s6", idempotencyId: "id-2" },
      { position: 7, value: "s7", idempotencyId: "id-7" },
      { position: 8, value: "s8" },
    ]);
    await again.untilCommitted("s", 8);
    await sinkAfter.untilValues(2);
    expect(sinkAfter.values()).toEqual(["S7", "S8"]);
  });

  it("restores exactly the last idempotency_window ids after a restart", async () => {
    const dataDir = scratchDir("protocol-window");
    const limits = { idempotencyWindow: 600 };
    harness = await startHarness({ dataDir, limits, checkpointIntervalMs: NO_PERIODIC_CHECKPOINT_MS });
    const sink = await TestSink.connect(harness.address);
    const source = await TestSource.connect(harness.address);
    await source.open("s");
    await source.send("s", records(1, 1500, "s").map((r) => ({ ...r, idempotencyId: `id-${r.position}` })));
    await sink.untilValues(1500);
    await harness.engine!.stop();
    closeClients();
    await harness.stop();

    harness = await startHarness({ dataDir, limits, checkpointIntervalMs: 50 });
    const sinkAfter = await TestSink.connect(harness.address);
    const again = await TestSource.connect(harness.address);
    expect(await again.open("s")).toMatchObject({ resumeAfter: 1500n, committed: 1500n });
    // Ids 901..1500 are the window; 900 has left it.
    await again.send("s", [
      { position: 1501, value: "x1", idempotencyId: "id-901" },
      { position: 1502, value: "x2", idempotencyId: "id-1500" },
      { position: 1503, value: "x3", idempotencyId: "id-900" },
    ]);
    await again.untilCommitted("s", 1503);
    await sinkAfter.untilValues(1);
    expect(sinkAfter.values()).toEqual(["X3"]);
  });

  it("drops a replay at or below the applied position, and commits past it", async () => {
    harness = await startHarness();
    const sink = await TestSink.connect(harness.address);
    const first = await TestSource.connect(harness.address);
    await first.open("s");
    await first.send("s", records(1, 5, "s"));
    await first.untilCommitted("s", 5);
    first.session.cancel();
    await first.session.status;

    // The stream closed with its session, so another session may open it.
    const second = await TestSource.connect(harness.address);
    expect(await second.open("s")).toMatchObject({ resumeAfter: 5n, committed: 5n });
    await second.send("s", records(3, 8, "s"));
    await second.untilCommitted("s", 8);
    await sink.untilValues(8);
    expect(sink.values()).toEqual(upper(1, 8));
  });

  it("drops records whose idempotency id was applied, across streams; dropped records are committed", async () => {
    harness = await startHarness();
    const sink = await TestSink.connect(harness.address);
    const source = await TestSource.connect(harness.address);
    await source.open("s");
    await source.open("t");
    const ids = ["a", "b", "c", "d", "e", "f", "a", "b"];
    await source.send("s", ids.map((id, i) => ({ position: i + 1, value: `s${i + 1}`, idempotencyId: id })));
    // The last two are duplicates: nothing follows them, and still they are committed.
    await source.untilCommitted("s", 8);
    await source.send("t", [{ position: 1, value: "t1", idempotencyId: "c" }, { position: 2, value: "t2", idempotencyId: "g" }]);
    await source.untilCommitted("t", 2);
    await sink.untilValues(7);
    expect(sink.values()).toEqual([...upper(1, 6), "T2"]);
  });

  it("forgets ids older than the window", async () => {
    harness = await startHarness({ limits: { idempotencyWindow: 2 } });
    const sink = await TestSink.connect(harness.address);
    const source = await TestSource.connect(harness.address);
    await source.open("s");
    const ids = ["a", "b", "c", "a", "c"];
    await source.send("s", ids.map((id, i) => ({ position: i + 1, value: `s${i + 1}`, idempotencyId: id })));
    await source.untilCommitted("s", 5);
    await sink.untilValues(4);
    // "a" left the window of two when "c" came; the second "c" is within it.
    expect(sink.values()).toEqual(["S1", "S2", "S3", "S4"]);
  });

  it("reports Committed positions to the session that has the stream open", async () => {
    harness = await startHarness({ limits: { maxBatchRecords: 2 } });
    await TestSink.connect(harness.address);
    const source = await TestSource.connect(harness.address);
    await source.open("s");
    await source.send("s", records(1, 6, "s"));
    await source.untilCommitted("s", 6);
    const positions = source.commits.filter((c) => c.stream === "s").map((c) => c.position);
    expect(positions.at(-1)).toBe(6n);
    // One Committed per engine batch, each past the one before.
    positions.forEach((p, i) => expect(p).toBeGreaterThan(i === 0 ? 0n : positions[i - 1]!));
  });

  it("answers EndStream with StreamEnded once everything sent is committed", async () => {
    harness = await startHarness();
    await TestSink.connect(harness.address);
    const source = await TestSource.connect(harness.address);
    await source.open("s");
    await source.send("s", records(1, 5, "s"));
    source.end("s");
    expect(await source.session.next("ended")).toMatchObject({ stream: "s", position: 5n });
    expect(source.committed.get("s")).toBe(5n);
    // An empty stream ends at once, at its resume position.
    await source.open("empty");
    source.end("empty");
    expect(await source.session.next("ended")).toMatchObject({ stream: "empty", position: 0n });
  });

  it("keeps records accepted from a session that ended, and processes them", async () => {
    harness = await startHarness({ limits: { maxBatchRecords: 4 } });
    const source = await TestSource.connect(harness.address, "kin");
    await source.open("k");
    // No partitioner yet: the keyed pipeline takes one batch and waits, the rest stays queued.
    await source.send("k", records(1, 8, "k"));
    // Requests are handled in order: once this stream is open, the records before it were accepted.
    await source.open("marker");
    source.session.cancel();
    await source.session.status;
    const kout = await TestSink.connect(harness.address, "kout");
    await TestPartitioner.connect(harness.address, { keyOf: (v) => v });
    await kout.untilValues(8);
    expect(kout.values()).toEqual(records(1, 8, "k").map((r) => `${r.value}=1`));
  });
});
