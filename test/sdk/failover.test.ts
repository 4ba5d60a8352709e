/**
 * Failover across a cluster's workers (protocol §13.4, R-FAILOVER): the addresses a connector
 * learns from each Welcome, and the round-robin over them when its worker is unreachable, against
 * scripted engines on real sockets and against real connector servers.
 */
import { afterEach, describe, expect, it } from "vitest";
import { ErrorCode } from "../../src/protocol/gen/keyway/v1/connector_pb.ts";
import type { SessionPlacement } from "../../src/protocol/index.ts";
import { knownAddresses, learnAddresses, nextAddress, parseEngineAddresses } from "../../src/sdk/addresses.ts";
import { connectSource, runSink, type SourceClient, type SourceOptions } from "../../src/sdk/index.ts";
import { freePort } from "../helpers/process.ts";
import { startHarness, type Harness } from "../protocol/helpers/harness.ts";
import { startFakeEngine, type FakeEngine, type Role } from "./fake-engine.ts";

const engines: FakeEngine[] = [];
const harnesses: Harness[] = [];
const clients: SourceClient[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) await client.close({ drainTimeoutMs: 1 }).catch(() => {});
  for (const engine of engines.splice(0)) await engine.close();
  for (const harness of harnesses.splice(0)) await harness.stop();
});

async function fakeEngines(count: number): Promise<FakeEngine[]> {
  const started = await Promise.all(Array.from({ length: count }, () => startFakeEngine()));
  engines.push(...started);
  return started;
}

/** A session is healthy after 50 ms, so a test need not wait the default 5 s for a failover to count as the first. */
function options(engine: string, overrides: Partial<SourceOptions> = {}): SourceOptions {
  return { engine, target: "lines", connectorName: "test-source", instanceId: "t-1", backoff: { resetAfterMs: 50 }, ...overrides };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Every session of a role, at any of the engines, tagged with the engine's index, in arrival order. */
function arrivals(all: FakeEngine[], role: Role, seen: Array<{ at: number; ms: number }>): void {
  all.forEach((engine, at) => {
    engine.onSession = (session) => {
      if (session.role === role) seen.push({ at, ms: Date.now() });
    };
  });
}

describe("engine addresses", () => {
  it("takes one address or several separated by commas, and refuses anything else", () => {
    expect(parseEngineAddresses("127.0.0.1:7700")).toEqual(["127.0.0.1:7700"]);
    expect(parseEngineAddresses("w1:7700, w2:7700,w3:7701")).toEqual(["w1:7700", "w2:7700", "w3:7701"]);
    for (const bad of ["", ",", "nowhere", "w1:7700,nowhere"]) expect(() => parseEngineAddresses(bad), bad).toThrow(RangeError);
  });

  it("learns the latest list, keeping the last one when a Welcome lists nothing dialable", () => {
    expect(learnAddresses([], ["a:1", "b:2"])).toEqual(["a:1", "b:2"]);
    expect(learnAddresses(["a:1", "b:2"], ["c:3"])).toEqual(["c:3"]);
    expect(learnAddresses(["a:1"], [])).toEqual(["a:1"]);
    expect(learnAddresses(["a:1"], ["", "garbage"])).toEqual(["a:1"]);
  });

  it("goes round the configured addresses, then the learned ones, each once", () => {
    const known = knownAddresses(["a:1", "b:2"], ["b:2", "c:3", "a:1"]);
    expect(known).toEqual(["a:1", "b:2", "c:3"]);
    expect(["a:1", "b:2", "c:3"].map((a) => nextAddress(known, a))).toEqual(["b:2", "c:3", "a:1"]);
    // A redirect's address that the list does not hold: start again from the first.
    expect(nextAddress(known, "z:9")).toBe("a:1");
  });

  it("a connector refuses a malformed engine list before dialling", async () => {
    await expect(connectSource(options("w1:7700,nowhere"))).rejects.toThrow(/HOST:PORT, or several separated by commas/);
  });
});

describe("failover", () => {
  it("dials the next address the Welcome listed, at once, when its worker dies", async () => {
    const [a, b] = await fakeEngines(2);
    const connecting = connectSource(options(a!.address));
    const first = await a!.nextSession("Source");
    first.welcome(10, undefined, [a!.address, b!.address]);
    clients.push(await connecting);
    await sleep(100);
    const diedAt = Date.now();
    await a!.close();
    const moved = await b!.nextSession("Source");
    // The first failover after a healthy session waits at most the first backoff delay (100 ms).
    expect(Date.now() - diedAt).toBeLessThan(1_000);
    expect(moved.hello).toMatchObject({ connectorName: "test-source", instanceId: "t-1", target: "lines" });
  });

  it("tries every known worker in turn, the configured ones first, skipping none", async () => {
    const [a, b, c] = await fakeEngines(3);
    const seen: Array<{ at: number; ms: number }> = [];
    arrivals([a!, b!, c!], "Source", seen);
    const dead = `127.0.0.1:${await freePort()}`;
    // Configured: a dead address, then a; the Welcome adds b and c.
    const connecting = connectSource(options(`${dead},${a!.address}`));
    const first = await a!.nextSession("Source");
    first.welcome(10, undefined, [a!.address, b!.address, c!.address]);
    clients.push(await connecting);
    await sleep(100);
    // a drops the session without an Error; b is shutting down; c takes it.
    b!.onSession = (session) => {
      seen.push({ at: 1, ms: Date.now() });
      session.fail(ErrorCode.SHUTTING_DOWN);
    };
    first.drop();
    const atC = await c!.nextSession("Source");
    atC.welcome(10);
    expect(seen.map((s) => s.at)).toEqual([0, 1, 2]);
    // c's Welcome listed nothing: the connector still knows b and a, and the dead address.
    atC.drop();
    await waitUntil(() => seen.length >= 4);
    expect(seen[3]!.at).toBe(0);
  });

  it("stays with a live worker that answers with an Error other than SHUTTING_DOWN", async () => {
    const [a, b] = await fakeEngines(2);
    const connecting = connectSource(options(a!.address));
    const first = await a!.nextSession("Source");
    first.welcome(10, undefined, [a!.address, b!.address]);
    clients.push(await connecting);
    first.fail(ErrorCode.STREAM_BUSY);
    const again = await a!.nextSession("Source");
    again.welcome(10, undefined, [a!.address, b!.address]);
    expect(b!.sessions.length).toBe(0);
  });

  it("backs off between rounds when every worker is down", async () => {
    const [a, b] = await fakeEngines(2);
    const counts = [0, 0];
    const connecting = connectSource(options(a!.address));
    const first = await a!.nextSession("Source");
    first.welcome(10, undefined, [a!.address, b!.address]);
    const client = await connecting;
    clients.push(client);
    a!.onSession = (session) => {
      counts[0]!++;
      session.fail(ErrorCode.SHUTTING_DOWN);
    };
    b!.onSession = (session) => {
      counts[1]!++;
      session.fail(ErrorCode.SHUTTING_DOWN);
    };
    first.fail(ErrorCode.SHUTTING_DOWN);
    await sleep(2_000);
    // Full jitter from 100 ms doubling to 5 s: about 6 attempts in 2 s, shared by both workers.
    expect(counts[0]! + counts[1]!).toBeGreaterThanOrEqual(2);
    expect(counts[0]! + counts[1]!).toBeLessThan(40);
    expect(Math.abs(counts[0]! - counts[1]!)).toBeLessThanOrEqual(1);
  });
});

/** Two real workers' connector servers, each with its own engine, each listing both addresses. */
async function twoWorkers(): Promise<[Harness, Harness]> {
  const addresses: string[] = [];
  const placement: SessionPlacement = { addresses: () => addresses, redirectFor: () => undefined };
  const started = [await startHarness({ placement }), await startHarness({ placement })] as [Harness, Harness];
  addresses.push(started[0].address, started[1].address);
  harnesses.push(...started);
  return started;
}

describe("failover between real workers", () => {
  it("a source whose worker shuts down goes on at the other one, reopening its stream and replaying what was not committed", async () => {
    const [w1, w2] = await twoWorkers();
    const client = await connectSource(options(w1.address, { target: "in" }));
    clients.push(client);
    const committed: bigint[] = [];
    client.onCommitted((_stream, position) => committed.push(position));
    await client.send("s", "before");
    await waitUntil(() => committed.includes(1n));
    await w1.server.close();
    await client.send("s", "after");
    await waitUntil(() => committed.includes(2n));
    expect(w2.server.sessionCounts().source).toBe(1);
  });

  it("a sink whose worker shuts down goes on at the other one", async () => {
    const [w1, w2] = await twoWorkers();
    const stop = new AbortController();
    const written: string[] = [];
    const running = runSink({ engine: w1.address, target: "out", connectorName: "test-sink", signal: stop.signal, backoff: { resetAfterMs: 50 } }, async (batch) => {
      written.push(...batch.records.map((r) => Buffer.from(r.value).toString("utf8")));
    });
    try {
      await waitUntil(() => w1.server.sessionCounts().sink === 1);
      await w1.server.close();
      await waitUntil(() => w2.server.sessionCounts().sink === 1);
      const source = await connectSource(options(w2.address, { target: "in" }));
      clients.push(source);
      await source.send("s", "hello");
      await waitUntil(() => written.includes("HELLO"));
    } finally {
      stop.abort();
      await running;
    }
  });
});

async function waitUntil(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await sleep(5);
  }
}
