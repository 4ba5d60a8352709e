/**
 * `ws://HOST:PORT/PATH` (and `wss://`) as a source: the engine listens, any number of WebSocket
 * clients connect to PATH, and every message is a record (a text message as a string, a binary
 * one as bytes), merged in arrival order per client and interleaved between clients.
 *
 * A client that sends a message over maxFrameBytes is closed by ws with 1009, one that sends a
 * bad frame (reserved bits set, a bad opcode, invalid UTF-8 in text) with 1002 or 1007; each is
 * logged at warn with its address, and the other clients go on.
 *
 * Memory is bounded as for the tcp source: messages waiting for read() (records and bytes; past
 * either bound every client is paused, its socket no longer read, until read() drains them, so a
 * stalled engine pushes back on the clients' own send buffers), the message each connection may
 * be receiving (maxFrameBytes), and the number of connections (connectionsMax).
 *
 * WebSocket cannot replay, so delivery is at most once per record across a crash, and positions
 * only count the records delivered, continuing from ctx.resumeFrom so they keep increasing across
 * restarts (the engine drops records at or below a committed position as replays). Records carry
 * no ids of their own: the engine's `<position>#<index>` names them, as for the tcp source.
 */
import type { WebSocket } from "ws";
import type { Payload, Source, SourceBatch, SourceContext } from "../../src/connector/types.ts";
import { ErrorCode, KeywayError } from "../../src/errors.ts";
import type { Logger } from "../../src/log/logger.ts";
import { DEFAULT_MAX_FRAME_BYTES, assertMaxFrameBytes } from "../tcp/framing.ts";
import { listenWs, type WsListener } from "./listener.ts";

/** ws has checked a text message is valid UTF-8 (or closed its client with 1007). */
const utf8 = new TextDecoder();

export interface WsSourceOptions {
  host: string;
  /** 0 picks a free port; address() tells which. */
  port: number;
  /** The only path clients may connect to, e.g. "/in". */
  path: string;
  maxFrameBytes?: number;
  /** Messages held for read() before every client is paused. */
  bufferRecordsMax?: number;
  /** Message bytes held for read() before every client is paused. */
  bufferBytesMax?: number;
  connectionsMax?: number;
  /** Serve wss:// with this certificate and key. */
  tls?: { cert: Buffer | string; key: Buffer | string };
}

export interface WsSource extends Source {
  /** The address actually bound, known once open() has resolved. */
  address(): { host: string; port: number };
}

/** A few of the engine's batches: enough to keep it busy, small enough to push back early. */
export const DEFAULT_WS_BUFFER_RECORDS_MAX = 16 * 1024;
export const DEFAULT_WS_BUFFER_BYTES_MAX = 16 * 1024 * 1024;
export const DEFAULT_WS_CONNECTIONS_MAX = 256;

export function wsSource(opts: WsSourceOptions): WsSource {
  const settings = {
    maxFrameBytes: opts.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
    bufferRecordsMax: opts.bufferRecordsMax ?? DEFAULT_WS_BUFFER_RECORDS_MAX,
    bufferBytesMax: opts.bufferBytesMax ?? DEFAULT_WS_BUFFER_BYTES_MAX,
    connectionsMax: opts.connectionsMax ?? DEFAULT_WS_CONNECTIONS_MAX,
  };
  assertMaxFrameBytes(settings.maxFrameBytes);
  for (const [key, value] of Object.entries(settings)) {
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new KeywayError(ErrorCode.USAGE, `ws source: ${key} must be a positive integer, got ${value}`);
    }
  }
  assertPath("ws source", opts.path);
  if (!Number.isSafeInteger(opts.port) || opts.port < 0 || opts.port > 65535) {
    throw new KeywayError(ErrorCode.USAGE, `ws source: port must be 0-65535, got ${opts.port}`);
  }
  return new WsListenSource({ ...opts, ...settings });
}

export function assertPath(who: string, path: string): void {
  if (!path.startsWith("/")) throw new KeywayError(ErrorCode.USAGE, `${who}: path must start with "/", got "${path}"`);
}

type Settings = WsSourceOptions & Required<Pick<WsSourceOptions, "maxFrameBytes" | "bufferRecordsMax" | "bufferBytesMax" | "connectionsMax">>;

class WsListenSource implements WsSource {
  readonly finite = false;
  private name = "";
  private log: Logger | null = null;
  private listener: WsListener | null = null;
  private readonly clients = new Set<WebSocket>();
  private closed = false;
  private paused = false;
  /** A read is waiting and an answer is queued behind the messages arriving now. */
  private answering = false;
  /** Messages waiting for read(), and each one's size, so a partial take knows what it freed. */
  private frames: Payload[] = [];
  private framesBytes = 0;
  private delivered = 0n;
  private waitingRead: { resolve: (batch: SourceBatch | null) => void; maxRecords: number } | null = null;

  constructor(private readonly settings: Settings) {}

  async open(ctx: SourceContext): Promise<void> {
    this.name = ctx.name;
    this.log = ctx.log;
    this.delivered = ctx.resumeFrom ?? 0n;
    const { host, port, path, tls, maxFrameBytes, connectionsMax } = this.settings;
    this.listener = await listenWs(
      { host, port, path, maxPayload: maxFrameBytes, connectionsMax, ...(tls === undefined ? {} : { tls }) },
      `source "${this.name}"`,
      ctx.log,
      (ws, remote) => this.accept(ws, remote),
    );
    ctx.log.info({ source: this.name, ...this.address(), path, tls: tls !== undefined }, "ws source listening");
  }

  address(): { host: string; port: number } {
    if (this.listener === null) throw new KeywayError(ErrorCode.INTERNAL, `source "${this.name}": address() while not listening`);
    return this.listener.address();
  }

  read(maxRecords = Number.POSITIVE_INFINITY): Promise<SourceBatch | null> {
    if (this.closed) return Promise.resolve(null);
    if (this.waitingRead !== null) {
      return Promise.reject(new KeywayError(ErrorCode.INTERNAL, `source "${this.name}": concurrent read()`));
    }
    if (this.frames.length > 0) return Promise.resolve(this.takeBatch(maxRecords));
    return new Promise((resolve) => {
      this.waitingRead = { resolve, maxRecords };
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.frames = [];
    this.framesBytes = 0;
    const waiting = this.waitingRead;
    this.waitingRead = null;
    waiting?.resolve(null);
    for (const ws of this.clients) ws.terminate();
    this.clients.clear();
    const listener = this.listener;
    this.listener = null;
    await listener?.close();
  }

  private accept(ws: WebSocket, remote: string): void {
    if (this.closed) {
      ws.terminate();
      return;
    }
    this.clients.add(ws);
    if (this.paused) ws.pause();
    this.log?.debug({ source: this.name, remote }, "ws source client connected");
    ws.on("message", (data: Buffer, isBinary: boolean) => {
      // A copy, so a small message never pins the larger socket chunk it was cut from.
      this.push(isBinary ? new Uint8Array(data) : utf8.decode(data), data.length);
    });
    ws.on("error", (err: Error & { code?: string }) =>
      // ws has already sent the close code that fits (1009 too big, 1002 protocol, 1007 bad UTF-8).
      this.log?.warn({ source: this.name, remote, code: err.code, reason: err.message }, "ws source closing a client that sent a bad frame"),
    );
    ws.on("close", () => this.clients.delete(ws));
  }

  private push(value: Payload, bytes: number): void {
    this.frames.push(value);
    this.framesBytes += bytes;
    if (this.waitingRead !== null) {
      // ws emits every message of a socket chunk in one go: answering the read after them makes one
      // batch of the chunk, not a batch per message.
      if (!this.answering) {
        this.answering = true;
        queueMicrotask(this.answerRead);
      }
    } else if (this.isFull()) {
      this.pauseAll();
    }
  }

  private readonly answerRead = (): void => {
    this.answering = false;
    const waiting = this.waitingRead;
    if (waiting === null || this.frames.length === 0) return;
    this.waitingRead = null;
    waiting.resolve(this.takeBatch(waiting.maxRecords));
  };

  private takeBatch(maxRecords: number): SourceBatch {
    let values: Payload[];
    if (this.frames.length <= maxRecords) {
      values = this.frames;
      this.frames = [];
      this.framesBytes = 0;
    } else {
      const count = Math.max(1, Math.floor(maxRecords));
      values = this.frames.splice(0, count);
      // A text message's UTF-16 length stands for its bytes (exact for ASCII, less otherwise): the byte
      // bound is a memory bound, and it is exact again whenever read() takes everything.
      for (const v of values) this.framesBytes -= typeof v === "string" ? v.length : v.byteLength;
    }
    this.delivered += BigInt(values.length);
    if (this.paused && !this.isFull()) this.resumeAll();
    return { values, position: this.delivered };
  }

  private isFull(): boolean {
    return this.frames.length >= this.settings.bufferRecordsMax || this.framesBytes >= this.settings.bufferBytesMax;
  }

  private pauseAll(): void {
    if (this.paused) return;
    this.paused = true;
    for (const ws of this.clients) ws.pause();
    this.log?.debug({ source: this.name, records: this.frames.length, bytes: this.framesBytes }, "ws source full; clients paused");
  }

  private resumeAll(): void {
    this.paused = false;
    for (const ws of this.clients) ws.resume();
  }
}
