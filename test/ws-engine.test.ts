import { readFileSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { makeCerts } from "./helpers/certs.ts";
import { freePort, startKeyway, waitFor, type Running } from "./helpers/process.ts";

const CLIENTS = 4;
const LINES_PER_CLIENT = 500;
const MAX_FRAME_BYTES = 1024;

function connectWhenUp(url: string, options: WebSocket.ClientOptions = {}): Promise<WebSocket> {
  return waitFor(`a WebSocket at ${url}`, () =>
    new Promise<WebSocket | undefined>((resolve) => {
      const ws = new WebSocket(url, options);
      ws.once("open", () => resolve(ws));
      ws.once("error", () => resolve(undefined));
    }),
  );
}

function closeCode(ws: WebSocket): Promise<number> {
  return new Promise((resolve) => ws.once("close", (code) => resolve(code)));
}

function socketOf(ws: WebSocket): Socket {
  return (ws as unknown as { _socket: Socket })._socket;
}

function logLines(engine: Running): Array<Record<string, unknown>> {
  return engine.stderr().split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Resident memory of a process, from Linux's /proc. */
function rssBytes(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith("VmRSS:"))!;
  return Number(/(\d+)/.exec(line)![1]) * 1024;
}

describe("WebSocket source and sink in a running engine", () => {
  let engine: Running | undefined;
  const sockets: WebSocket[] = [];
  let peer: Server | undefined;
  afterEach(() => {
    engine?.child.kill("SIGKILL");
    for (const ws of sockets.splice(0)) ws.terminate();
    peer?.close();
  });

  it("counts the words many clients send, exactly, for a subscriber; a bad client is closed alone", async () => {
    const [inPort, outPort] = [await freePort(), await freePort()];
    engine = startKeyway([
      "run", "examples/word-count/app.ts",
      "--source", `lines=ws://127.0.0.1:${inPort}/in`,
      "--sink", `counts=ws://127.0.0.1:${outPort}/out`,
      "--max-frame-bytes", String(MAX_FRAME_BYTES),
    ]);
    const subscriber = await connectWhenUp(`ws://127.0.0.1:${outPort}/out`);
    sockets.push(subscriber);
    const counts = new Map<string, number[]>();
    let outputs = 0;
    subscriber.on("message", (data: Buffer, binary) => {
      expect(binary).toBe(false);
      const [word, count] = data.toString().split(" ");
      counts.set(word!, [...(counts.get(word!) ?? []), Number(count)]);
      outputs += 1;
    });

    const url = `ws://127.0.0.1:${inPort}/in`;
    const clients = await Promise.all(Array.from({ length: CLIENTS }, () => connectWhenUp(url)));
    const [oversized, badFrame] = [await connectWhenUp(url), await connectWhenUp(url)];
    sockets.push(...clients, oversized, badFrame);
    const closes = [closeCode(oversized), closeCode(badFrame)];
    oversized.send("big ".repeat(MAX_FRAME_BYTES));
    // A masked text frame of invalid UTF-8, written under the ws client, which would refuse to send it.
    socketOf(badFrame).write(Buffer.from([0x81, 0x82, 0, 0, 0, 0, 0xff, 0xfe]));
    expect(await Promise.all(closes)).toEqual([1009, 1007]);

    const expected = new Map<string, number>();
    let words = 0;
    await Promise.all(
      clients.map(async (ws, c) => {
        for (let i = 0; i < LINES_PER_CLIENT; i++) {
          const line = `Client${c} line ${i % 7} word${i % 13} shared`;
          for (const word of line.toLowerCase().split(" ")) {
            expected.set(word, (expected.get(word) ?? 0) + 1);
            words += 1;
          }
          ws.send(line);
          if (i % 50 === 0) await new Promise((r) => setImmediate(r));
        }
      }),
    );

    await waitFor(`${words} counts at the subscriber`, () => (outputs >= words ? true : undefined));
    expect(outputs).toBe(words);
    expect(new Set(counts.keys())).toEqual(new Set(expected.keys()));
    for (const [word, n] of expected) expect(counts.get(word)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    const warnings = logLines(engine).filter((l) => l.msg === "ws source closing a client that sent a bad frame");
    expect(warnings.map((w) => w.code).sort()).toEqual(["WS_ERR_INVALID_UTF8", "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH"]);

    engine.child.kill("SIGTERM");
    expect((await engine.finished).code).toBe(0);
  });

  it("serves wss:// sources and sinks with --tls-cert and --tls-key", async () => {
    const certs = makeCerts();
    const [inPort, outPort] = [await freePort(), await freePort()];
    engine = startKeyway([
      "run", "examples/word-count/app.ts",
      "--source", `lines=wss://127.0.0.1:${inPort}/in`,
      "--sink", `counts=wss://127.0.0.1:${outPort}/out`,
      "--tls-cert", certs.server.cert, "--tls-key", certs.server.key,
    ]);
    const trust = { ca: readFileSync(certs.ca) };
    const subscriber = await connectWhenUp(`wss://localhost:${outPort}/out`, trust);
    const client = await connectWhenUp(`wss://localhost:${inPort}/in`, trust);
    sockets.push(subscriber, client);
    const got: string[] = [];
    subscriber.on("message", (data: Buffer) => got.push(data.toString()));
    client.send("tls tls");
    await waitFor("two counts", () => (got.length >= 2 ? true : undefined));
    expect(got).toEqual(["tls 1", "tls 2"]);
    // The same port refuses plaintext: a ws:// client gets no upgrade.
    const plain = new WebSocket(`ws://127.0.0.1:${inPort}/in`);
    sockets.push(plain);
    await new Promise<void>((resolve) => plain.once("error", () => resolve()));
  });

  it("stops reading its clients while the sink is stalled, so their send buffers grow and the engine's memory does not", async () => {
    const [inPort, sinkPort] = [await freePort(), await freePort()];
    // A sink peer that accepts and never reads: the engine's tcp sink fills, then the pipeline stops.
    peer = createServer((socket) => socket.pause());
    await new Promise<void>((resolve) => peer!.listen(sinkPort, "127.0.0.1", resolve));
    engine = startKeyway([
      "run", "examples/word-count/app.ts",
      "--source", `lines=ws://127.0.0.1:${inPort}/in`,
      "--sink", `counts=tcp://127.0.0.1:${sinkPort}`,
      "--log-level", "debug",
    ]);
    const client = await connectWhenUp(`ws://127.0.0.1:${inPort}/in`);
    sockets.push(client);
    const line = Array.from({ length: 50 }, (_, i) => `w${i}`).join(" ");
    const cap = 512 * 1024 * 1024;
    let sentBytes = 0;
    // The client's buffer also grows while the engine merely lags, so the pause is read from the log.
    const paused = () => logLines(engine!).some((l) => l.msg === "ws source full; clients paused");
    while (client.bufferedAmount < 32 * 1024 * 1024 || !paused()) {
      if (sentBytes > cap) throw new Error(`sent ${sentBytes} bytes and the engine never pushed back`);
      for (let i = 0; i < 1000; i++) client.send(line);
      sentBytes += 1000 * line.length;
      await new Promise((r) => setImmediate(r));
    }
    // What got past the client is bounded by the engine's and the kernel's buffers, not by what was sent.
    expect(rssBytes(engine.child.pid!)).toBeLessThan(512 * 1024 * 1024);
  });
});
