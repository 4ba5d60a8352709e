// The ws-ingest benchmark's sender, its own process: opens CONNECTIONS WebSocket clients to URL
// with ws, then sends MESSAGES small text messages spread evenly over them, as fast as the
// receiver takes them, and closes each connection (ws's close handshake) once its last message is
// sent. Every message is 20 bytes: "w<connection>:<seq, 17 digits>".
//
// The sender must be much cheaper per message than either receiver, or both sides would measure
// the sender: through ws.send a 20-byte message costs the sender about what it costs the raw
// receiver (a frame header allocated, a mask drawn and applied, two stream writes). So the sender
// builds its frames itself, CHUNK at a time, into one Buffer written with one socket.write on the
// connection ws opened: standard RFC 6455 client frames (FIN, text opcode, the mask bit set, an
// all-zero masking key, 7-bit length), the bytes ws.send would put on the wire with such a key.
// The receivers parse, unmask and validate them as any other frames.
//
// Backpressure: a connection waits while its bufferedAmount (ws: what its socket has not yet
// handed to the kernel) exceeds highWaterBytes, until the oldest chunk still queued is written
// out. The connections take turns chunk by chunk.
//
// The close handshake completes only once the receiver has read every message before the close
// frame, so when every connection is closed the receiver holds them all. Prints a RESULT line on
// stdout: messages sent, hrtime (ns) of the first send, of the last write and of the last close,
// CPU seconds.
//   node --import tsx bench/lib/ws-sender.ts '{"url":"ws://127.0.0.1:8080/in","messages":200000,"connections":4,"highWaterBytes":4194304}'
import type { Socket } from "node:net";
import { WebSocket } from "ws";
import { cpuSecSince, parseArg, printResult } from "./protocol-records.ts";

export interface WsSenderOptions {
  url: string;
  messages: number;
  connections: number;
  highWaterBytes: number;
}

export interface WsSenderReport {
  sent: number;
  connections: number;
  /** hrtime (ns) just before the first message. */
  firstSendNs: number;
  /** hrtime (ns) once every message is written to the socket. */
  lastSendNs: number;
  /** hrtime (ns) once every connection's close handshake is done. */
  closedNs: number;
  /** How many times a connection waited for its send buffer to drain. */
  waits: number;
  cpuSec: number;
}

const WS_MESSAGE_BYTES = 20;
const CHUNK = 1000;
const OPEN_TIMEOUT_MS = 30_000;

function wsMessage(connection: number, seq: number): string {
  const head = `w${connection}:`;
  return head + String(seq).padStart(WS_MESSAGE_BYTES - head.length, "0");
}

function open(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    const timer = setTimeout(() => reject(new Error(`no connection to ${url} within ${OPEN_TIMEOUT_MS / 1000} s`)), OPEN_TIMEOUT_MS);
    ws.once("open", () => {
      clearTimeout(timer);
      resolve(ws);
    });
    ws.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

let waits = 0;

/** FIN + text opcode, then the mask bit + the payload length (< 126), then a zero masking key. */
const FRAME_HEAD: readonly number[] = [0x81, 0x80 | WS_MESSAGE_BYTES, 0, 0, 0, 0];
const FRAME_BYTES = FRAME_HEAD.length + WS_MESSAGE_BYTES;

/** Messages [from, to) of a connection as one Buffer of frames. */
function frames(connection: number, from: number, to: number): Buffer {
  const buf = Buffer.allocUnsafe((to - from) * FRAME_BYTES);
  let at = 0;
  for (let seq = from; seq < to; seq++) {
    for (const byte of FRAME_HEAD) buf[at++] = byte;
    at += buf.write(wsMessage(connection, seq), at, "latin1");
  }
  return buf;
}

async function pump(ws: WebSocket, connection: number, count: number, highWaterBytes: number): Promise<void> {
  // ws's own socket: private, but the way to write many frames at once (see the top of the file).
  const socket = (ws as unknown as { _socket: Socket })._socket;
  const written: Array<Promise<void>> = [];
  let seq = 0;
  while (seq < count) {
    if (ws.bufferedAmount > highWaterBytes) {
      waits++;
      while (ws.bufferedAmount > highWaterBytes) {
        const oldest = written.shift();
        await (oldest ?? turn());
      }
    }
    const end = Math.min(count, seq + CHUNK);
    const chunk = frames(connection, seq, end);
    seq = end;
    written.push(new Promise<void>((resolve, reject) => socket.write(chunk, (err) => (err ? reject(err) : resolve()))));
    await turn();
  }
  await Promise.all(written);
}

function closed(ws: WebSocket): Promise<void> {
  return new Promise((resolve) => {
    if (ws.readyState === WebSocket.CLOSED) return resolve();
    ws.once("close", () => resolve());
    ws.close(1000);
  });
}

const options = parseArg<WsSenderOptions>();
if (options.messages % options.connections !== 0) throw new Error(`messages (${options.messages}) must be a multiple of connections (${options.connections})`);
// "w<connection>:" must stay 3 bytes for every message to be WS_MESSAGE_BYTES long.
if (options.connections > 10) throw new Error(`at most 10 connections, got ${options.connections}`);
const sockets: WebSocket[] = [];
for (let c = 0; c < options.connections; c++) sockets.push(await open(options.url));
for (const ws of sockets) ws.on("error", (err) => process.stderr.write(`ws-sender: ${err.message}\n`));
const perConnection = options.messages / options.connections;
const cpuStart = process.cpuUsage();
const firstSendNs = Number(process.hrtime.bigint());
await Promise.all(sockets.map((ws, c) => pump(ws, c, perConnection, options.highWaterBytes)));
const lastSendNs = Number(process.hrtime.bigint());
await Promise.all(sockets.map(closed));
const report: WsSenderReport = {
  sent: options.messages,
  connections: options.connections,
  firstSendNs,
  lastSendNs,
  closedNs: Number(process.hrtime.bigint()),
  waits,
  cpuSec: cpuSecSince(cpuStart),
};
printResult(report);
