import { createWriteStream } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { fileSource } from "../connectors/file/file-source.ts";
import { tcpSink } from "../connectors/tcp/tcp-sink.ts";
import { startEngine, type Engine } from "../src/index.ts";
import fixture from "./fixtures/tagged-count.ts";
import { scratchDir, waitFor, waitUntilStable } from "./helpers/process.ts";

const LINES = 3_000_000;
const KEYS = 100;
const SINK_BUFFER_RECORDS_MAX = 10_000;
const CHUNK_BYTES = 64 * 1024;
// The sink may accept one batch past its limit before it says wait; a batch is one file chunk's
// lines, at most CHUNK_BYTES / the shortest line ("k0 0\n", 5 bytes).
const BUFFERED_RECORDS_BOUND = SINK_BUFFER_RECORDS_MAX + CHUNK_BYTES / 5;

async function writeInput(path: string): Promise<void> {
  const out = createWriteStream(path);
  for (let i = 0; i < LINES; i += 10_000) {
    let chunk = "";
    for (let j = i; j < i + 10_000; j++) chunk += `k${j % KEYS} ${j}\n`;
    if (!out.write(chunk)) await new Promise<void>((r) => out.once("drain", () => r()));
  }
  await new Promise<void>((r) => out.end(() => r()));
}

describe("backpressure from a stalled sink", () => {
  let engine: Engine | undefined;
  let server: Server | undefined;
  afterEach(async () => {
    await engine?.stop().catch(() => undefined);
    server?.close();
  });

  it("keeps engine buffers bounded while the sink stalls, then delivers everything", async () => {
    const input = join(scratchDir("backpressure"), "in.txt");
    await writeInput(input);

    // The sink's peer accepts the connection and then reads nothing until told to.
    let peer: Socket | undefined;
    let received = 0;
    let tail = "";
    const lastSeq = new Map<string, number>();
    let outOfOrder = 0;
    server = createServer((socket) => {
      peer = socket;
      socket.pause();
      socket.setEncoding("utf8").on("data", (d: string) => {
        const lines = (tail + d).split("\n");
        tail = lines.pop()!;
        for (const line of lines) {
          const [key, seq] = line.split(" ");
          if ((lastSeq.get(key!) ?? -1) >= Number(seq)) outOfOrder++;
          lastSeq.set(key!, Number(seq));
          received++;
        }
      });
    });
    await new Promise<void>((r) => server!.listen(0, "127.0.0.1", () => r()));
    const { port } = server.address() as { port: number };

    engine = await startEngine(fixture, {
      sources: new Map([["in", fileSource(input, { chunkBytes: CHUNK_BYTES })]]),
      sinks: new Map([["out", tcpSink({ host: "127.0.0.1", port, framing: "newline", bufferRecordsMax: SINK_BUFFER_RECORDS_MAX })]]),
    });

    await waitUntilStable("the source to stall", () => engine!.stats().recordsIn);
    const stalled = engine.stats();
    expect(stalled.recordsIn).toBeLessThan(LINES / 2);
    expect(stalled.bufferedRecords).toBeGreaterThan(0);
    expect(stalled.bufferedRecords).toBeLessThanOrEqual(BUFFERED_RECORDS_BOUND);
    expect(received).toBe(0);

    peer!.resume();
    await engine.done;
    await waitFor("every record at the peer", () => (received >= LINES ? true : undefined));
    expect(received).toBe(LINES);
    expect(outOfOrder).toBe(0);
    expect(engine.stats()).toMatchObject({ recordsIn: LINES, recordsOut: LINES, keys: KEYS, bufferedRecords: 0 });
  });
});
