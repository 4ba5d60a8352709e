/** The source client against a scripted engine on a real gRPC socket. */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ErrorCode, type RecordBatch } from "../../src/protocol/gen/keyway/v1/connector_pb.ts";
import { connectSource, ConnectorError, GrpcStatus, type SourceClient, type SourceOptions } from "../../src/sdk/index.ts";
import { startFakeEngine, type FakeEngine, type FakeSession } from "./fake-engine.ts";

let engine: FakeEngine;
const clients: SourceClient[] = [];

beforeEach(async () => {
  engine = await startFakeEngine();
});

afterEach(async () => {
  for (const client of clients.splice(0)) await client.close({ drainTimeoutMs: 1 }).catch(() => {});
  await engine.close();
});

function options(overrides: Partial<SourceOptions> = {}): SourceOptions {
  return { engine: engine.address, target: "lines", connectorName: "test-source", instanceId: "t-1", ...overrides };
}

/** Connects a client and completes the handshake with the given initial credits. */
async function connected(credits: number, overrides: Partial<SourceOptions> = {}): Promise<{ client: SourceClient; session: FakeSession<"Source"> }> {
  const connecting = connectSource(options(overrides));
  const session = await engine.nextSession("Source");
  session.welcome(credits);
  const client = await connecting;
  clients.push(client);
  return { client, session };
}

/** Answers the next OpenStream with the given resume point. */
async function answerOpen(session: FakeSession<"Source">, resumeAfter = 0n, committed = 0n): Promise<string> {
  const { stream } = await session.nextOf("open");
  session.send({ case: "opened", value: { stream, resumeAfter, committed } as never });
  return stream;
}

/** Collects the session's record batches until `count` records arrived. */
async function receiveRecords(session: FakeSession<"Source">, count: number): Promise<RecordBatch[]> {
  const batches: RecordBatch[] = [];
  let received = 0;
  while (received < count) {
    const batch = await session.nextOf("batch");
    batches.push(batch);
    received += batch.records.length;
  }
  return batches;
}

const text = (bytes: Uint8Array): string => Buffer.from(bytes).toString("utf8");

describe("source client", () => {
  it("says Hello with version 1.0, its identity, target and token", async () => {
    const { session } = await connected(10, { token: "s3cret" });
    expect(session.hello.version).toMatchObject({ major: 1, minor: 0 });
    expect(session.hello).toMatchObject({ connectorName: "test-source", instanceId: "t-1", target: "lines", token: "s3cret" });
  });

  it("never has more records in flight than the engine granted", async () => {
    const { client, session } = await connected(250);
    let granted = 250;
    let received = 0;
    const opening = answerOpen(session);
    const sends = Array.from({ length: 1000 }, (_, i) => client.send("s", `r${i}`));
    await opening;
    await Promise.all(sends);
    while (received < 1000) {
      const batch = await session.nextOf("batch");
      received += batch.records.length;
      expect(received).toBeLessThanOrEqual(granted);
      if (received === granted) {
        // Grant in odd amounts so batches must be cut to the balance.
        granted += 77;
        session.send({ case: "credits", value: { records: 77 } as never });
      }
    }
    expect(received).toBe(1000);
  });

  it("batches records, up to batchRecords a message, and sends a partial batch after the linger time", async () => {
    const { client, session } = await connected(10_000, { batchRecords: 100 });
    await Promise.all([answerOpen(session), ...Array.from({ length: 1000 }, (_, i) => client.send("s", `r${i}`))]);
    const batches = await receiveRecords(session, 1000);
    expect(batches.every((b) => b.records.length <= 100)).toBe(true);
    expect(batches.length).toBe(10);
    await client.send("s", "alone");
    const [lone] = await receiveRecords(session, 1);
    expect(lone!.records.map((r) => text(r.value))).toEqual(["alone"]);
  });

  it("numbers records from resume_after + 1 and keeps values, keys, headers, ids and event times", async () => {
    const { client, session } = await connected(100);
    const opened = client.open("orders");
    await answerOpen(session, 41n, 40n);
    expect(await opened).toEqual({ resumeAfter: 41n, committed: 40n });
    const first = await client.send("orders", "a", { idempotencyId: "m-1", key: "k", headers: { h: "v" }, eventTimeMs: 1234 });
    const second = await client.send("orders", new Uint8Array([1, 2]));
    expect([first, second]).toEqual([42n, 43n]);
    const [batch] = await receiveRecords(session, 2);
    expect(batch!.stream).toBe("orders");
    const [a, b] = batch!.records;
    expect(a).toMatchObject({ position: 42n, idempotencyId: "m-1", headers: { h: "v" }, eventTimeMs: 1234n });
    expect(text(a!.value)).toBe("a");
    expect(text(a!.key!)).toBe("k");
    expect(b!.position).toBe(43n);
    expect([...b!.value]).toEqual([1, 2]);
  });

  it("drops caller positions at or below resume_after unsent, and refuses positions that go back", async () => {
    const { client, session } = await connected(100);
    await Promise.all([answerOpen(session, 20n), client.open("file")]);
    await client.send("file", "old", { position: 15n });
    await client.send("file", "new", { position: 25n });
    await expect(client.send("file", "back", { position: 24n })).rejects.toThrow(/does not increase/);
    const [batch] = await receiveRecords(session, 1);
    expect(batch!.records.map((r) => [r.position, text(r.value)])).toEqual([[25n, "new"]]);
    expect(client.bufferedRecords()).toBe(1);
  });

  it("calls onCommitted only once the engine commits, and forgets committed records", async () => {
    const { client, session } = await connected(100);
    const commits: Array<[string, bigint]> = [];
    client.onCommitted((stream, position) => commits.push([stream, position]));
    await Promise.all([answerOpen(session), ...[1, 2, 3].map((i) => client.send("s", `r${i}`))]);
    await receiveRecords(session, 3);
    expect(commits).toEqual([]);
    expect(client.bufferedRecords()).toBe(3);
    session.send({ case: "committed", value: { stream: "s", position: 2n } as never });
    await waitUntil(() => commits.length === 1);
    expect(commits).toEqual([["s", 2n]]);
    expect(client.bufferedRecords()).toBe(1);
  });

  it("replays uncommitted records with their original positions after a forced disconnect", async () => {
    const { client, session } = await connected(100);
    await Promise.all([answerOpen(session), ...Array.from({ length: 10 }, (_, i) => client.send("s", `r${i + 1}`))]);
    await receiveRecords(session, 10);
    session.send({ case: "committed", value: { stream: "s", position: 4n } as never });
    await waitUntil(() => client.bufferedRecords() === 6);
    session.drop();

    const second = await engine.nextSession("Source");
    expect(second.hello.instanceId).toBe("t-1");
    second.welcome(100);
    // The engine had applied up to 6 (committed 4): only 7..10 need to go again.
    await answerOpen(second, 6n, 4n);
    const resent = (await receiveRecords(second, 4)).flatMap((b) => b.records);
    expect(resent.map((r) => [r.position, text(r.value)])).toEqual([
      [7n, "r7"],
      [8n, "r8"],
      [9n, "r9"],
      [10n, "r10"],
    ]);
    // New records continue after the highest position, on the new session.
    expect(await client.send("s", "r11")).toBe(11n);
    second.send({ case: "committed", value: { stream: "s", position: 11n } as never });
    await waitUntil(() => client.bufferedRecords() === 0);
  });

  it("waits for room in a full replay buffer, and stops pulling until a commit frees it", async () => {
    const { client, session } = await connected(100, { replayBufferRecordsMax: 5 });
    await Promise.all([answerOpen(session), client.open("s")]);
    for (let i = 1; i <= 5; i++) await client.send("s", `r${i}`);
    let sixthAccepted = false;
    const sixth = client.send("s", "r6").then(() => (sixthAccepted = true));
    await receiveRecords(session, 5);
    expect(sixthAccepted).toBe(false);
    session.send({ case: "committed", value: { stream: "s", position: 1n } as never });
    await sixth;
    expect(sixthAccepted).toBe(true);
  });

  it("ends a stream with EndStream after its last record and resolves on StreamEnded", async () => {
    const { client, session } = await connected(100);
    await Promise.all([answerOpen(session), client.send("s", "a"), client.send("s", "b")]);
    let endedAt: bigint | undefined;
    const ending = client.end("s").then((p) => (endedAt = p));
    await receiveRecords(session, 2);
    expect((await session.nextOf("end")).stream).toBe("s");
    expect(endedAt).toBeUndefined();
    session.send({ case: "ended", value: { stream: "s", position: 2n } as never });
    await ending;
    expect(endedAt).toBe(2n);
    expect(client.bufferedRecords()).toBe(0);
  });

  it("fails with a typed error and does not reconnect on UNKNOWN_TARGET", async () => {
    const connecting = connectSource(options());
    const session = await engine.nextSession("Source");
    session.fail(ErrorCode.UNKNOWN_TARGET, 'no source "lines" is bound to connector');
    const err = await connecting.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectorError);
    expect(err).toMatchObject({ code: ErrorCode.UNKNOWN_TARGET, grpcStatus: GrpcStatus.NOT_FOUND, isConfigurationError: true });
    expect((err as Error).message).toMatch(/UNKNOWN_TARGET.*no source "lines"/);
    // The loop has exited before the rejection, so no session can follow.
    expect(engine.sessions.length).toBe(1);
  });

  it("reconnects with backoff, not in a tight loop, while the engine keeps failing sessions", async () => {
    engine.onSession = (session) => session.fail(ErrorCode.SHUTTING_DOWN);
    const connecting = connectSource(options());
    connecting.catch(() => {});
    const windowMs = 2_000;
    await new Promise((resolve) => setTimeout(resolve, windowMs));
    const attempts = engine.sessions.length;
    // Full jitter from 100 ms doubling: about 6 attempts expected in 2 s. A tight loop makes thousands.
    expect(attempts).toBeGreaterThanOrEqual(2);
    expect(attempts).toBeLessThan(40);
    engine.onSession = (session) => session.welcome(10);
    clients.push(await connecting);
  });

  it("follows a Redirect to another engine at once, with a fresh Hello", async () => {
    const other = await startFakeEngine();
    try {
      const connecting = connectSource(options({ backoff: { initialMs: 60_000, maxMs: 60_000 } }));
      const first = await engine.nextSession("Source");
      first.send({ case: "redirect", value: { address: other.address, reason: "moved" } as never });
      first.endWithStatus(GrpcStatus.UNAVAILABLE, "redirected");
      const moved = await other.nextSession("Source");
      expect(moved.hello.target).toBe("lines");
      moved.welcome(10);
      clients.push(await connecting);
    } finally {
      await other.close();
    }
  });

  it("half-closes after close() once everything sent is committed", async () => {
    const { client, session } = await connected(100);
    await Promise.all([answerOpen(session), client.send("s", "a")]);
    await receiveRecords(session, 1);
    const closing = client.close();
    session.send({ case: "committed", value: { stream: "s", position: 1n } as never });
    await closing;
    await session.ended;
  });
});

async function waitUntil(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 5));
}
