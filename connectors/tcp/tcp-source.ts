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
import { FrameQueue } from "../frame-queue.ts";
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
  private closed = false;
  private readonly queue: FrameQueue<Socket>;

  constructor(private readonly settings: Settings) {
    this.queue = new FrameQueue(settings, "tcp");
  }

  async open(ctx: SourceContext): Promise<void> {
    this.name = ctx.name;
    this.log = ctx.log;
    this.queue.open(ctx.name, ctx.log, ctx.resumeFrom);
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
    return this.queue.queuedRecords();
  }

  address(): { host: string; port: number } {
    const bound = this.server?.address();
    if (bound === null || bound === undefined || typeof bound === "string") {
      throw new KeywayError(ErrorCode.INTERNAL, `source "${this.name}": address() while not listening`);
    }
    return { host: bound.address, port: bound.port };
  }

  read(maxRecords?: number): Promise<SourceBatch | null> {
    return this.queue.read(maxRecords);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const socket of this.queue.close()) socket.destroy();
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
    this.queue.add(socket);
    this.log?.debug({ source: this.name, remote }, "tcp source connection accepted");
    socket.on("data", (chunk: Buffer) => {
      this.queue.received(chunk.length);
      this.decode(socket, remote, () => decoder.push(chunk, this.queue.frames));
    });
    socket.on("end", () => this.decode(socket, remote, () => decoder.end(this.queue.frames)));
    socket.on("error", (err) => this.log?.debug({ source: this.name, remote, err }, "tcp source connection error"));
    socket.on("close", () => this.queue.remove(socket));
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
    this.queue.arrived();
  }

  private newDecoder(): FrameDecoder<Payload> {
    const { framing, maxFrameBytes } = this.settings;
    return framing === "newline" ? newlineDecoder(maxFrameBytes) : lengthPrefixedDecoder(maxFrameBytes);
  }
}
