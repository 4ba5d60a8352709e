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
import type { Source, SourceBatch, SourceContext } from "../../src/connector/types.ts";
import { FrameQueue } from "../frame-queue.ts";
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
  private closed = false;
  private readonly queue: FrameQueue<WebSocket>;

  constructor(private readonly settings: Settings) {
    this.queue = new FrameQueue(settings, "ws");
  }

  async open(ctx: SourceContext): Promise<void> {
    this.name = ctx.name;
    this.log = ctx.log;
    this.queue.open(ctx.name, ctx.log, ctx.resumeFrom);
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

  read(maxRecords?: number): Promise<SourceBatch | null> {
    return this.queue.read(maxRecords);
  }

  queuedRecords(): number {
    return this.queue.queuedRecords();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const ws of this.queue.close()) ws.terminate();
    const listener = this.listener;
    this.listener = null;
    await listener?.close();
  }

  private accept(ws: WebSocket, remote: string): void {
    if (this.closed) {
      ws.terminate();
      return;
    }
    this.queue.add(ws);
    this.log?.debug({ source: this.name, remote }, "ws source client connected");
    ws.on("message", (data: Buffer, isBinary: boolean) => {
      // A copy, so a small message never pins the larger socket chunk it was cut from.
      this.queue.frames.push(isBinary ? new Uint8Array(data) : utf8.decode(data));
      this.queue.received(data.length);
      this.queue.arrived();
    });
    ws.on("error", (err: Error & { code?: string }) =>
      // ws has already sent the close code that fits (1009 too big, 1002 protocol, 1007 bad UTF-8).
      this.log?.warn({ source: this.name, remote, code: err.code, reason: err.message }, "ws source closing a client that sent a bad frame"),
    );
    ws.on("close", () => this.queue.remove(ws));
  }
}
