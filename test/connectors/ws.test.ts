import { readFileSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { sinkFromUri, sourceFromUri, wsSink, wsSource, type WsSink, type WsSource } from "../../connectors/index.ts";
import type { Payload } from "../../src/connector/types.ts";
import { ErrorCode } from "../../src/errors.ts";
import { makeCerts } from "../helpers/certs.ts";
import { readValues, recordingLogger, until, type LogCall } from "./helpers.ts";

const opened: Array<{ close(): Promise<void> }> = [];
const clients: WebSocket[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) client.terminate();
  await Promise.all(opened.splice(0).map((c) => c.close()));
});

async function openSource(opts: Partial<Parameters<typeof wsSource>[0]> = {}, calls: LogCall[] = []): Promise<WsSource> {
  const source = wsSource({ host: "127.0.0.1", port: 0, path: "/in", ...opts });
  await source.open({ name: "in", log: recordingLogger(calls) });
  opened.push(source);
  return source;
}

async function openSink(opts: Partial<Parameters<typeof wsSink>[0]> = {}, calls: LogCall[] = []): Promise<WsSink> {
  const sink = wsSink({ host: "127.0.0.1", port: 0, path: "/out", ...opts });
  await sink.open({ name: "out", log: recordingLogger(calls) });
  opened.push(sink);
  return sink;
}

function connectTo(url: string, options: WebSocket.ClientOptions = {}): Promise<WebSocket> {
  const client = new WebSocket(url, options);
  clients.push(client);
  return new Promise((resolve, reject) => {
    client.once("open", () => resolve(client));
    client.once("error", reject);
  });
}

function closeCode(client: WebSocket): Promise<number> {
  return new Promise((resolve) => client.once("close", (code) => resolve(code)));
}

/** A masked client frame written by hand, so it can break the rules the ws client keeps. */
function rawFrame(firstByte: number, payload: Buffer): Buffer {
  if (payload.length > 125) throw new Error("short frames only");
  return Buffer.concat([Buffer.from([firstByte, 0x80 | payload.length, 0, 0, 0, 0]), payload]);
}

function socketOf(client: WebSocket): import("node:net").Socket {
  return (client as unknown as { _socket: import("node:net").Socket })._socket;
}

describe("ws source", () => {
  it("merges the messages of many clients, text as strings and binary as bytes", async () => {
    const source = await openSource();
    const url = `ws://127.0.0.1:${source.address().port}/in`;
    const senders = await Promise.all([0, 1, 2, 3].map(() => connectTo(url)));
    senders.forEach((client, c) => {
      for (let i = 0; i < 500; i++) client.send(`c${c} ${i}`);
      client.send(Buffer.from([c, 0xff]), { binary: true });
    });
    const values = await readValues(source, 4 * 501);
    for (let c = 0; c < 4; c++) {
      const mine = values.filter((v) => typeof v === "string" && v.startsWith(`c${c} `));
      expect(mine).toEqual(Array.from({ length: 500 }, (_, i) => `c${c} ${i}`));
      const bytes = values.filter((v): v is Uint8Array => typeof v !== "string" && v[0] === c);
      expect(bytes.map((b) => [...b])).toEqual([[c, 0xff]]);
    }
  });

  it("continues positions from resumeFrom and honours read(maxRecords)", async () => {
    const source = wsSource({ host: "127.0.0.1", port: 0, path: "/in" });
    await source.open({ name: "in", log: recordingLogger(), resumeFrom: 100n });
    opened.push(source);
    const client = await connectTo(`ws://127.0.0.1:${source.address().port}/in`);
    for (let i = 0; i < 10; i++) client.send(String(i));
    const first = await source.read(3);
    expect(first!.values.length).toBeLessThanOrEqual(3);
    expect(first!.position).toBe(100n + BigInt(first!.values.length));
    const rest = await readValues(source, 10 - first!.values.length);
    expect([...first!.values, ...rest]).toEqual(Array.from({ length: 10 }, (_, i) => String(i)));
  });

  it("answers 404 on another path", async () => {
    const source = await openSource();
    const client = new WebSocket(`ws://127.0.0.1:${source.address().port}/elsewhere`);
    client.on("error", () => {}); // terminate() below abandons the handshake, which ws reports as an error
    const status = await new Promise<number>((resolve) => client.once("unexpected-response", (_req, res) => resolve(res.statusCode!)));
    expect(status).toBe(404);
    client.terminate();
  });

  it("closes only the client that sends an oversized message (1009) or a bad frame (1002, 1007), logging why", async () => {
    const calls: LogCall[] = [];
    const source = await openSource({ maxFrameBytes: 64 }, calls);
    const url = `ws://127.0.0.1:${source.address().port}/in`;
    const [good, big, reserved, badUtf8] = await Promise.all([connectTo(url), connectTo(url), connectTo(url), connectTo(url)]);
    const codes = [closeCode(big), closeCode(reserved), closeCode(badUtf8)];
    good.send("before");
    big.send("x".repeat(65));
    socketOf(reserved).write(rawFrame(0x80 | 0x40 | 0x1, Buffer.from("rsv1"))); // FIN, RSV1, text
    socketOf(badUtf8).write(rawFrame(0x80 | 0x1, Buffer.from([0xff, 0xfe]))); // FIN, text, not UTF-8
    expect(await Promise.all(codes)).toEqual([1009, 1002, 1007]);
    for (let i = 0; i < 100; i++) good.send(`after ${i}`);
    const values = await readValues(source, 101);
    expect(values).toEqual(["before", ...Array.from({ length: 100 }, (_, i) => `after ${i}`)]);
    expect(good.readyState).toBe(WebSocket.OPEN);
    const warnings = calls.filter((c) => c.level === "warn" && c.msg === "ws source closing a client that sent a bad frame");
    expect(warnings).toHaveLength(3);
    for (const w of warnings) expect(w.fields.remote).toMatch(/^127\.0\.0\.1:\d+$/);
  });

  it("pauses its clients when its buffer is full, so their own send buffers back up, and resumes when read", async () => {
    const calls: LogCall[] = [];
    const source = await openSource({ bufferRecordsMax: 64 }, calls);
    const client = await connectTo(`ws://127.0.0.1:${source.address().port}/in`);
    const message = "m".repeat(1024);
    let sent = 0;
    // Nothing reads the source: once its buffer and the kernel's are full, the client's sends queue.
    while (client.bufferedAmount < 4 * 1024 * 1024) {
      if (sent >= 256 * 1024) throw new Error(`sent ${sent} messages and the source never pushed back`);
      for (let i = 0; i < 256; i++) client.send(`${sent++} ${message}`);
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(calls.some((c) => c.msg === "ws source full; clients paused")).toBe(true);
    const values = await readValues(source, sent);
    expect(values.map((v) => Number((v as string).split(" ")[0]))).toEqual(Array.from({ length: sent }, (_, i) => i));
    await until(() => client.bufferedAmount === 0);
  });

  it("serves wss:// with the given certificate", async () => {
    const certs = makeCerts();
    const source = sourceFromUri("wss://127.0.0.1:0/in", { tls: { cert: readFileSync(certs.server.cert), key: readFileSync(certs.server.key) } }) as WsSource;
    await source.open({ name: "in", log: recordingLogger() });
    opened.push(source);
    const client = await connectTo(`wss://localhost:${source.address().port}/in`, { ca: readFileSync(certs.ca) });
    client.send("over tls");
    expect(await readValues(source, 1)).toEqual(["over tls"]);
  });
});

describe("ws sink", () => {
  it("sends every output to each subscriber, text as text and bytes as binary", async () => {
    const sink = await openSink();
    const url = `ws://127.0.0.1:${sink.address().port}/out`;
    const subscribers = await Promise.all([connectTo(url), connectTo(url)]);
    const received = subscribers.map((client) => {
      const got: Array<{ binary: boolean; data: string }> = [];
      client.on("message", (data: Buffer, binary) => got.push({ binary, data: binary ? data.toString("hex") : data.toString() }));
      return got;
    });
    await until(() => sink.subscribers() === 2);
    await sink.write(["héllo", new Uint8Array([1, 2, 3])]);
    await until(() => received.every((got) => got.length === 2));
    for (const got of received) expect(got).toEqual([{ binary: false, data: "héllo" }, { binary: true, data: "010203" }]);
  });

  it("drops output while nobody subscribes and never waits in write()", async () => {
    const sink = await openSink();
    await sink.write(["nobody"]);
    expect(sink.bufferedRecords()).toBe(0);
    await sink.flush();
  });

  it("drops a subscriber that falls behind (close 4000, counted, logged) while a fast one gets everything", async () => {
    const calls: LogCall[] = [];
    const sink = await openSink({ maxLagMessages: 100 }, calls);
    const url = `ws://127.0.0.1:${sink.address().port}/out`;
    const [fast, slow] = await Promise.all([connectTo(url), connectTo(url)]);
    socketOf(slow).pause();
    const fastGot: string[] = [];
    fast.on("message", (data: Buffer) => fastGot.push(data.toString()));
    const slowGot: string[] = [];
    slow.on("message", (data: Buffer) => slowGot.push(data.toString()));
    await until(() => sink.subscribers() === 2);
    const padding = "p".repeat(1000);
    let written = 0;
    while (sink.droppedSubscribers() === 0) {
      if (written >= 1_000_000) throw new Error("the slow subscriber was never dropped");
      const batch: Payload[] = [];
      for (let i = 0; i < 500; i++) batch.push(`${written++} ${padding}`);
      await sink.write(batch);
      await until(() => fastGot.length === written);
    }
    await sink.write(["last"]);
    written += 1;
    expect(sink.subscribers()).toBe(1);
    await until(() => fastGot.length === written);
    expect(fastGot.at(-1)).toBe("last");
    expect(fastGot.slice(0, -1).map((m) => Number(m.split(" ")[0]))).toEqual(Array.from({ length: written - 1 }, (_, i) => i));
    const drop = calls.find((c) => c.level === "warn" && c.msg === "ws sink dropping a subscriber that fell behind");
    expect(drop?.fields).toMatchObject({ droppedSubscribers: 1, maxLagMessages: 100 });
    // Resumed, the slow one reads what it was sent before the drop, in order, then the close.
    const code = closeCode(slow);
    socketOf(slow).resume();
    expect(await code).toBe(4000);
    expect(slowGot.length).toBeLessThan(written);
    expect(slowGot.map((m) => Number(m.split(" ")[0]))).toEqual(Array.from({ length: slowGot.length }, (_, i) => i));
  });
});

describe("ws URIs", () => {
  it("need the engine's certificate for wss://", () => {
    expect(() => sinkFromUri("wss://127.0.0.1:0/out")).toThrow(expect.objectContaining({ code: ErrorCode.USAGE, message: expect.stringContaining("--tls-cert") }));
  });

  it("refuse a query parameter of the other role", () => {
    expect(() => sourceFromUri("ws://127.0.0.1:0/in?maxLagMessages=5")).toThrow(expect.objectContaining({ code: ErrorCode.BAD_URI }));
    expect(() => sinkFromUri("ws://127.0.0.1:0/out?maxFrameBytes=5")).toThrow(expect.objectContaining({ code: ErrorCode.BAD_URI }));
  });
});
