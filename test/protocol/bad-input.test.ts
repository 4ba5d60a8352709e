/**
 * Every kind of bad input ends the offending session with its typed Error and the mapped gRPC
 * status, while a healthy source and sink on the same server keep flowing.
 */
import * as grpc from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import { ErrorCode } from "../../src/protocol/gen/keyway/v1/connector_pb.ts";
import type { Logger } from "../../src/log/logger.ts";
import { records, TestPartitioner, TestSink, TestSource } from "./helpers/connectors.ts";
import { startHarness, type Harness, type HarnessOptions } from "./helpers/harness.ts";
import { healthyNeighbour, type Neighbour } from "./helpers/neighbour.ts";
import {
  closeClients,
  failure,
  hello,
  openPartition,
  openSink,
  openSource,
  type Ended,
  type HelloFields,
  type PartitionSession,
  type SinkSession,
  type SourceSession,
} from "./helpers/raw-session.ts";

let harness: Harness | undefined;
afterEach(async () => {
  closeClients();
  await harness?.stop();
  harness = undefined;
});

async function setUp(options: HarnessOptions = {}, fields: HelloFields = {}): Promise<{ address: string; neighbour: Neighbour }> {
  harness = await startHarness(options);
  return { address: harness.address, neighbour: await healthyNeighbour(harness.address, fields) };
}

async function expectFailure(session: Ended, code: ErrorCode, status: grpc.status): Promise<string> {
  const { error, status: final } = await failure(session);
  expect(ErrorCode[error.code]).toBe(ErrorCode[code]);
  expect(grpc.status[final.code]).toBe(grpc.status[status]);
  return error.message;
}

/** A source session past its Welcome. */
async function welcomedSource(address: string, target = "in") {
  const session = openSource(address);
  session.send(hello(target));
  await session.next("welcome");
  return session;
}

const batch = (stream: string, positions: number[], valueBytes = 2) => ({
  kind: {
    case: "batch" as const,
    value: { stream, records: positions.map((position) => ({ position: BigInt(position), value: Buffer.alloc(valueBytes, 120) })) },
  },
});
const openStream = (stream: string) => ({ kind: { case: "open" as const, value: { stream } } });
const credits = (records: number) => ({ kind: { case: "credits" as const, value: { records } } });

type Role = "source" | "sink" | "partitioner";

/** A raw session of the role that has sent one message: the source's or the others'. */
function sessionOf(role: Role, address: string, first: { source: Parameters<SourceSession["send"]>[0]; others: Parameters<SinkSession["send"]>[0] & Parameters<PartitionSession["send"]>[0] }): Ended {
  if (role === "source") {
    const session = openSource(address);
    session.send(first.source);
    return session;
  }
  const session = role === "sink" ? openSink(address) : openPartition(address);
  session.send(first.others);
  return session;
}

describe("bad input ends only the offending session", () => {
  it("bytes that do not parse: MALFORMED, INVALID_ARGUMENT", async () => {
    const { address, neighbour } = await setUp();
    const session = await welcomedSource(address);
    // Field 3 (a RecordBatch) announces 5 bytes and carries 1.
    session.send(Buffer.from([0x1a, 0x05, 0x01]));
    await expectFailure(session, ErrorCode.MALFORMED, grpc.status.INVALID_ARGUMENT);
    await neighbour.flows();
  });

  it("a message over max_message_bytes: BATCH_TOO_LARGE, RESOURCE_EXHAUSTED", async () => {
    const { address, neighbour } = await setUp({ limits: { maxMessageBytes: 4096 } });
    const session = await welcomedSource(address);
    session.send(openStream("s"));
    await session.next("opened");
    session.send(batch("s", [1], 5000));
    await expectFailure(session, ErrorCode.BATCH_TOO_LARGE, grpc.status.RESOURCE_EXHAUSTED);
    await neighbour.flows();
  });

  it("a batch over max_batch_records: BATCH_TOO_LARGE, RESOURCE_EXHAUSTED", async () => {
    const { address, neighbour } = await setUp({ limits: { maxBatchRecords: 4 } });
    const session = await welcomedSource(address);
    session.send(openStream("s"));
    await session.next("opened");
    session.send(batch("s", [1, 2, 3, 4, 5]));
    await expectFailure(session, ErrorCode.BATCH_TOO_LARGE, grpc.status.RESOURCE_EXHAUSTED);
    await neighbour.flows();
  });

  it.each([
    ["source", "nope"],
    ["sink", "in"],
    ["partitioner", "nope"],
  ] as const)("an unknown target (a %s session for %s): UNKNOWN_TARGET, NOT_FOUND", async (role, target) => {
    const { address, neighbour } = await setUp();
    const session = sessionOf(role, address, { source: hello(target), others: hello(target) });
    const message = await expectFailure(session, ErrorCode.UNKNOWN_TARGET, grpc.status.NOT_FOUND);
    expect(message).toContain(`"${target}"`);
    await neighbour.flows();
  });

  it("an unknown target of 40,000 characters: UNKNOWN_TARGET with the whole name, status details cut short, and the connection stays usable", async () => {
    // Found by the fuzzer (seed 2121042623, case 693): the name echoed in the status details made
    // an HTTP/2 trailer beyond the client's limit, the call never ended and the neighbour stalled.
    const target = "{|".repeat(20_000);
    const warnings: unknown[] = [];
    const log: Logger = { debug() {}, info() {}, error() {}, warn: (obj) => warnings.push(obj), child: () => log };
    const { address, neighbour } = await setUp({ log });
    const session = openSource(address);
    session.send(hello(target));
    const { error, status } = await failure(session);
    expect(ErrorCode[error.code]).toBe("UNKNOWN_TARGET");
    expect(grpc.status[status.code]).toBe("NOT_FOUND");
    expect(error.message).toContain(`"${target}"`);
    expect(status.details.length).toBeLessThanOrEqual(1024);
    expect(status.details).toContain("(40");
    // The engine's log line is bounded the same way.
    expect(warnings).toContainEqual({ code: "UNKNOWN_TARGET", reason: expect.stringMatching(/^.{1,1024}$/s) });
    await neighbour.flows();
  });

  it.each([
    ["major 2", { major: 2, minor: 0 }],
    ["no version", null],
  ] as const)("an unsupported version (%s): UNSUPPORTED_VERSION, FAILED_PRECONDITION", async (_name, version) => {
    const { address, neighbour } = await setUp();
    const session = openSource(address);
    session.send(hello("in", { version }));
    await expectFailure(session, ErrorCode.UNSUPPORTED_VERSION, grpc.status.FAILED_PRECONDITION);
    await neighbour.flows();
  });

  it.each([
    ["a wrong token", "guess"],
    ["no token", ""],
  ])("%s: UNAUTHENTICATED, UNAUTHENTICATED", async (_name, token) => {
    const { address, neighbour } = await setUp({ token: "s3cret" }, { token: "s3cret" });
    const session = openSource(address);
    session.send(hello("in", { token }));
    await expectFailure(session, ErrorCode.UNAUTHENTICATED, grpc.status.UNAUTHENTICATED);
    await neighbour.flows();
  });

  it("checks the version before the token, and the token before the target", async () => {
    const { address } = await setUp({ token: "s3cret" }, { token: "s3cret" });
    const stale = openSource(address);
    stale.send(hello("nope", { version: { major: 2, minor: 0 }, token: "guess" }));
    await expectFailure(stale, ErrorCode.UNSUPPORTED_VERSION, grpc.status.FAILED_PRECONDITION);
    const unauthenticated = openSource(address);
    unauthenticated.send(hello("nope", { token: "guess" }));
    const message = await expectFailure(unauthenticated, ErrorCode.UNAUTHENTICATED, grpc.status.UNAUTHENTICATED);
    // A wrong token learns no names.
    expect(message).not.toContain("in");
  });

  it("records for a stream that is not open: PROTOCOL_VIOLATION, FAILED_PRECONDITION", async () => {
    const { address, neighbour } = await setUp();
    const session = await welcomedSource(address);
    session.send(batch("s", [1]));
    await expectFailure(session, ErrorCode.PROTOCOL_VIOLATION, grpc.status.FAILED_PRECONDITION);
    await neighbour.flows();
  });

  it("opening a stream open on another session: STREAM_BUSY, ALREADY_EXISTS", async () => {
    const { address, neighbour } = await setUp();
    const session = await welcomedSource(address);
    session.send(openStream("healthy"));
    await expectFailure(session, ErrorCode.STREAM_BUSY, grpc.status.ALREADY_EXISTS);
    await neighbour.flows();
  });

  it("more records than credits: CREDITS_EXCEEDED, RESOURCE_EXHAUSTED", async () => {
    // maxBatchRecords 4 grants 8 credits. The keyed pipeline has no partitioner yet, so the
    // engine takes one batch (4 records, 4 credits back) and then waits: 16 records overrun.
    const { address, neighbour } = await setUp({ limits: { maxBatchRecords: 4 } });
    const session = await welcomedSource(address, "kin");
    session.send(openStream("k"));
    await session.next("opened");
    for (let b = 0; b < 4; b++) session.send(batch("k", [4 * b + 1, 4 * b + 2, 4 * b + 3, 4 * b + 4]));
    await expectFailure(session, ErrorCode.CREDITS_EXCEEDED, grpc.status.RESOURCE_EXHAUSTED);
    await neighbour.flows();
    // Every record accepted before the error is processed once a partitioner attaches.
    await TestPartitioner.connect(address, { keyOf: (v) => v });
    const kout = await TestSink.connect(address, "kout");
    const next = await TestSource.connect(address, "kin");
    const { resumeAfter } = await next.open("k");
    const last = Number(resumeAfter) + 1;
    await next.send("k", [{ position: last, value: "last" }]);
    await next.untilCommitted("k", last);
    await kout.untilValues(last);
    expect(kout.values()).toHaveLength(last);
  });

  it("a position going back within a session: POSITION_REGRESSED, INVALID_ARGUMENT; records before it are processed", async () => {
    const { address, neighbour } = await setUp();
    const source = await TestSource.connect(address);
    await source.open("s");
    await source.send("s", records(1, 3, "s"));
    source.session.send(batch("s", [2]));
    await expectFailure(source.session, ErrorCode.POSITION_REGRESSED, grpc.status.INVALID_ARGUMENT);
    await neighbour.flows();
    await neighbour.sink.session.until("the regressed session's records", () => ["S1", "S2", "S3"].every((v) => neighbour.sink.values().includes(v)));
  });

  it("a first record at position 0: POSITION_REGRESSED, INVALID_ARGUMENT (positions start at 1)", async () => {
    const { address, neighbour } = await setUp();
    const session = await welcomedSource(address);
    session.send(openStream("s"));
    await session.next("opened");
    session.send(batch("s", [0]));
    await expectFailure(session, ErrorCode.POSITION_REGRESSED, grpc.status.INVALID_ARGUMENT);
    await neighbour.flows();
  });

  it("a sink acking a sequence never sent to it: UNKNOWN_SEQUENCE, INVALID_ARGUMENT", async () => {
    const { address, neighbour } = await setUp();
    const sink = await TestSink.connect(address, "out", { credits: 0, autoAck: false });
    sink.ack(5n);
    await expectFailure(sink.session, ErrorCode.UNKNOWN_SEQUENCE, grpc.status.INVALID_ARGUMENT);
    await neighbour.flows();
  });

  it("a sink acking a batch twice: UNKNOWN_SEQUENCE, INVALID_ARGUMENT", async () => {
    const { address, neighbour } = await setUp();
    // The neighbour's sink takes the neighbour's output; this one gets the "dup" stream's.
    const sink = await TestSink.connect(address, "out", { credits: 1000, autoAck: false });
    const source = await TestSource.connect(address);
    await source.open("dup");
    await source.send("dup", records(1, 2));
    await sink.session.until("a batch", () => sink.batches.length > 0);
    const sequence = sink.batches[0]!.sequence;
    sink.ack(sequence);
    sink.ack(sequence);
    await expectFailure(sink.session, ErrorCode.UNKNOWN_SEQUENCE, grpc.status.INVALID_ARGUMENT);
    await neighbour.flows();
  });

  it("a partitioner answering a request id never sent to it: UNKNOWN_SEQUENCE, INVALID_ARGUMENT", async () => {
    const { address, neighbour } = await setUp();
    const partitioner = await TestPartitioner.connect(address);
    partitioner.session.send({ kind: { case: "keys", value: { requestId: 42n, keys: [] } } });
    await expectFailure(partitioner.session, ErrorCode.UNKNOWN_SEQUENCE, grpc.status.INVALID_ARGUMENT);
    await neighbour.flows();
  });

  it("a partitioner answering with the wrong number of keys: MALFORMED, INVALID_ARGUMENT; its request goes to another", async () => {
    const { address, neighbour } = await setUp();
    const bad = await TestPartitioner.connect(address);
    const kout = await TestSink.connect(address, "kout");
    const source = await TestSource.connect(address, "kin");
    await source.open("k");
    await source.send("k", records(1, 3, "k"));
    const request = await bad.session.next("batch");
    bad.session.send({ kind: { case: "keys", value: { requestId: request.requestId, keys: [{ kind: { case: "text", value: "one" } }] } } });
    await expectFailure(bad.session, ErrorCode.MALFORMED, grpc.status.INVALID_ARGUMENT);
    await TestPartitioner.connect(address, { keyOf: (v) => v });
    await kout.untilValues(3);
    expect(kout.values().sort()).toEqual(["k1=1", "k2=1", "k3=1"]);
    await neighbour.flows();
  });

  it("a second Hello: PROTOCOL_VIOLATION, FAILED_PRECONDITION", async () => {
    const { address, neighbour } = await setUp();
    const session = await welcomedSource(address);
    session.send(hello("in"));
    await expectFailure(session, ErrorCode.PROTOCOL_VIOLATION, grpc.status.FAILED_PRECONDITION);
    await neighbour.flows();
  });

  it.each(["source", "sink", "partitioner"] as const)(
    "a %s session sending anything before Hello: PROTOCOL_VIOLATION, FAILED_PRECONDITION",
    async (role) => {
      const { address, neighbour } = await setUp();
      const session = sessionOf(role, address, { source: openStream("s"), others: credits(10) });
      await expectFailure(session, ErrorCode.PROTOCOL_VIOLATION, grpc.status.FAILED_PRECONDITION);
      await neighbour.flows();
    },
  );
});
