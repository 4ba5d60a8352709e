/**
 * `tcp://HOST:PORT` and `tcp+lp://HOST:PORT` as a sink: the engine connects out and writes each
 * batch as frames. When the peer is down or the connection drops it reconnects with exponential
 * backoff and jitter, holding a bounded buffer meanwhile; write() waits while that buffer is full.
 *
 * open() does not fail when the peer is not up yet: a sink's peer is often started after the
 * engine or restarted under it, so the sink keeps retrying (logging each attempt) instead.
 *
 * Delivery is at-most-once. A batch is dropped from the buffer once the OS has taken it (the
 * socket.write callback); bytes the kernel accepted but the peer never read are lost when the
 * connection drops. Batches the socket had not yet handed to the OS are resent on the next
 * connection. The gRPC sink protocol, with acks, is the way to get more.
 */
import { connect } from "node:net";
import type { Socket } from "node:net";
import type { Payload, Sink, SinkContext } from "../../src/connector/types.ts";
import { ErrorCode, KeywayError } from "../../src/errors.ts";
import type { Logger } from "../../src/log/logger.ts";
import { BACKOFF_DEFAULTS, backoffDelayMs } from "../../src/util/backoff.ts";
import { DEFAULT_MAX_FRAME_BYTES, assertMaxFrameBytes, encodeFrames } from "./framing.ts";
import type { Framing } from "./framing.ts";

export interface TcpSinkOptions {
  host: string;
  port: number;
  framing: Framing;
  /** A value encoding to a larger frame fails write() with FRAME_TOO_LARGE; the peer would reject it. */
  maxFrameBytes?: number;
  /** Records accepted but not yet handed to the OS, above which write() waits. */
  bufferRecordsMax?: number;
  /** Bytes accepted but not yet handed to the OS, above which write() waits. */
  bufferBytesMax?: number;
  /** The ceiling of the first reconnect delay (drawn below it, full jitter); it doubles per failed attempt up to backoffMsMax. */
  backoffMsMin?: number;
  backoffMsMax?: number;
  /** A connection attempt still pending after this long is abandoned and retried. */
  connectTimeoutMs?: number;
  /** How long close() waits for buffered records to reach the OS (reconnecting if need be) before dropping them. */
  closeTimeoutMs?: number;
}

export const DEFAULT_SINK_BUFFER_RECORDS_MAX = 64 * 1024;
export const DEFAULT_SINK_BUFFER_BYTES_MAX = 16 * 1024 * 1024;
export const DEFAULT_BACKOFF_MS_MIN = 50;
export const DEFAULT_BACKOFF_MS_MAX = 5_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
export const DEFAULT_CLOSE_TIMEOUT_MS = 5_000;
/** Lets the kernel notice a peer that vanished without closing, so a reconnect starts. */
const KEEP_ALIVE_MS = 10_000;

export function tcpSink(opts: TcpSinkOptions): Sink {
  const settings: Settings = {
    host: opts.host,
    port: opts.port,
    framing: opts.framing,
    maxFrameBytes: opts.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
    bufferRecordsMax: opts.bufferRecordsMax ?? DEFAULT_SINK_BUFFER_RECORDS_MAX,
    bufferBytesMax: opts.bufferBytesMax ?? DEFAULT_SINK_BUFFER_BYTES_MAX,
    backoffMsMin: opts.backoffMsMin ?? DEFAULT_BACKOFF_MS_MIN,
    backoffMsMax: opts.backoffMsMax ?? DEFAULT_BACKOFF_MS_MAX,
    connectTimeoutMs: opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    closeTimeoutMs: opts.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS,
  };
  assertMaxFrameBytes(settings.maxFrameBytes);
  for (const [key, value] of Object.entries(settings)) {
    if (typeof value === "number" && key !== "port" && (!Number.isSafeInteger(value) || value < 1)) {
      throw new KeywayError(ErrorCode.USAGE, `tcp sink: ${key} must be a positive integer, got ${value}`);
    }
  }
  if (!Number.isSafeInteger(settings.port) || settings.port < 1 || settings.port > 65535) {
    throw new KeywayError(ErrorCode.USAGE, `tcp sink: port must be 1-65535, got ${settings.port}`);
  }
  return new TcpConnectSink(settings);
}

type Settings = Required<TcpSinkOptions>;

/** One batch, encoded. */
interface Chunk {
  bytes: Buffer;
  records: number;
}

class TcpConnectSink implements Sink {
  private name = "";
  private log: Logger | null = null;
  private closed = false;
  private socket: Socket | null = null;
  private connected = false;
  /** Failed connection attempts since the last successful connection. */
  private failedAttempts = 0;
  private reconnectTimer: NodeJS.Timeout | null = null;
  /** Encoded batches not yet given to a socket. */
  private queued: Chunk[] = [];
  /** Given to the current socket, in order, waiting for its write callback. */
  private inFlight: Chunk[] = [];
  private recordsBuffered = 0;
  private bytesBuffered = 0;
  private roomWaiters: (() => void)[] = [];
  private flushWaiters: (() => void)[] = [];
  private closing: Promise<void> | null = null;

  constructor(private readonly settings: Settings) {}

  async open(ctx: SinkContext): Promise<void> {
    this.name = ctx.name;
    this.log = ctx.log;
    this.connect();
  }

  async write(values: Payload[]): Promise<void> {
    if (this.closing !== null || this.log === null) {
      throw new KeywayError(ErrorCode.INTERNAL, `sink "${this.name}": write() on a sink that is not open`);
    }
    if (values.length === 0) return;
    const bytes = encodeFrames(this.settings.framing, values, this.settings.maxFrameBytes);
    this.queued.push({ bytes, records: values.length });
    this.recordsBuffered += values.length;
    this.bytesBuffered += bytes.length;
    this.pump();
    if (this.hasRoom()) return;
    await new Promise<void>((resolve) => this.roomWaiters.push(resolve));
  }

  flush(): Promise<void> {
    if (this.recordsBuffered === 0 || this.closed) return Promise.resolve();
    return new Promise((resolve) => this.flushWaiters.push(resolve));
  }

  bufferedRecords(): number {
    return this.recordsBuffered;
  }

  close(): Promise<void> {
    this.closing ??= this.shutDown();
    return this.closing;
  }

  private async shutDown(): Promise<void> {
    // Waits even while disconnected: a reconnect within the timeout still delivers the rest.
    if (this.recordsBuffered > 0) await withTimeout(this.flush(), this.settings.closeTimeoutMs);
    this.closed = true;
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    if (this.recordsBuffered > 0) {
      this.log?.warn(
        { sink: this.name, peer: this.peer(), records: this.recordsBuffered },
        "tcp sink closing with records the peer never got; dropping them",
      );
    }
    this.queued = [];
    this.inFlight = [];
    this.recordsBuffered = 0;
    this.bytesBuffered = 0;
    this.releaseWaiters();
    const socket = this.socket;
    this.socket = null;
    this.connected = false;
    if (socket === null) return;
    const closedEvent = new Promise<void>((resolve) => socket.once("close", () => resolve()));
    socket.end();
    await withTimeout(closedEvent, this.settings.closeTimeoutMs);
    socket.destroy();
  }

  private connect(): void {
    this.reconnectTimer = null;
    if (this.closed) return;
    const { host, port, connectTimeoutMs } = this.settings;
    const socket = connect({ host, port });
    this.socket = socket;
    let lastError: Error | undefined;
    socket.setNoDelay(true); // batches are already coalesced; Nagle would only add latency
    socket.setTimeout(connectTimeoutMs, () => {
      if (!this.connected) socket.destroy(new Error(`connect timed out after ${connectTimeoutMs} ms`));
    });
    socket.once("connect", () => {
      if (socket !== this.socket) return; // close() gave up on this attempt
      socket.setTimeout(0);
      socket.setKeepAlive(true, KEEP_ALIVE_MS);
      // The peer sends nothing we need, but reading is how a close from its side is noticed.
      socket.resume();
      this.connected = true;
      this.log?.info(
        { sink: this.name, peer: this.peer(), failedAttempts: this.failedAttempts },
        "tcp sink connected",
      );
      this.failedAttempts = 0;
      this.pump();
    });
    socket.on("drain", () => this.pump());
    socket.on("error", (err) => {
      lastError = err;
    });
    socket.on("close", () => this.onClose(socket, lastError));
  }

  private onClose(socket: Socket, err: Error | undefined): void {
    if (socket !== this.socket) return;
    const wasConnected = this.connected;
    this.socket = null;
    this.connected = false;
    // What the socket never handed to the OS goes out again, first, on the next connection.
    this.queued = this.inFlight.concat(this.queued);
    this.inFlight = [];
    if (this.closed) {
      this.releaseWaiters();
      return;
    }
    this.failedAttempts += 1;
    const { backoffMsMin, backoffMsMax } = this.settings;
    const delayMs = backoffDelayMs({ ...BACKOFF_DEFAULTS, initialMs: backoffMsMin, maxMs: backoffMsMax }, this.failedAttempts);
    const fields = {
      sink: this.name,
      peer: this.peer(),
      attempt: this.failedAttempts,
      retryInMs: delayMs,
      bufferedRecords: this.recordsBuffered,
      err: err?.message,
    };
    if (wasConnected) this.log?.warn(fields, "tcp sink lost its connection; reconnecting");
    else if (this.failedAttempts === 1) this.log?.warn(fields, "tcp sink cannot connect; retrying");
    else this.log?.debug(fields, "tcp sink connection attempt failed; retrying");
    this.reconnectTimer = setTimeout(() => this.connect(), delayMs);
  }

  /** Hands queued batches to the socket until it asks us to wait for 'drain'. */
  private pump(): void {
    const socket = this.socket;
    if (!this.connected || socket === null) return;
    while (this.queued.length > 0 && !socket.writableNeedDrain) {
      const chunk = this.queued.shift()!;
      this.inFlight.push(chunk);
      socket.write(chunk.bytes, (err) => {
        // A failed write is requeued by onClose, which always follows.
        if (err || socket !== this.socket) return;
        this.onWritten();
      });
    }
  }

  /** Write callbacks run in order, so the oldest chunk in flight is the one written. */
  private onWritten(): void {
    const chunk = this.inFlight.shift();
    if (chunk === undefined) {
      throw new KeywayError(ErrorCode.INTERNAL, `sink "${this.name}": write callback with nothing in flight`);
    }
    this.recordsBuffered -= chunk.records;
    this.bytesBuffered -= chunk.bytes.length;
    if (this.hasRoom()) resolveAll(this.roomWaiters.splice(0));
    if (this.recordsBuffered === 0) resolveAll(this.flushWaiters.splice(0));
  }

  private hasRoom(): boolean {
    return this.recordsBuffered < this.settings.bufferRecordsMax && this.bytesBuffered < this.settings.bufferBytesMax;
  }

  private releaseWaiters(): void {
    resolveAll(this.roomWaiters.splice(0));
    resolveAll(this.flushWaiters.splice(0));
  }

  private peer(): string {
    return `${this.settings.host}:${this.settings.port}`;
  }
}

function resolveAll(waiters: (() => void)[]): void {
  for (const resolve of waiters) resolve();
}

async function withTimeout(promise: Promise<void>, timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, timeoutMs);
  });
  try {
    await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
