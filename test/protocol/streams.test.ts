/**
 * The table of source streams is owned and bounded (docs/protocol.md §7.1, R-SRC-OPEN-OWNER,
 * R-SRC-STREAM-LIMITS, R-SRC-RETIREMENT): a stream belongs to the connector_name that created it,
 * names, streams per session and streams per source are bounded with typed errors, and a stream
 * with no session and nothing uncommitted is retired after the retention, freeing its slot. Every
 * refusal ends only the offending session: a healthy neighbour keeps flowing.
 */
import * as grpc from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import { ErrorCode } from "../../src/protocol/gen/keyway/v1/connector_pb.ts";
import { scratchDir } from "../helpers/process.ts";
import { records, TestSink, TestSource } from "./helpers/connectors.ts";
import { startHarness, type Harness, type HarnessOptions } from "./helpers/harness.ts";
import { healthyNeighbour, type Neighbour } from "./helpers/neighbour.ts";
import { closeClients, failure, hello, openSource, type Ended, type HelloFields } from "./helpers/raw-session.ts";

let harness: Harness | undefined;
afterEach(async () => {
  closeClients();
  await harness?.stop();
  harness = undefined;
});

/** The largest uint64: a position that makes every later record of the stream a "replay". */
const U64_MAX = 2n ** 64n - 1n;

async function setUp(options: HarnessOptions = {}): Promise<{ address: string; neighbour: Neighbour }> {
  harness = await startHarness(options);
  return { address: harness.address, neighbour: await healthyNeighbour(harness.address) };
}

async function expectFailure(session: Ended, code: ErrorCode, status: grpc.status): Promise<string> {
  const { error, status: final } = await failure(session);
  expect(ErrorCode[error.code]).toBe(ErrorCode[code]);
  expect(grpc.status[final.code]).toBe(grpc.status[status]);
  return error.message;
}

let instances = 0;
/** Hello fields with an instance id of its own: sessions of one instance would replace each other. */
const instance = (fields: HelloFields = {}): HelloFields => ({ instanceId: `streams-test-${++instances}`, ...fields });

/** A raw source session past its Welcome. */
async function welcomedSource(address: string, fields: HelloFields = instance()) {
  const session = openSource(address);
  session.send(hello("in", fields));
  await session.next("welcome");
  return session;
}

const openStream = (stream: string) => ({ kind: { case: "open" as const, value: { stream } } });
const batchAt = (stream: string, position: bigint) => ({
  kind: { case: "batch" as const, value: { stream, records: [{ position, value: Buffer.from("hijack") }] } },
});

/**
 * Another connector's attempt on `stream`: OpenStream and, without waiting for an answer, a record
 * at the largest position, which would make the owner's every record a replay if it were taken.
 */
async function hijack(address: string, stream: string): Promise<string> {
  const intruder = await welcomedSource(address, { connectorName: "intruder", instanceId: "intruder-1" });
  intruder.send(openStream(stream));
  intruder.send(batchAt(stream, U64_MAX));
  // An engine that takes the stream answers StreamOpened: fail then rather than wait for an Error.
  const taken = intruder.next("opened").then(() => {
    throw new Error(`the engine let connector "intruder" open stream "${stream}"`);
  });
  return Promise.race([expectFailure(intruder, ErrorCode.STREAM_OWNED, grpc.status.FAILED_PRECONDITION), taken]);
}

/** Values "S<from>".."S<to>" (the upper pipeline's outputs of "s<from>".."s<to>"). */
const upper = (from: number, to: number) => records(from, to, "S").map((r) => r.value);

/** The sink's values of stream "s" (the neighbour's are "H..."), in arrival order. */
const ofS = (sink: TestSink) => sink.values().filter((v) => v.startsWith("S"));

describe("a stream belongs to the connector that created it", () => {
  it("another connector_name gets STREAM_OWNED (FAILED_PRECONDITION) while the owner is live and after it left; an instance of the owner resumes; the output is exact", async () => {
    const { address, neighbour } = await setUp();
    const owner = await TestSource.connect(address, "in", { connectorName: "file-source", instanceId: "a" });
    await owner.open("s");
    await owner.send("s", records(1, 3, "s"));
    await owner.untilCommitted("s", 3);

    // While the owner's session is live: STREAM_OWNED, not STREAM_BUSY.
    expect(await hijack(address, "s")).toMatch(/belongs to connector "file-source", not "intruder"/);
    await owner.send("s", records(4, 5, "s"));
    await owner.untilCommitted("s", 5);

    // The owner's session ends: the stream is still the owner's, and the record at 2^64-1 never lands.
    owner.session.end();
    await owner.session.status;
    await hijack(address, "s");

    // Another instance of the same connector takes the stream over where it stood.
    const heir = await TestSource.connect(address, "in", { connectorName: "file-source", instanceId: "b" });
    expect(await heir.open("s")).toMatchObject({ resumeAfter: 5n, committed: 5n });
    await heir.send("s", records(6, 8, "s"));
    await heir.untilCommitted("s", 8);
    await neighbour.sink.session.until("S1..S8", () => ofS(neighbour.sink).length >= 8);
    expect(ofS(neighbour.sink)).toEqual(upper(1, 8));
    await neighbour.flows();
  });

  it("an ENDED stream is released: another instance opens it while the session that ended it is still live", async () => {
    const { address, neighbour } = await setUp();
    const first = await TestSource.connect(address, "in", { connectorName: "file-source", instanceId: "a" });
    await first.open("s");
    await first.send("s", records(1, 2, "s"));
    first.end("s");
    await first.session.next("ended");
    const second = await TestSource.connect(address, "in", { connectorName: "file-source", instanceId: "b" });
    expect(await second.open("s")).toMatchObject({ resumeAfter: 2n, committed: 2n });
    await hijack(address, "s");
    await neighbour.flows();
  });

  it("the owner survives a restart from --data-dir: the restored stream refuses another connector", async () => {
    const dataDir = scratchDir("stream-owner");
    harness = await startHarness({ dataDir, checkpointIntervalMs: 50 });
    let sink = await TestSink.connect(harness.address);
    const owner = await TestSource.connect(harness.address, "in", instance({ connectorName: "file-source" }));
    await owner.open("s");
    await owner.send("s", records(1, 4, "s"));
    await owner.untilCommitted("s", 4);
    await sink.untilValues(4);
    await harness.stop();
    closeClients();

    harness = await startHarness({ dataDir, checkpointIntervalMs: 50 });
    sink = await TestSink.connect(harness.address);
    await hijack(harness.address, "s");
    const again = await TestSource.connect(harness.address, "in", instance({ connectorName: "file-source" }));
    expect(await again.open("s")).toMatchObject({ resumeAfter: 4n, committed: 4n });
    await again.send("s", records(5, 6, "s"));
    await sink.untilValues(2);
    expect(sink.values()).toEqual(upper(5, 6));
  });
});

describe("the stream table is bounded", () => {
  it("a stream name over max_stream_name_bytes (UTF-8 bytes): PROTOCOL_VIOLATION, FAILED_PRECONDITION; one at the limit opens", async () => {
    const { address, neighbour } = await setUp();
    const session = await welcomedSource(address);
    const limit = (await TestSource.connect(address, "in", instance())).welcome.limits!.maxStreamNameBytes;
    expect(limit).toBe(1024);
    // 512 two-byte characters: 512 characters, 1024 bytes.
    session.send(openStream("é".repeat(limit / 2)));
    await session.next("opened");
    // 513 of them: 1026 bytes.
    session.send(openStream("é".repeat(limit / 2 + 1)));
    const message = await expectFailure(session, ErrorCode.PROTOCOL_VIOLATION, grpc.status.FAILED_PRECONDITION);
    expect(message).toContain("1026 bytes");
    await neighbour.flows();
  });

  it("a 15 MiB stream name is refused before it enters the table, and its session ends alone", async () => {
    const { address, neighbour } = await setUp();
    const session = await welcomedSource(address);
    session.send(openStream("n".repeat(15 * 1024 * 1024)));
    const message = await expectFailure(session, ErrorCode.PROTOCOL_VIOLATION, grpc.status.FAILED_PRECONDITION);
    // The name is not echoed back.
    expect(message.length).toBeLessThan(200);
    // Nor by the errors about a stream not open, whose names were never checked.
    const batchFor = await welcomedSource(address);
    batchFor.send(batchAt("n".repeat(15 * 1024 * 1024), 1n));
    expect((await expectFailure(batchFor, ErrorCode.PROTOCOL_VIOLATION, grpc.status.FAILED_PRECONDITION)).length).toBeLessThan(400);
    await neighbour.flows();
  });

  it("more streams on one session than max_streams_per_session: TOO_MANY_STREAMS, RESOURCE_EXHAUSTED", async () => {
    const { address, neighbour } = await setUp({ limits: { maxStreamsPerSession: 5 } });
    const session = await welcomedSource(address);
    for (let i = 0; i < 5; i++) {
      session.send(openStream(`flood-${i}`));
      await session.next("opened");
    }
    session.send(openStream("flood-5"));
    const message = await expectFailure(session, ErrorCode.TOO_MANY_STREAMS, grpc.status.RESOURCE_EXHAUSTED);
    expect(message).toContain("max_streams_per_session");
    await neighbour.flows();
  });

  it("more streams on a source than max_streams_per_source: TOO_MANY_STREAMS, RESOURCE_EXHAUSTED, for new names only", async () => {
    // The neighbour's stream is one of the 6.
    const { address, neighbour } = await setUp({ limits: { maxStreamsPerSource: 6, maxStreamsPerSession: 3 } });
    const floods = [await welcomedSource(address), await welcomedSource(address)];
    for (const [f, flood] of floods.entries()) {
      for (let i = 0; i < (f === 0 ? 3 : 2); i++) {
        flood.send(openStream(`flood-${f}-${i}`));
        await flood.next("opened");
      }
    }
    const third = await welcomedSource(address);
    third.send(openStream("one-too-many"));
    const message = await expectFailure(third, ErrorCode.TOO_MANY_STREAMS, grpc.status.RESOURCE_EXHAUSTED);
    expect(message).toContain("max_streams_per_source");
    await neighbour.flows();

    // A stream the table holds still opens: the neighbour's, on a new session of its connector.
    neighbour.source.session.end();
    await neighbour.source.session.status;
    const back = await TestSource.connect(address, "in", instance());
    expect((await back.open("healthy")).resumeAfter).toBe(6n);

    // Streams on which nothing was accepted hold nothing to resume: they go when their session ends.
    floods[0]!.end();
    await floods[0]!.status;
    const later = await welcomedSource(address);
    later.send(openStream("now-there-is-room"));
    await later.next("opened");
  });
});

describe("streams are retired after --stream-retention-ms", () => {
  it("a committed stream with no session is forgotten after the retention: its slot is free, and it starts afresh (resume_after 0, any connector may own it)", async () => {
    const retention = 300;
    const { address, neighbour } = await setUp({ streamRetentionMs: retention, limits: { maxStreamsPerSource: 2 } });
    const owner = await TestSource.connect(address, "in", instance({ connectorName: "queue-source" }));
    await owner.open("s");
    // Ids stay in the source target's window, which retirement does not touch.
    await owner.send("s", records(1, 3, "s").map((r) => ({ ...r, idempotencyId: `id-${r.position}` })));
    await owner.untilCommitted("s", 3);
    owner.session.end();
    await owner.session.status;

    // The table (the neighbour's stream and "s") is full until "s" is retired.
    const early = await welcomedSource(address);
    early.send(openStream("new"));
    await expectFailure(early, ErrorCode.TOO_MANY_STREAMS, grpc.status.RESOURCE_EXHAUSTED);
    await new Promise((r) => setTimeout(r, retention * 2));
    const late = await TestSource.connect(address, "in", instance({ connectorName: "another-source" }));
    expect(await late.open("new")).toMatchObject({ resumeAfter: 0n, committed: 0n });

    // "s" starts afresh: position 0, no owner; its records are applied again, unless their ids are
    // still in the window.
    late.session.end();
    await late.session.status;
    const fresh = await TestSource.connect(address, "in", instance({ connectorName: "another-source" }));
    expect(await fresh.open("s")).toMatchObject({ resumeAfter: 0n, committed: 0n });
    await fresh.send("s", [
      { position: 1, value: "s1", idempotencyId: "id-1" },
      { position: 2, value: "s2" },
    ]);
    await fresh.untilCommitted("s", 2);
    await neighbour.sink.session.until("S2 again", () => ofS(neighbour.sink).length >= 4);
    expect(ofS(neighbour.sink)).toEqual([...upper(1, 3), "S2"]);

    // A stream with a live session is never retired, however long it waits.
    await neighbour.flows();
  });

  it("with --data-dir, a retired stream is gone from the next checkpoint, and stays gone after a restart", async () => {
    const dataDir = scratchDir("stream-retire");
    const options = { dataDir, checkpointIntervalMs: 50, streamRetentionMs: 200 };
    harness = await startHarness(options);
    let sink = await TestSink.connect(harness.address);
    const kept = await TestSource.connect(harness.address, "in", instance());
    await kept.open("kept");
    await kept.send("kept", records(1, 2, "k"));
    await kept.untilCommitted("kept", 2);
    const gone = await TestSource.connect(harness.address, "in", instance());
    await gone.open("s");
    await gone.send("s", records(1, 3, "s"));
    await gone.untilCommitted("s", 3);
    gone.session.end();
    await gone.session.status;
    // Retired once the retention has run out and a checkpoint without it is durable.
    await new Promise((r) => setTimeout(r, 600));
    const after = await TestSource.connect(harness.address, "in", instance());
    expect(await after.open("s")).toMatchObject({ resumeAfter: 0n, committed: 0n });
    after.session.cancel();
    await sink.untilValues(5);
    await harness.stop();
    closeClients();

    // A long retention now: the restored streams must not go while the test looks at them.
    harness = await startHarness({ ...options, streamRetentionMs: 60_000 });
    sink = await TestSink.connect(harness.address);
    const restored = await TestSource.connect(harness.address, "in", instance());
    expect(await restored.open("s")).toMatchObject({ resumeAfter: 0n, committed: 0n });
    // The stream whose session stayed live until the stop is restored where it stood.
    expect(await restored.open("kept")).toMatchObject({ resumeAfter: 2n, committed: 2n });
  });
});
