/** The partitioner runner against a scripted engine on a real gRPC socket. */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ErrorCode, type PartitionKeys } from "../../src/protocol/gen/keyway/v1/connector_pb.ts";
import { ConnectorError, runPartitioner, type PartitionerOptions } from "../../src/sdk/index.ts";
import { startFakeEngine, type FakeEngine, type FakeSession } from "./fake-engine.ts";

let engine: FakeEngine;
let stop: AbortController;

beforeEach(async () => {
  engine = await startFakeEngine();
  stop = new AbortController();
});

afterEach(async () => {
  stop.abort();
  await engine.close();
});

function options(overrides: Partial<PartitionerOptions> = {}): PartitionerOptions {
  return { engine: engine.address, target: "by-word", connectorName: "test-partitioner", signal: stop.signal, backoff: { initialMs: 10, maxMs: 20 }, ...overrides };
}

const firstWord = (value: Uint8Array): string => Buffer.from(value).toString("utf8").split(" ")[0]!;

function request(session: FakeSession<"Partition">, requestId: bigint, values: string[]): void {
  session.send({ case: "batch", value: { requestId, values: values.map((v) => Buffer.from(v)) } as never });
}

const keysOf = (answer: PartitionKeys): unknown[] => answer.keys.map((k) => (k.kind.case === "text" ? k.kind.value : [...(k.kind.value as Uint8Array)]));

describe("partitioner runner", () => {
  it("answers each request with one key per value, in order, and grants its credits again", async () => {
    const running = runPartitioner(options({ creditWindowRecords: 50 }), (value) => (value[0] === 0xff ? value.subarray(1) : firstWord(value)));
    const session = await engine.nextSession("Partition");
    session.welcome(0, { maxBatchRecords: 20, maxMessageBytes: 1 << 20, idempotencyWindow: 10 });
    expect((await session.nextOf("credits")).records).toBe(50);
    request(session, 17n, ["ann 3", "bob 5", "ann 1"]);
    const answer = await session.nextOf("keys");
    expect(answer.requestId).toBe(17n);
    expect(keysOf(answer)).toEqual(["ann", "bob", "ann"]);
    expect((await session.nextOf("credits")).records).toBe(3);
    session.send({ case: "batch", value: { requestId: 18n, values: [new Uint8Array([0xff, 1, 2])] } as never });
    expect(keysOf(await session.nextOf("keys"))).toEqual([[1, 2]]);
    stop.abort();
    await running;
    await session.ended;
  });

  it("answers a request re-sent on a new session after the first one was dropped", async () => {
    const running = runPartitioner(options(), firstWord);
    const first = await engine.nextSession("Partition");
    first.welcome();
    await first.nextOf("credits");
    first.drop();
    const second = await engine.nextSession("Partition");
    second.welcome();
    await second.nextOf("credits");
    request(second, 5n, ["cy 2"]);
    expect(keysOf(await second.nextOf("keys"))).toEqual(["cy"]);
    stop.abort();
    await running;
  });

  it("stops with a typed error on UNAUTHENTICATED", async () => {
    const running = runPartitioner(options({ token: "wrong" }), firstWord);
    const session = await engine.nextSession("Partition");
    expect(session.hello.token).toBe("wrong");
    session.fail(ErrorCode.UNAUTHENTICATED, "bad token");
    const err = await running.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectorError);
    expect((err as ConnectorError).codeName).toBe("UNAUTHENTICATED");
    expect(engine.sessions.length).toBe(1);
  });
});
