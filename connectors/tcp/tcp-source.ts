/**
 * `tcp://HOST:PORT` and `tcp+lp://HOST:PORT` as a source: the engine listens, any number of
 * clients connect, and their frames merge into one stream (in arrival order per connection, and
 * interleaved between connections).
 *
 * Memory is bounded three ways: frames waiting for read() (records and bytes; past either bound
 * every socket is paused until read() drains them), the partial frame each connection may hold
 * (maxFrameBytes), and the number of connections (connectionsMax).
 *
 * TCP cannot replay, so positions only count the records delivered. They continue from
 * ctx.resumeFrom so they keep increasing across restarts: the engine drops records at or below a
 * committed position as replays, and restarting the count at zero would drop fresh records.
 */
import { createServer } from "node:net";
import type { Server, Socket } from "node:net";
import type { Payload, Source, SourceBatch, SourceContext } from "../../src/connector/types.ts";
import { ErrorCode, KeywayError, isKeywayError } from "../../src/errors.ts";
import type { Logger } from "../../src/log/logger.ts";
import { DEFAULT_MAX_FRAME_BYTES, assertMaxFrameBytes, lengthPrefixedDecoder, newlineDecoder } from "./framing.ts";
import type { FrameDecoder, Framing } from "./framing.ts";

export interface TcpSourceOptions {
  host: string;
  /** 0 picks a free port; address() tells which. */
  port: number;
  framing: Framing;
  maxFrameBytes?: number;
  /** Frames held for read() before every socket is paused; also the largest batch (plus one chunk). */
  bufferRecordsMax?: number;
  /** Bytes received and held for read() before every socket is paused. */
  bufferBytesMax?: number;
  /** Connections beyond this are refused, as each may hold a partial frame of up to maxFrameBytes. */
  connectionsMax?: number;
}

export interface TcpSource extends Source {
  /** The address actually bound, known once open() has resolved. */
  address(): { host: string; port: number };
}

export const DEFAULT_BUFFER_RECORDS_MAX = 64 * 1024;
export const DEFAULT_BUFFER_BYTES_MAX = 16 * 1024 * 1024;
export const DEFAULT_CONNECTIONS_MAX = 256;

export function tcpSource(opts: TcpSourceOptions): TcpSource {
  const settings: Settings = {
    host: opts.host,
    port: opts.port,
    framing: opts.framing,
    maxFrameBytes: opts.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
    bufferRecordsMax: opts.bufferRecordsMax ?? DEFAULT_BUFFER_RECORDS_MAX,
    bufferBytesMax: opts.bufferBytesMax ?? DEFAULT_BUFFER_BYTES_MAX,
    connectionsMax: opts.connectionsMax ?? DEFAULT_CONNECTIONS_MAX,
  };
  assertMaxFrameBytes(settings.maxFrameBytes);
  for (const key of ["bufferRecordsMax", "bufferBytesMax", "connectionsMax"] as const) {
    const value = settings[key];
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new KeywayError(ErrorCode.USAGE, `tcp source: ${key} must be a positive integer, got ${value}`);
    }
  }
  if (!Number.isSafeInteger(settings.port) || settings.port < 0 || settings.port > 65535) {
    throw new KeywayError(ErrorCode.USAGE, `tcp source: port must be 0-65535, got ${settings.port}`);
  }
  return new TcpListenSource(settings);
}

type Settings = Required<TcpSourceOptions>;

class TcpListenSource implements TcpSource {
  readonly finite = false;
  private name = "";
  private log: Logger | null = null;
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  private closed = false;
  private paused = false;
  /** Frames waiting for read(); decoders append to it directly. */
  private frames: Payload[] = [];
  /**
   * Bytes received since the last read(). It also counts framing and partial frames, so it
   * overstates what is held and the bound errs on the safe side.
   */
  private framesBytes = 0;
  private delivered = 0n;
  private waitingRead: ((batch: SourceBatch | null) => void) | null = null;

  constructor(private readonly settings: Settings) {}

  async open(ctx: SourceContext): Promise<void> {
    this.name = ctx.name;
    this.log = ctx.log;
    this.delivered = ctx.resumeFrom ?? 0n;
    const server = createServer((socket) => this.accept(socket));
    server.maxConnections = this.settings.connectionsMax;
    server.on("drop", (dropped) =>
      ctx.log.warn(
        { source: this.name, remote: `${dropped?.remoteAddress}:${dropped?.remotePort}` },
        `tcp source refused a connection: already at connectionsMax ${this.settings.connectionsMax}`,
      ),
    );
    const { host, port } = this.settings;
    await new Promise<void>((resolve, reject) => {
      const onListenError = (err: NodeJS.ErrnoException) => {
        const why = err.code === "EADDRINUSE" ? "address in use" : err.message;
        reject(
          new KeywayError(ErrorCode.PORT_IN_USE, `source "${this.name}": cannot listen on ${host}:${port}: ${why}`, {
            cause: err,
          }),
        );
      };
      server.once("error", onListenError);
      server.listen({ host, port }, () => {
        server.off("error", onListenError);
        resolve();
      });
    });
    server.on("error", (err) => ctx.log.error({ source: this.name, err }, "tcp source listener failed"));
    this.server = server;
    ctx.log.info({ source: this.name, ...this.address() }, "tcp source listening");
  }

  queuedRecords(): number {
    return this.frames.length;
  }

  address(): { host: string; port: number } {
    const bound = this.server?.address();
    if (bound === null || bound === undefined || typeof bound === "string") {
      throw new KeywayError(ErrorCode.INTERNAL, `source "${this.name}": address() while not listening`);
    }
    return { host: bound.address, port: bound.port };
  }

  read(): Promise<SourceBatch | null> {
    if (this.closed) return Promise.resolve(null);
    if (this.waitingRead !== null) {
      return Promise.reject(new KeywayError(ErrorCode.INTERNAL, `source "${this.name}": concurrent read()`));
    }
    if (this.frames.length > 0) return Promise.resolve(this.takeBatch());
    return new Promise((resolve) => {
      this.waitingRead = resolve;
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.frames = [];
    this.framesBytes = 0;
    const resolve = this.waitingRead;
    this.waitingRead = null;
    resolve?.(null);
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
    const server = this.server;
    this.server = null;
    if (server !== null) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private accept(socket: Socket): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    const remote = `${socket.remoteAddress}:${socket.remotePort}`;
    const decoder = this.newDecoder();
    this.sockets.add(socket);
    if (this.paused) socket.pause();
    this.log?.debug({ source: this.name, remote }, "tcp source connection accepted");
    socket.on("data", (chunk: Buffer) => {
      this.framesBytes += chunk.length;
      this.decode(socket, remote, () => decoder.push(chunk, this.frames));
    });
    socket.on("end", () => this.decode(socket, remote, () => decoder.end(this.frames)));
    socket.on("error", (err) => this.log?.debug({ source: this.name, remote, err }, "tcp source connection error"));
    socket.on("close", () => this.sockets.delete(socket));
  }

  /** Runs one decoder step; frames it produced before any failure are kept and delivered. */
  private decode(socket: Socket, remote: string, step: () => void): void {
    try {
      step();
    } catch (err) {
      if (!isKeywayError(err)) throw err;
      this.log?.warn(
        { source: this.name, remote, code: err.code, reason: err.message },
        "tcp source closing a connection that sent a bad frame",
      );
      socket.destroy();
    }
    if (this.frames.length === 0) return;
    const resolve = this.waitingRead;
    if (resolve !== null) {
      this.waitingRead = null;
      resolve(this.takeBatch());
    } else if (this.isFull()) {
      this.pauseAll();
    }
  }

  private takeBatch(): SourceBatch {
    const values = this.frames;
    this.frames = [];
    this.framesBytes = 0;
    this.delivered += BigInt(values.length);
    if (this.paused) this.resumeAll();
    return { values, position: this.delivered };
  }

  private isFull(): boolean {
    return this.frames.length >= this.settings.bufferRecordsMax || this.framesBytes >= this.settings.bufferBytesMax;
  }

  private pauseAll(): void {
    if (this.paused) return;
    this.paused = true;
    for (const socket of this.sockets) socket.pause();
    this.log?.debug({ source: this.name, records: this.frames.length, bytes: this.framesBytes }, "tcp source full");
  }

  private resumeAll(): void {
    this.paused = false;
    for (const socket of this.sockets) socket.resume();
  }

  private newDecoder(): FrameDecoder<Payload> {
    const { framing, maxFrameBytes } = this.settings;
    return framing === "newline" ? newlineDecoder(maxFrameBytes) : lengthPrefixedDecoder(maxFrameBytes);
  }
}
