/** runSource with Keyway's own Sources (a real file, a real TCP listener) against a scripted engine. */
import { writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { fileSource, tcpSource } from "../../connectors/index.ts";
import type { Source, SourceBatch } from "../../src/connector/types.ts";
import { runSource, type RunSourceOptions } from "../../src/sdk/index.ts";
import { makeTempDir } from "../connectors/helpers.ts";
import { startFakeEngine, type FakeEngine, type FakeSession } from "./fake-engine.ts";

let engine: FakeEngine;
let dir: string;
let remove: () => Promise<void>;

beforeEach(async () => {
  engine = await startFakeEngine();
  ({ dir, remove } = await makeTempDir());
});

afterEach(async () => {
  await engine.close();
  await remove();
});

function options(overrides: Partial<RunSourceOptions> = {}): RunSourceOptions {
  return { engine: engine.address, target: "lines", connectorName: "test", stream: "in", ...overrides };
}

async function opened(resumeAfter: bigint): Promise<FakeSession<"Source">> {
  const session = await engine.nextSession("Source");
  session.welcome(1000);
  const { stream } = await session.nextOf("open");
  session.send({ case: "opened", value: { stream, resumeAfter, committed: resumeAfter } as never });
  return session;
}

async function records(session: FakeSession<"Source">, count: number): Promise<Array<[bigint, string]>> {
  const got: Array<[bigint, string]> = [];
  while (got.length < count) {
    for (const r of (await session.nextOf("batch")).records) got.push([r.position, Buffer.from(r.value).toString("utf8")]);
  }
  return got;
}

describe("runSource", () => {
  it("numbers a file's lines from its start and skips those at or below resume_after, then ends the stream", async () => {
    const path = join(dir, "in.txt");
    writeFileSync(path, Array.from({ length: 10 }, (_, i) => `line ${i + 1}`).join("\n") + "\n");
    // Small chunks: the resume point falls inside a batch of the file source.
    const running = runSource(options(), fileSource(path, { chunkBytes: 16 }));
    const session = await opened(3n);
    expect(await records(session, 7)).toEqual(Array.from({ length: 7 }, (_, i) => [BigInt(i + 4), `line ${i + 4}`]));
    expect((await session.nextOf("end")).stream).toBe("in");
    session.send({ case: "ended", value: { stream: "in", position: 10n } as never });
    await running;
  });

  it("numbers a TCP listener's frames on from resume_after, and drains before stopping on abort", async () => {
    const source = tcpSource({ host: "127.0.0.1", port: 0, framing: "newline" });
    const stop = new AbortController();
    const running = runSource(options({ signal: stop.signal }), source);
    const session = await opened(40n);
    const port = await waitForPort(source);
    const socket = connect({ host: "127.0.0.1", port });
    socket.end("a\nb\nc\n");
    expect(await records(session, 3)).toEqual([
      [41n, "a"],
      [42n, "b"],
      [43n, "c"],
    ]);
    stop.abort();
    session.send({ case: "committed", value: { stream: "in", position: 43n } as never });
    await running;
    await session.ended;
  });

  it("tells the Source what it may acknowledge upstream only as the engine commits whole batches", async () => {
    const source = new ListSource([
      { values: ["a", "b"], position: 10n },
      { values: ["c"], position: 20n },
    ]);
    const running = runSource(options(), source);
    const session = await opened(0n);
    await records(session, 3);
    expect(source.commits).toEqual([]);
    session.send({ case: "committed", value: { stream: "in", position: 1n } as never });
    session.send({ case: "committed", value: { stream: "in", position: 2n } as never });
    await session.nextOf("end");
    while (source.commits.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    expect(source.commits).toEqual([10n]);
    session.send({ case: "ended", value: { stream: "in", position: 3n } as never });
    await running;
    expect(source.commits).toEqual([10n, 20n]);
  });

  it("stops on abort even while waiting for room in a full replay buffer that nothing commits", async () => {
    const source = new ListSource([{ values: Array.from({ length: 20 }, (_, i) => `r${i}`), position: 20n }]);
    const stop = new AbortController();
    const running = runSource(options({ signal: stop.signal, replayBufferRecordsMax: 5, drainTimeoutMs: 1 }), source);
    const session = await opened(0n);
    await records(session, 5);
    stop.abort();
    await running;
    expect(source.closed).toBe(true);
  });

  it("rejects with the Source's own failure and closes the session", async () => {
    const source = new ListSource([{ values: ["a"], position: 1n }], new Error("upstream broke"));
    const running = runSource(options({ drainTimeoutMs: 1 }), source);
    const session = await opened(0n);
    await expect(running).rejects.toThrow("upstream broke");
    await session.ended;
    expect(source.closed).toBe(true);
  });
});

/** A finite Source over fixed batches (a real implementation of the interface, kept in memory). */
class ListSource implements Source {
  readonly finite = true;
  readonly commits: unknown[] = [];
  closed = false;
  private next = 0;

  constructor(
    private readonly batches: SourceBatch[],
    private readonly failAtEnd?: Error,
  ) {}

  async open(): Promise<void> {}

  async read(): Promise<SourceBatch | null> {
    if (this.closed) return null;
    const batch = this.batches[this.next++];
    if (batch === undefined && this.failAtEnd !== undefined) throw this.failAtEnd;
    return batch ?? null;
  }

  commit(upTo: unknown): void {
    this.commits.push(upTo);
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

async function waitForPort(source: { address(): { port: number } }): Promise<number> {
  for (;;) {
    try {
      return source.address().port;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }
}
