import { connect, createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { freePort, startKeyway, waitFor, type Running } from "./helpers/process.ts";

type Framing = "newline" | "length-prefixed";

/** Frames written by hand here, independently of the engine's own framing code. */
function frame(framing: Framing, text: string | Buffer): Buffer {
  const body = typeof text === "string" ? Buffer.from(text) : text;
  if (framing === "newline") return Buffer.concat([body, Buffer.from("\n")]);
  const header = Buffer.alloc(4);
  header.writeUInt32BE(body.length);
  return Buffer.concat([header, body]);
}

/** A sink peer: accepts the engine's connection and splits what arrives into frames. */
function sinkPeer(framing: Framing, port: number): Promise<{ server: Server; frames: string[] }> {
  const frames: string[] = [];
  const server = createServer((socket) => {
    let pending = Buffer.alloc(0);
    socket.on("data", (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      for (;;) {
        if (framing === "newline") {
          const nl = pending.indexOf(10);
          if (nl < 0) break;
          frames.push(pending.subarray(0, nl).toString("utf8"));
          pending = pending.subarray(nl + 1);
        } else {
          if (pending.length < 4) break;
          const length = pending.readUInt32BE(0);
          if (pending.length < 4 + length) break;
          frames.push(pending.subarray(4, 4 + length).toString("utf8"));
          pending = pending.subarray(4 + length);
        }
      }
    });
  });
  return new Promise((resolve) => server.listen(port, "127.0.0.1", () => resolve({ server, frames })));
}

function connectWhenUp(port: number): Promise<Socket> {
  return waitFor(`engine listening on ${port}`, () =>
    new Promise<Socket | undefined>((resolve) => {
      const socket = connect(port, "127.0.0.1");
      socket.once("connect", () => resolve(socket));
      socket.once("error", () => resolve(undefined));
    }),
  );
}

function closed(socket: Socket): Promise<void> {
  return new Promise((resolve) => (socket.closed ? resolve() : socket.once("close", () => resolve())));
}

const SCHEME: Record<Framing, string> = { newline: "tcp", "length-prefixed": "tcp+lp" };
const MAX_FRAME_BYTES = 1024;
const GOOD_CLIENTS = 3;
const LINES_PER_CLIENT = 3000;

describe.each<Framing>(["newline", "length-prefixed"])("TCP source and sink, %s framing", (framing) => {
  let engine: Running | undefined;
  let peer: Server | undefined;
  afterEach(() => {
    engine?.child.kill("SIGKILL");
    peer?.close();
  });

  it("delivers every frame of good connections while bad ones are closed with a logged reason", async () => {
    const [sourcePort, sinkPort] = [await freePort(), await freePort()];
    const sink = await sinkPeer(framing, sinkPort);
    peer = sink.server;
    const scheme = SCHEME[framing];
    engine = startKeyway([
      "run", "test/fixtures/tagged-count.ts",
      "--source", `in=${scheme}://127.0.0.1:${sourcePort}`,
      "--sink", `out=${scheme}://127.0.0.1:${sinkPort}`,
      "--max-frame-bytes", String(MAX_FRAME_BYTES),
    ]);

    const good = await Promise.all(Array.from({ length: GOOD_CLIENTS }, () => connectWhenUp(sourcePort)));
    const oversized = await connectWhenUp(sourcePort);
    const garbage = await connectWhenUp(sourcePort);

    // Bad clients send a few good frames first: those must still arrive.
    oversized.write(Buffer.concat([frame(framing, "big 1"), frame(framing, "big 2"), frame(framing, "x".repeat(MAX_FRAME_BYTES + 10))]));
    const junk = framing === "newline" ? Buffer.from([0xc3, 0x28, 0xff, 0xfe, 0x0a]) : Buffer.from([0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
    garbage.write(Buffer.concat([frame(framing, "junk 1"), junk]));
    await Promise.all([closed(oversized), closed(garbage)]);

    // Good clients keep flowing after the bad ones were dropped; each writes in uneven chunks.
    await Promise.all(
      good.map(async (socket, c) => {
        for (let i = 1; i <= LINES_PER_CLIENT; i += 100) {
          const chunk = Buffer.concat(Array.from({ length: 100 }, (_, j) => frame(framing, `c${c} ${i + j}`)));
          socket.write(chunk.subarray(0, 7));
          socket.write(chunk.subarray(7));
          await new Promise((r) => setImmediate(r));
        }
        socket.end();
      }),
    );

    const expectedFrames = GOOD_CLIENTS * LINES_PER_CLIENT + 3;
    await waitFor(`${expectedFrames} frames at the sink`, () => (sink.frames.length >= expectedFrames ? true : undefined));
    expect(sink.frames).toHaveLength(expectedFrames);
    expect(sink.frames).toEqual(expect.arrayContaining(["big 1 #1", "big 2 #2", "junk 1 #1"]));
    for (let c = 0; c < GOOD_CLIENTS; c++) {
      const mine = sink.frames.filter((f) => f.startsWith(`c${c} `));
      expect(mine).toEqual(Array.from({ length: LINES_PER_CLIENT }, (_, i) => `c${c} ${i + 1} #${i + 1}`));
    }

    const warnings = engine.stderr().split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(warnings.some((w) => JSON.stringify(w).includes("FRAME_TOO_LARGE"))).toBe(true);
    if (framing === "newline") expect(warnings.some((w) => JSON.stringify(w).includes("MALFORMED"))).toBe(true);

    engine.child.kill("SIGTERM");
    const finished = await engine.finished;
    expect(finished.code).toBe(0);
    expect(finished.stderr).toMatch(/keyway: done in/);
  });
});
