/** Partitioner sessions: keys for the engine's records, shared load, waiting, resending. */
import * as grpc from "@grpc/grpc-js";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Logger } from "../../src/log/logger.ts";
import { ErrorCode } from "../../src/protocol/gen/keyway/v1/connector_pb.ts";
import { resolveLimits } from "../../src/protocol/limits.ts";
import { PartitionerPool } from "../../src/protocol/partition/partitioner-pool.ts";
import { records, TestPartitioner, TestSink, TestSource, type TestRecord } from "./helpers/connectors.ts";
import { startHarness, type Harness } from "./helpers/harness.ts";
import { closeClients, failure } from "./helpers/raw-session.ts";

let harness: Harness | undefined;
afterEach(async () => {
  closeClients();
  await harness?.stop();
  harness = undefined;
});

const firstLetter = (value: string) => value[0]!;

/** Values like "a0", "b1", "c2"... over a few letters, so keys repeat. */
function lettered(count: number): TestRecord[] {
  return records(1, count).map((r, i) => ({ ...r, value: `${"abc"[i % 3]}${i}` }));
}

/** The keyed pipeline's outputs computed independently: value=count of its key so far. */
function expectedCounts(input: readonly TestRecord[], keyOf: (v: string) => string): string[] {
  const counts = new Map<string, number>();
  return input.map(({ value }) => {
    const n = (counts.get(keyOf(value)) ?? 0) + 1;
    counts.set(keyOf(value), n);
    return `${value}=${n}`;
  });
}

describe("partitioner sessions", () => {
  it("shares the load across sessions, within each session's credits and the batch limit", async () => {
    harness = await startHarness({ limits: { maxBatchRecords: 4 } });
    const kout = await TestSink.connect(harness.address, "kout");
    const one = await TestPartitioner.connect(harness.address, { keyOf: firstLetter, credits: 3 });
    const two = await TestPartitioner.connect(harness.address, { keyOf: firstLetter, credits: 3 });
    const source = await TestSource.connect(harness.address, "kin");
    await source.open("k");
    const input = lettered(40);
    await source.send("k", input);
    await source.untilCommitted("k", 40);
    await kout.untilValues(40);
    expect(kout.values()).toEqual(expectedCounts(input, firstLetter));
    expect(one.requests.length).toBeGreaterThan(0);
    expect(two.requests.length).toBeGreaterThan(0);
    // Each value went to exactly one session, in requests of at most 3 (the credits).
    expect(one.valuesSeen() + two.valuesSeen()).toBe(40);
    for (const request of [...one.requests, ...two.requests]) expect(request.values.length).toBeLessThanOrEqual(3);
    const ids = [...one.requests, ...two.requests].map((r) => r.requestId);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it("holds records while no partitioner is attached, and loses none", async () => {
    harness = await startHarness({ limits: { maxBatchRecords: 4 } });
    const kout = await TestSink.connect(harness.address, "kout");
    const source = await TestSource.connect(harness.address, "kin");
    await source.open("k");
    const input = lettered(6);
    await source.send("k", input);
    // Requests are handled in order: once this stream is open, the records were accepted.
    await source.open("marker");
    expect(kout.values()).toEqual([]);
    expect(source.committed.get("k")).toBeUndefined();

    await TestPartitioner.connect(harness.address, { keyOf: firstLetter });
    await source.untilCommitted("k", 6);
    await kout.untilValues(6);
    expect(kout.values()).toEqual(expectedCounts(input, firstLetter));
  });

  it("sends a lost session's unanswered requests to another session", async () => {
    harness = await startHarness();
    const kout = await TestSink.connect(harness.address, "kout");
    const silent = await TestPartitioner.connect(harness.address);
    const source = await TestSource.connect(harness.address, "kin");
    await source.open("k");
    const input = lettered(5);
    await source.send("k", input);
    const lost = await silent.session.next("batch");
    silent.session.cancel();
    await silent.session.status;

    const answering = await TestPartitioner.connect(harness.address, { keyOf: firstLetter });
    await kout.untilValues(5);
    expect(kout.values()).toEqual(expectedCounts(input, firstLetter));
    // The same request: its id and its values (docs/protocol.md 9.2).
    expect(answering.requests[0]!.values.map((v) => Buffer.from(v).toString())).toEqual(lost.values.map((v) => Buffer.from(v).toString()));
    expect(answering.requests[0]!.requestId).toBe(lost.requestId);
  });

  it("ends a live session that leaves a request unanswered past the session timeout (PROTOCOL_VIOLATION), and its request goes to another", async () => {
    harness = await startHarness({ sessionTimeoutMs: 1000 });
    const kout = await TestSink.connect(harness.address, "kout");
    // Connected and answering pings, but never answering requests: only the answer deadline ends it.
    const stuck = await TestPartitioner.connect(harness.address);
    const source = await TestSource.connect(harness.address, "kin");
    await source.open("k");
    const input = lettered(5);
    await source.send("k", input);
    const lost = await stuck.session.next("batch");
    const answering = await TestPartitioner.connect(harness.address, { keyOf: firstLetter });
    const { error, status } = await failure(stuck.session);
    expect(ErrorCode[error.code]).toBe("PROTOCOL_VIOLATION");
    expect(error.message).toMatch(new RegExp(`^request ${lost.requestId} unanswered for \\d+ ms, past the engine's session timeout of 1000 ms`));
    expect(grpc.status[status.code]).toBe("FAILED_PRECONDITION");
    await kout.untilValues(5);
    expect(kout.values()).toEqual(expectedCounts(input, firstLetter));
    expect(answering.requests[0]!.requestId).toBe(lost.requestId);
  });

  it("says, every few seconds, that requests wait while no session is attached, and stops once they can go", () => {
    vi.useFakeTimers();
    try {
      const warnings: Array<[object, string]> = [];
      const log = { warn: (fields: object, msg: string) => warnings.push([fields, msg]) } as unknown as Logger;
      const pool = new PartitionerPool("by-letter", resolveLimits({}), { next: 1n }, { answerTimeoutMs: 20_000, log });
      void pool.keys([Buffer.from("a1"), Buffer.from("b2")]);
      vi.advanceTimersByTime(11_000);
      expect(warnings).toHaveLength(2);
      expect(warnings[0]).toEqual([{ partitioner: "by-letter", values: 2, sessions: 0, waitedMs: 5000 }, "partitioner requests waiting: no session of this partitioner is attached"]);
      const sent: bigint[] = [];
      pool.attach({ ended: false, creditsAvailable: 10, send: (id) => sent.push(id) });
      pool.dispatch();
      vi.advanceTimersByTime(11_000);
      expect(sent).toEqual([1n]);
      expect(warnings).toHaveLength(2);
    } finally {
      vi.useRealTimers();
    }
  });

  it("accepts raw byte keys", async () => {
    harness = await startHarness();
    const kout = await TestSink.connect(harness.address, "kout");
    await TestPartitioner.connect(harness.address, { keyOf: firstLetter, raw: true });
    const source = await TestSource.connect(harness.address, "kin");
    await source.open("k");
    const input = lettered(9);
    await source.send("k", input);
    await kout.untilValues(9);
    expect(kout.values()).toEqual(expectedCounts(input, firstLetter));
  });
});
