import { Buffer } from "node:buffer";
import { once } from "node:events";
import { connect } from "node:net";
import type { Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { encodeFrames } from "../../connectors/tcp/framing.ts";
import type { Framing } from "../../connectors/tcp/framing.ts";
import { tcpSource } from "../../connectors/tcp/tcp-source.ts";
import type { TcpSource, TcpSourceOptions } from "../../connectors/tcp/tcp-source.ts";
import type { Payload } from "../../src/connector/types.ts";
import { ErrorCode, KeywayError } from "../../src/errors.ts";
import { readValues, recordingLogger, until } from "./helpers.ts";
import type { RecordingLogger } from "./helpers.ts";

const opened: TcpSource[] = [];
const clients: Socket[] = [];
afterEach(async () => {
  for (const client of clients.splice(0)) client.destroy();
  await Promise.all(opened.splice(0).map((source) => source.close()));
});

async function openSource(
  framing: Framing,
  extra: Partial<TcpSourceOptions> = {},
  resumeFrom?: bigint,
): Promise<{ source: TcpSource; log: RecordingLogger; port: number }> {
  const source = tcpSource({ host: "127.0.0.1", port: 0, framing, ...extra });
  const log = recordingLogger();
  await source.open({ name: "events", log, ...(resumeFrom === undefined ? {} : { resumeFrom }) });
  opened.push(source);
  return { source, log, port: source.address().port };
}

async function connectClient(port: number): Promise<Socket> {
  const client = connect({ host: "127.0.0.1", port });
  clients.push(client);
  await once(client, "connect");
  return client;
}

const asText = (values: Payload[]) => values.map((value) => (typeof value === "string" ? value : Buffer.from(value).toString()));

describe.each<Framing>(["newline", "length-prefixed"])("tcp source, %s framing", (framing) => {
  it("merges the frames of several concurrent clients, each client's in order", async () => {
    const { source, port } = await openSource(framing);
    const clientCount = 5;
    const framesPerClient = 2000;
    const sockets = await Promise.all(Array.from({ length: clientCount }, () => connectClient(port)));
    sockets.forEach((socket, c) => {
      // Small writes interleave the clients and split frames across reads.
      for (let start = 0; start < framesPerClient; start += 100) {
        const values = Array.from({ length: 100 }, (_, i) => `client ${c} frame ${start + i} ✓`);
        socket.write(encodeFrames(framing, values));
      }
    });
    const values = await readValues(source, clientCount * framesPerClient);
    expect(values.length).toBe(clientCount * framesPerClient);
    expect(values.every((value) => typeof value === (framing === "newline" ? "string" : "object"))).toBe(true);
    for (let c = 0; c < clientCount; c++) {
      const own = asText(values).filter((value) => value.startsWith(`client ${c} `));
      expect(own).toEqual(Array.from({ length: framesPerClient }, (_, i) => `client ${c} frame ${i} ✓`));
    }
  });

  it("closes only a client that sends an oversized frame, warns naming it, and delivers everything else", async () => {
    const maxFrameBytes = 64;
    const { source, log, port } = await openSource(framing, { maxFrameBytes });
    const good = await Promise.all([connectClient(port), connectClient(port)]);
    const bad = await connectClient(port);
    const badPort = bad.localPort;
    const badClosed = once(bad, "close");

    bad.write(encodeFrames(framing, ["bad 0", "bad 1"]));
    const oversized = "x".repeat(maxFrameBytes + 1);
    bad.write(framing === "newline" ? oversized : Buffer.concat([Uint8Array.of(0, 0, 0, maxFrameBytes + 1), Buffer.from(oversized)]));
    good.forEach((socket, g) => socket.write(encodeFrames(framing, [`good ${g} before`])));
    await badClosed;
    good.forEach((socket, g) => socket.write(encodeFrames(framing, [`good ${g} after`])));

    const values = asText(await readValues(source, 6));
    expect(values.sort()).toEqual(["bad 0", "bad 1", "good 0 after", "good 0 before", "good 1 after", "good 1 before"]);
    const warning = log.calls.find((call) => call.level === "warn");
    expect(warning?.fields).toMatchObject({ remote: `127.0.0.1:${badPort}`, code: ErrorCode.FRAME_TOO_LARGE });
    expect(good.every((socket) => !socket.destroyed)).toBe(true);
  });

  it("continues positions from resumeFrom, counting delivered records", async () => {
    const { source, port } = await openSource(framing, {}, 1000n);
    const client = await connectClient(port);
    client.write(encodeFrames(framing, ["a", "b", "c"]));
    let delivered = 0;
    let lastPosition = 1000n;
    while (delivered < 3) {
      const batch = (await source.read())!;
      delivered += batch.values.length;
      expect(batch.position).toBe(1000n + BigInt(delivered));
      expect(batch.position).toBeGreaterThan(lastPosition);
      lastPosition = batch.position;
    }
  });

  it("honours read(maxRecords): a batch of at most that many, the rest left for the next read", async () => {
    const { source, port } = await openSource(framing);
    const client = await connectClient(port);
    const values = Array.from({ length: 10 }, (_, i) => `r${i}`);
    client.write(encodeFrames(framing, values));
    await until(() => source.queuedRecords!() === 10);
    const first = (await source.read(3))!;
    expect(asText(first.values)).toEqual(["r0", "r1", "r2"]);
    expect(first.position).toBe(3n);
    const rest = (await source.read())!;
    expect(asText(rest.values)).toEqual(values.slice(3));
    expect(rest.position).toBe(10n);
  });

  it("stops reading when its buffer is full and delivers everything once read again", async () => {
    const bufferRecordsMax = 100;
    const { source, port } = await openSource(framing, { bufferRecordsMax, bufferBytesMax: 1024 * 1024 });
    const client = await connectClient(port);
    const frameCount = 40_000;
    const values = Array.from({ length: frameCount }, (_, i) => `${i} `.padEnd(1000, "."));
    // 40 MB: far more than the kernel's socket buffers hold, so the client backs up once the
    // source stops reading.
    client.write(encodeFrames(framing, values));

    // Blocked: bytes stay queued in the client and the amount stops changing.
    let previous = -1;
    let stablePolls = 0;
    await until(() => {
      const queued = client.writableLength;
      stablePolls = queued > 0 && queued === previous ? stablePolls + 1 : 0;
      previous = queued;
      return stablePolls >= 10 || queued === 0;
    }, 20);
    expect(client.writableLength).toBeGreaterThan(0);

    // What the source holds is bounded: its record limit plus at most one socket read (64 KiB).
    const first = (await source.read())!;
    expect(first.values.length).toBeLessThanOrEqual(bufferRecordsMax + 66);

    const rest = await readValues(source, frameCount - first.values.length);
    expect(asText([...first.values, ...rest])).toEqual(values);
  });

  it("makes a pending read resolve null on close and drops its connections", async () => {
    const { source, port } = await openSource(framing);
    const client = await connectClient(port);
    const clientClosed = once(client, "close");
    await until(() => source.address().port === port);
    const pending = source.read();
    await source.close();
    expect(await pending).toBeNull();
    await clientClosed;
    expect(await source.read()).toBeNull();
  });
});

describe("tcp source, newline framing", () => {
  it("closes a client that sends invalid UTF-8, after delivering its valid lines", async () => {
    const { source, log, port } = await openSource("newline");
    const good = await connectClient(port);
    const bad = await connectClient(port);
    const badPort = bad.localPort;
    const badClosed = once(bad, "close");
    bad.write(Buffer.concat([Buffer.from("fine\n"), Uint8Array.of(0xc3, 0x28), Buffer.from("\nnever\n")]));
    await badClosed;
    good.write("still here\n");
    const values = await readValues(source, 2);
    expect(values.sort()).toEqual(["fine", "still here"]);
    const warning = log.calls.find((call) => call.level === "warn");
    expect(warning?.fields).toMatchObject({ remote: `127.0.0.1:${badPort}`, code: ErrorCode.MALFORMED });
  });

  it("delivers a final line without newline when the client ends", async () => {
    const { source, port } = await openSource("newline");
    const client = await connectClient(port);
    client.end("one\ntwo");
    expect(await readValues(source, 2)).toEqual(["one", "two"]);
  });

  it("fails open() with PORT_IN_USE when the port is taken", async () => {
    const { port } = await openSource("newline");
    const second = tcpSource({ host: "127.0.0.1", port, framing: "newline" });
    const error = await second.open({ name: "other", log: recordingLogger() }).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(KeywayError);
    expect((error as KeywayError).code).toBe(ErrorCode.PORT_IN_USE);
    expect((error as KeywayError).message).toBe(`source "other": cannot listen on 127.0.0.1:${port}: address in use`);
  });

  it("is not finite", () => {
    expect(tcpSource({ host: "127.0.0.1", port: 0, framing: "newline" }).finite).toBe(false);
  });
});

describe("tcp source, length-prefixed framing", () => {
  it("closes a client whose stream ends inside a frame, keeping its complete frames", async () => {
    const { source, log, port } = await openSource("length-prefixed");
    const client = await connectClient(port);
    client.end(Buffer.concat([encodeFrames("length-prefixed", ["whole"]), Uint8Array.of(0, 0, 0, 9, 1)]));
    expect(asText(await readValues(source, 1))).toEqual(["whole"]);
    await until(() => log.calls.some((call) => call.level === "warn"));
    expect(log.calls.find((call) => call.level === "warn")?.fields.code).toBe(ErrorCode.MALFORMED);
  });
});
