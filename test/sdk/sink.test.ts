/** The sink runner and the id window, against a scripted engine on a real gRPC socket. */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { SinkRequest } from "../../src/protocol/gen/keyway/v1/connector_pb.ts";
import { createIdWindow, runSink, type OutputBatch, type SinkOptions } from "../../src/sdk/index.ts";
import { LIMITS, startFakeEngine, type FakeEngine, type FakeSession } from "./fake-engine.ts";

let engine: FakeEngine;
let stop: AbortController;
let running: Promise<void> | undefined;

beforeEach(async () => {
  engine = await startFakeEngine();
  stop = new AbortController();
});

afterEach(async () => {
  stop.abort();
  await running?.catch(() => {});
  running = undefined;
  await engine.close();
});

function options(overrides: Partial<SinkOptions> = {}): SinkOptions {
  return { engine: engine.address, target: "counts", connectorName: "test-sink", signal: stop.signal, ...overrides };
}

/** A handler that records batches and holds each write until released. */
function heldWrites() {
  const written: OutputBatch[] = [];
  const pending: Array<() => void> = [];
  const handler = (batch: OutputBatch): Promise<void> =>
    new Promise((resolve) => {
      pending.push(() => {
        written.push(batch);
        resolve();
      });
    });
  return { written, handler, pending, releaseAll: () => pending.splice(0).forEach((release) => release()) };
}

function sendBatch(session: FakeSession<"Sink">, sequence: bigint, ids: string[]): void {
  const records = ids.map((id) => ({ id, value: Buffer.from(`value of ${id}`), headers: {}, eventTimeMs: 0n }));
  session.send({ case: "batch", value: { sequence, records } as never });
}

const acks = (session: FakeSession<"Sink">): bigint[] =>
  session.requests.flatMap((r: SinkRequest) => (r.kind.case === "ack" ? [r.kind.value.sequence] : []));

describe("sink runner", () => {
  it("grants a window of at least max_batch_records, then acks each batch after its write and grants its records again", async () => {
    const writes = heldWrites();
    running = runSink(options({ creditWindowRecords: 500 }), writes.handler);
    const session = await engine.nextSession("Sink");
    session.welcome(0, { ...LIMITS, maxBatchRecords: 800 });
    expect((await session.nextOf("credits")).records).toBe(800);

    sendBatch(session, 1n, ["a", "b", "c"]);
    await waitUntil(() => writes.pending.length === 1);
    // The write is not durable yet, so nothing may be acked.
    expect(acks(session)).toEqual([]);
    writes.releaseAll();
    expect((await session.nextOf("ack")).sequence).toBe(1n);
    expect((await session.nextOf("credits")).records).toBe(3);
    expect(writes.written.map((b) => [b.sequence, b.records.map((r) => r.id)])).toEqual([[1n, ["a", "b", "c"]]]);
  });

  it("acks a resent older batch only once every batch at or below the ack is written", async () => {
    const writes = heldWrites();
    running = runSink(options(), writes.handler);
    const session = await engine.nextSession("Sink");
    session.welcome();
    await session.nextOf("credits");
    sendBatch(session, 6n, ["f"]);
    await waitUntil(() => writes.pending.length === 1);
    // 7 and then 3 (a resend) arrive while 6 is being written; an Ack{6} or Ack{7} sent before 3
    // is written would settle 3 unwritten. The pause only makes that interleaving likely.
    sendBatch(session, 7n, ["g"]);
    sendBatch(session, 3n, ["c"]);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const sent = [6n, 7n, 3n];
    const releasing = (async () => {
      while (writes.written.length < sent.length) {
        await waitUntil(() => writes.pending.length > 0);
        writes.releaseAll();
      }
    })();
    for (;;) {
      const { sequence } = await session.nextOf("ack");
      const writtenSequences = writes.written.map((b) => b.sequence);
      for (const s of sent) if (s <= sequence) expect(writtenSequences).toContain(s);
      if (sequence === 7n) break;
    }
    await releasing;
    expect(writes.written.map((b) => b.sequence)).toEqual([6n, 7n, 3n]);
  });

  it("with an id window, writes each output once across a redelivery after a lost session", async () => {
    const writes = heldWrites();
    running = runSink(options({ dedup: createIdWindow(100) }), writes.handler);
    const first = await engine.nextSession("Sink");
    first.welcome();
    await first.nextOf("credits");
    sendBatch(first, 1n, ["a", "b", "c"]);
    await waitUntil(() => writes.pending.length === 1);
    first.drop(); // the write completes after the session is gone: no ack reaches the engine
    writes.releaseAll();

    const second = await engine.nextSession("Sink");
    second.welcome();
    await second.nextOf("credits");
    sendBatch(second, 1n, ["a", "b", "c"]);
    sendBatch(second, 2n, ["c", "d"]);
    await waitUntil(() => writes.pending.length === 1);
    writes.releaseAll();
    await waitUntil(() => acks(second).includes(2n));
    expect(writes.written.flatMap((b) => b.records.map((r) => r.id))).toEqual(["a", "b", "c", "d"]);
  });

  it("grows a smaller id window at Welcome to the credits plus max_replay_records, so a restart's replay is still written once", async () => {
    const written: string[] = [];
    const window = createIdWindow(5);
    running = runSink(options({ dedup: window, creditWindowRecords: 3 }), async (batch) => void written.push(...batch.records.map((r) => r.id)));
    const first = await engine.nextSession("Sink");
    first.welcome(0, { ...LIMITS, maxBatchRecords: 3, maxReplayRecords: 20 });
    await first.nextOf("credits");
    expect(window.capacity).toBe(23);
    const ids = Array.from({ length: 20 }, (_, i) => `r${i}`);
    for (let b = 0; b < 10; b++) {
      sendBatch(first, BigInt(b + 1), ids.slice(2 * b, 2 * b + 2));
      await waitUntil(() => acks(first).includes(BigInt(b + 1)));
    }
    first.drop();
    // The engine restarted from a checkpoint before all of them: they come again, under new sequences.
    const second = await engine.nextSession("Sink");
    second.welcome(0, { ...LIMITS, maxBatchRecords: 3, maxReplayRecords: 20 });
    await second.nextOf("credits");
    for (let b = 0; b < 10; b++) sendBatch(second, BigInt(b + 1), ids.slice(2 * b, 2 * b + 2));
    sendBatch(second, 11n, ["new"]);
    await waitUntil(() => acks(second).includes(11n));
    expect(written).toEqual([...ids, "new"]);
  });

  it("keeps serving after the engine drops the session, granting credits again on the new one", async () => {
    const written: string[] = [];
    running = runSink(options({ backoff: { initialMs: 10, maxMs: 20 } }), async (batch) => {
      written.push(...batch.records.map((r) => r.id));
    });
    const first = await engine.nextSession("Sink");
    first.welcome();
    await first.nextOf("credits");
    first.drop();
    const second = await engine.nextSession("Sink");
    second.welcome();
    expect((await second.nextOf("credits")).records).toBe(LIMITS.maxBatchRecords);
    sendBatch(second, 1n, ["x"]);
    expect((await second.nextOf("ack")).sequence).toBe(1n);
    expect(written).toEqual(["x"]);
  });

  it("on abort finishes the write in progress, acks it and half-closes", async () => {
    const writes = heldWrites();
    running = runSink(options(), writes.handler);
    const session = await engine.nextSession("Sink");
    session.welcome();
    await session.nextOf("credits");
    sendBatch(session, 1n, ["a"]);
    await waitUntil(() => writes.pending.length === 1);
    stop.abort();
    writes.releaseAll();
    await running;
    await session.ended;
    expect(acks(session)).toEqual([1n]);
    // No credits granted after the stop: only the initial window.
    expect(session.requests.filter((r) => r.kind.case === "credits").length).toBe(1);
  });
});

describe("sink runner stopping", () => {
  it("ends the session unacked when a write is still stuck after drainTimeoutMs", async () => {
    const writes = heldWrites();
    running = runSink(options({ drainTimeoutMs: 50 }), writes.handler);
    const session = await engine.nextSession("Sink");
    session.welcome();
    await session.nextOf("credits");
    sendBatch(session, 1n, ["a"]);
    await waitUntil(() => writes.pending.length === 1);
    stop.abort();
    await running;
    await session.ended;
    expect(acks(session)).toEqual([]);
  });
});

describe("id window", () => {
  it("remembers the last `capacity` ids and forgets the oldest first", () => {
    const window = createIdWindow(3);
    for (const id of ["a", "b", "c", "a", "d"]) window.add(id);
    expect([...window.ids()]).toEqual(["b", "c", "d"]);
    expect(window.has("a")).toBe(false);
    expect(window.has("d")).toBe(true);
    expect(window.size).toBe(3);
    expect(() => createIdWindow(0)).toThrow(RangeError);
  });

  it("grows keeping what it remembers, in order; a smaller capacity changes nothing", () => {
    const window = createIdWindow(3);
    for (const id of ["a", "b", "c", "d"]) window.add(id);
    window.grow(2);
    expect(window.capacity).toBe(3);
    window.grow(5);
    expect(window.capacity).toBe(5);
    expect([...window.ids()]).toEqual(["b", "c", "d"]);
    for (const id of ["e", "f", "g"]) window.add(id);
    expect([...window.ids()]).toEqual(["c", "d", "e", "f", "g"]);
    expect(window.has("b")).toBe(false);
  });
});

async function waitUntil(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 5));
}
