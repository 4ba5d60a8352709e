/**
 * The RabbitMQ example end to end, against a real broker, a real engine process and real Python
 * connector processes (examples/rabbitmq): exact per-user totals through crashes of the source and
 * of the engine, dead letters with their reasons, and the source's retries when the broker or the
 * engine is down. Every fault test ends in a verdict: the totals are exact or the test fails.
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { freePort, scratchDir, waitFor } from "../helpers/process.ts";
import {
  countOf,
  ensureRabbitMQ,
  Processes,
  readTotals,
  requirePython,
  runPython,
  stopRabbitMQ,
  totalsDiff,
  type Totals,
} from "./helpers.ts";

const SOURCE = "examples/rabbitmq/rabbitmq_source.py";
const SINK = "examples/rabbitmq/totals_sink.py";
const PUBLISH = "examples/rabbitmq/publish.py";
const QUEUES = "examples/rabbitmq/queues.py";
const EXACT_TIMEOUT_MS = 240_000;
/** Each test waits at most EXACT_TIMEOUT_MS for its verdict, plus start-up and draining. */
const TEST_TIMEOUT_MS = 420_000;

let startedBroker = false;
const procs = new Processes();
/** Queues the current test made, deleted after it. */
const queues: string[] = [];

beforeAll(async () => {
  await requirePython();
  startedBroker = await ensureRabbitMQ();
}, 300_000);

afterEach(async () => {
  await procs.killAll();
  if (queues.length > 0) await runPython(QUEUES, ["reset", ...queues.splice(0)]);
});

afterAll(async () => {
  if (startedBroker) await stopRabbitMQ();
}, 120_000);

/** One test's world: its own queues, port, data dir and files. */
async function world(name: string) {
  const id = randomBytes(4).toString("hex");
  const dir = scratchDir(`rabbitmq-${name}`);
  const queue = `payments-${id}`;
  const deadLetters = `payments-${id}.dead-letter`;
  const port = await freePort();
  const engine = `127.0.0.1:${port}`;
  const expectPath = join(dir, "expect.json");
  const totalsPath = join(dir, "totals.json");
  const dataDir = join(dir, "data");
  await runPython(QUEUES, ["reset", queue, deadLetters]);
  queues.push(queue, deadLetters);

  const w = {
    dir,
    queue,
    deadLetters,
    engine,
    totalsPath,
    publish: (args: string[]) => runPython(PUBLISH, ["--queue", queue, "--expect", expectPath, "--users", "100", ...args]),
    expected: () => JSON.parse(readFileSync(expectPath, "utf8")) as Totals,
    startEngine: (extra: string[] = []) =>
      procs.keyway(["run", "examples/rabbitmq/app.ts", "--source", "payments=connector", "--sink", "totals=connector",
        "--listen", engine, "--no-progress", ...extra]),
    startEngineWithDataDir: () => w.startEngine(["--data-dir", dataDir, "--checkpoint-interval-ms", "200"]),
    startSink: () => procs.python(SINK, ["--engine", engine, "--totals", totalsPath, "--dead-letter-queue", deadLetters]),
    startSource: (extra: string[] = []) => procs.python(SOURCE, ["--engine", engine, "--queue", queue, "--stream", "payments", ...extra]),
    /** Waits for the exact expected totals; fails with the first difference. */
    async exact(): Promise<void> {
      const want = w.expected();
      let last: string | undefined;
      await waitFor("exact totals", () => {
        last = totalsDiff(want, readTotals(totalsPath));
        return last === undefined ? true : undefined;
      }, EXACT_TIMEOUT_MS).catch((err) => {
        throw new Error(`${(err as Error).message}; last difference: ${last}`);
      });
    },
    /** Waits until at least n messages are reflected in the totals. */
    progress: (n: number) => waitFor(`${n} messages counted`, () => (countOf(readTotals(totalsPath)) >= n ? true : undefined), EXACT_TIMEOUT_MS),
    /** Waits for the queue to hold no messages, ready or unacknowledged. */
    async drained(): Promise<void> {
      await waitFor(`queue ${queue} empty`, async () => {
        const [ready] = (await runPython(QUEUES, ["depth", queue])).trim().split(" ").map(Number);
        return ready === 0 ? true : undefined;
      }, 60_000);
    },
    async deadLettered(): Promise<Array<{ body: string; message_id: string; headers: Record<string, string> }>> {
      const out = await runPython(QUEUES, ["drain", deadLetters]);
      return out.split("\n").filter(Boolean).map((l) => JSON.parse(l));
    },
  };
  return w;
}

describe("RabbitMQ -> Python source -> engine -> Python sink", () => {
  it("counts 100,000 messages exactly, dead-letters undecodable ones with the reason, and waits for an engine that is not up yet", async () => {
    const w = await world("exact");
    // Undecodable messages in the middle: the stream must go on past them.
    await w.publish(["--count", "50000", "--bad", "4", "--without-id-every", "10"]);
    await w.publish(["--count", "50000", "--start", "50000", "--without-id-every", "10"]);
    expect(countOf(w.expected())).toBe(100_000);

    // The source starts first: the engine is down, so it retries with backoff and says so.
    const source = w.startSource();
    await waitFor("the source to report the engine unreachable", () =>
      /reconnecting to \S+ in [\d.]+ s \(attempt 2\)/.test(source.stderr()) ? true : undefined);
    w.startEngine();
    w.startSink();
    await w.exact();

    const dead: Awaited<ReturnType<typeof w.deadLettered>> = [];
    await waitFor("4 dead letters", async () => {
      dead.push(...(await w.deadLettered()));
      return dead.length >= 4 ? true : undefined;
    });
    expect(dead).toHaveLength(4);
    const reasons = dead.map((d) => d.headers["x-keyway-reason"]).sort();
    expect(reasons[0]).toMatch(/^body is not JSON: /);
    expect(reasons.slice(1)).toEqual([
      "body is not UTF-8",
      'expected a finite number "amount"',
      'expected an object with a non-empty string "user"',
    ]);
    expect(dead.map((d) => d.body)).toContain("{not json");
    for (const d of dead) expect(d.headers["x-keyway-record-id"]).toMatch(/^user-totals:payments@\d+:0\.0$/);
    await w.drained();
  }, TEST_TIMEOUT_MS);

  it("SIGKILL of the Python source mid-stream: RabbitMQ redelivers, ids drop the duplicates, totals stay exact", async () => {
    const w = await world("kill-source");
    await w.publish(["--count", "60000", "--without-id-every", "7"]);
    // With --data-dir, commits (hence RabbitMQ acks) trail the applied records by a checkpoint
    // interval, so the killed source leaves applied-but-unacked messages: real duplicates.
    w.startEngineWithDataDir();
    w.startSink();
    const first = w.startSource(["--prefetch", "5000"]);
    await w.progress(10_000);
    first.child.kill("SIGKILL");
    expect((await first.finished).signal).toBe("SIGKILL");
    expect(countOf(readTotals(w.totalsPath))).toBeLessThan(60_000);

    const second = w.startSource(["--prefetch", "5000"]);
    await w.exact();
    await w.drained();
    second.child.kill("SIGTERM");
    const done = await second.finished;
    expect(done.code, done.stderr).toBe(0);
    const redelivered = Number(/\((\d+) redelivered\)/.exec(done.stderr)?.[1]);
    expect(redelivered).toBeGreaterThan(0);
  }, TEST_TIMEOUT_MS);

  it("SIGKILL of the engine (with --data-dir) mid-stream: the source waits, reconnects, replays; nothing lost or counted twice", async () => {
    const w = await world("kill-engine");
    await w.publish(["--count", "60000", "--without-id-every", "5"]);
    const engine = w.startEngineWithDataDir();
    w.startSink();
    const source = w.startSource();
    await w.progress(10_000);
    engine.child.kill("SIGKILL");
    expect((await engine.finished).signal).toBe("SIGKILL");
    expect(countOf(readTotals(w.totalsPath))).toBeLessThan(60_000);

    await waitFor("the source to notice the engine is gone", () =>
      /source session with engine .* ended/.test(source.stderr()) ? true : undefined);
    const restarted = w.startEngineWithDataDir();
    await w.exact();
    await w.drained();
    expect(restarted.stderr()).toMatch(/restored checkpoint/);
  }, TEST_TIMEOUT_MS);

  it("RabbitMQ unreachable when the source starts: it retries with backoff, logs it, and consumes once the broker answers", async () => {
    const w = await world("broker-down");
    await w.publish(["--count", "2000"]);
    w.startEngine();
    w.startSink();
    // The broker is reached through a port that refuses connections until the test opens it.
    const port = await freePort();
    const source = w.startSource(["--amqp-url", `amqp://guest:guest@127.0.0.1:${port}/%2F`]);
    await waitFor("three logged connection attempts", () =>
      /RabbitMQ at 127\.0\.0\.1:\d+ is unreachable .* retrying in [\d.]+ s \(attempt 3\)/.test(source.stderr()) ? true : undefined);
    expect(readTotals(w.totalsPath)).toBeUndefined();
    const relay = await relayTo(port, 5672);
    try {
      await w.exact();
      await w.drained();
    } finally {
      await procs.killAll();
      relay.close();
    }
  }, TEST_TIMEOUT_MS);
});

/** A TCP relay from 127.0.0.1:from to the broker at 127.0.0.1:to: the broker "comes up" there. */
function relayTo(from: number, to: number): Promise<Server & { close(): void }> {
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = createConnection({ host: "127.0.0.1", port: to });
    sockets.add(client).add(upstream);
    client.pipe(upstream).pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
  });
  const close = server.close.bind(server);
  (server as Server & { close(): void }).close = () => {
    for (const s of sockets) s.destroy();
    return close();
  };
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(from, "127.0.0.1", () => resolve(server as Server & { close(): void }));
  });
}

