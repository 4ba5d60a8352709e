import { once } from "node:events";
import { createServer } from "node:net";
import type { Server, Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { lengthPrefixedDecoder, newlineDecoder } from "../../connectors/tcp/framing.ts";
import type { FrameDecoder, Framing } from "../../connectors/tcp/framing.ts";
import { tcpSink } from "../../connectors/tcp/tcp-sink.ts";
import type { TcpSinkOptions } from "../../connectors/tcp/tcp-sink.ts";
import type { Payload, Sink } from "../../src/connector/types.ts";
import { ErrorCode } from "../../src/errors.ts";
import { recordingLogger, until } from "./helpers.ts";
import type { RecordingLogger } from "./helpers.ts";

/** A real peer that decodes what it receives with the matching framing. */
interface Peer {
  server: Server;
  port: number;
  frames: string[];
  sockets: Set<Socket>;
  stop(): Promise<void>;
}

async function startPeer(framing: Framing, port = 0): Promise<Peer> {
  const frames: string[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    const decoder: FrameDecoder<Payload> = framing === "newline" ? newlineDecoder() : lengthPrefixedDecoder();
    const out: Payload[] = [];
    socket.on("data", (chunk: Buffer) => {
      decoder.push(chunk, out);
      for (const frame of out.splice(0)) frames.push(typeof frame === "string" ? frame : Buffer.from(frame).toString());
    });
  });
  server.listen(port, "127.0.0.1");
  await once(server, "listening");
  const bound = (server.address() as { port: number }).port;
  return {
    server,
    port: bound,
    frames,
    sockets,
    async stop() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A port nothing listens on right now (bound, then released). */
async function unusedPort(): Promise<number> {
  const peer = await startPeer("newline");
  await peer.stop();
  return peer.port;
}

const peers: Peer[] = [];
const sinks: Sink[] = [];
afterEach(async () => {
  await Promise.all(sinks.splice(0).map((sink) => sink.close()));
  await Promise.all(peers.splice(0).map((peer) => peer.stop()));
});

async function openSink(
  framing: Framing,
  port: number,
  extra: Partial<TcpSinkOptions> = {},
): Promise<{ sink: Sink; log: RecordingLogger }> {
  const sink = tcpSink({ host: "127.0.0.1", port, framing, backoffMsMin: 5, backoffMsMax: 40, closeTimeoutMs: 200, ...extra });
  const log = recordingLogger();
  await sink.open({ name: "out", log });
  sinks.push(sink);
  return { sink, log };
}

const batchOf = (tag: string, count: number) => Array.from({ length: count }, (_, i) => `${tag} ${i} ✓`);

describe.each<Framing>(["newline", "length-prefixed"])("tcp sink, %s framing", (framing) => {
  it("delivers every record, in order, to a listening peer", async () => {
    const peer = await startPeer(framing);
    peers.push(peer);
    const { sink } = await openSink(framing, peer.port);
    const expected: string[] = [];
    for (let b = 0; b < 50; b++) {
      const batch = batchOf(`batch ${b}`, 200);
      expected.push(...batch);
      await sink.write(batch);
    }
    await sink.write([new Uint8Array(Buffer.from("raw bytes"))]);
    expected.push("raw bytes");
    await sink.flush();
    expect(sink.bufferedRecords()).toBe(0);
    await until(() => peer.frames.length >= expected.length);
    expect(peer.frames).toEqual(expected);
  });

  it("opens while the peer is down, buffers, and delivers once the peer starts", async () => {
    const port = await unusedPort();
    const { sink, log } = await openSink(framing, port);
    await sink.write(batchOf("early", 10));
    expect(sink.bufferedRecords()).toBe(10);
    await until(() => log.calls.some((call) => call.level === "warn" && call.msg?.includes("cannot connect")));

    const peer = await startPeer(framing, port);
    peers.push(peer);
    await sink.flush();
    expect(sink.bufferedRecords()).toBe(0);
    await until(() => peer.frames.length >= 10);
    expect(peer.frames).toEqual(batchOf("early", 10));
  });

  it("reconnects after the peer restarts and delivers what was written while it was down", async () => {
    const first = await startPeer(framing);
    const { sink, log } = await openSink(framing, first.port);
    await sink.write(batchOf("before", 5));
    await sink.flush();
    await until(() => first.frames.length >= 5);
    await first.stop();
    await until(() => log.calls.some((call) => call.level === "warn" && call.msg?.includes("lost its connection")));

    await sink.write(batchOf("during", 5));
    await sink.write(batchOf("during more", 5));
    const second = await startPeer(framing, first.port);
    peers.push(second);
    await sink.flush();
    await until(() => second.frames.length >= 10);
    expect(first.frames).toEqual(batchOf("before", 5));
    expect(second.frames).toEqual([...batchOf("during", 5), ...batchOf("during more", 5)]);
  });

  it("makes write() wait while its buffer is full and the peer is down", async () => {
    const port = await unusedPort();
    const { sink } = await openSink(framing, port, { bufferRecordsMax: 10 });
    await sink.write(batchOf("a", 6));
    let blockedWriteDone = false;
    const blockedWrite = sink.write(batchOf("b", 6)).then(() => {
      blockedWriteDone = true;
    });
    // Several reconnect attempts go by; nothing can drain the buffer, so the write stays blocked.
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(blockedWriteDone).toBe(false);
    expect(sink.bufferedRecords()).toBe(12);

    const peer = await startPeer(framing, port);
    peers.push(peer);
    await blockedWrite;
    await sink.flush();
    await until(() => peer.frames.length >= 12);
    expect(peer.frames).toEqual([...batchOf("a", 6), ...batchOf("b", 6)]);
  });

  it("refuses a value larger than maxFrameBytes", async () => {
    const port = await unusedPort();
    const { sink } = await openSink(framing, port, { maxFrameBytes: 8 });
    await expect(sink.write(["123456789"])).rejects.toMatchObject({ code: ErrorCode.FRAME_TOO_LARGE });
    expect(sink.bufferedRecords()).toBe(0);
  });
});

describe("tcp sink close", () => {
  it("delivers what is buffered before closing, and refuses writes after", async () => {
    const peer = await startPeer("newline");
    peers.push(peer);
    const { sink } = await openSink("newline", peer.port);
    void sink.write(batchOf("last", 3));
    await sink.close();
    await sink.close();
    await until(() => peer.frames.length >= 3);
    expect(peer.frames).toEqual(batchOf("last", 3));
    await expect(sink.write(["late"])).rejects.toMatchObject({ code: ErrorCode.INTERNAL });
  });

  it("drops what the peer never got, with a warning, when closed while the peer is down", async () => {
    const { sink, log } = await openSink("newline", await unusedPort());
    await sink.write(batchOf("lost", 4));
    await sink.close();
    expect(sink.bufferedRecords()).toBe(0);
    const warning = log.calls.find((call) => call.level === "warn" && call.msg?.includes("dropping"));
    expect(warning?.fields.records).toBe(4);
  });
});
