/**
 * `ws://HOST:PORT/PATH` (and `wss://`) as a sink: a live feed. The engine listens; a client that
 * connects to PATH (a subscriber) receives every output from then on, one message per record
 * (text for a string, binary for bytes). Outputs written while nobody subscribes are dropped.
 *
 * write() never waits for a subscriber: it hands each record to every subscriber's socket and
 * returns. A subscriber whose socket, when a batch comes, has still not taken more than
 * maxLagMessages of the earlier ones (messages sent but not yet handed to the OS: the peer stopped
 * reading and the kernel's buffers are full) is dropped instead: it gets no further output, is closed with code 4000 (sent after what it was already
 * sent, so a paused subscriber that resumes reads up to the drop and then the close), its socket
 * destroyed by ws if it does not answer the close within 30 s, and counted
 * (droppedSubscribers()). So each subscriber costs at most maxLagMessages plus one batch of
 * memory, and one slow subscriber never slows the engine or the others.
 *
 * Delivery is at most once per subscriber: a subscriber sees a gap-free run of outputs from its
 * connection to its drop or disconnect, and nothing is kept for it to catch up. flush() therefore
 * waits for nobody; bufferedRecords() counts what subscribers' sockets have not taken yet.
 */
import { Buffer } from "node:buffer";
import type { WebSocket } from "ws";
import type { Payload, Sink, SinkContext } from "../../src/connector/types.ts";
import { ErrorCode, KeywayError } from "../../src/errors.ts";
import type { Logger } from "../../src/log/logger.ts";
import { listenWs, type WsListener } from "./listener.ts";
import { assertPath } from "./ws-source.ts";

export interface WsSinkOptions {
  host: string;
  /** 0 picks a free port; address() tells which. */
  port: number;
  path: string;
  /** Messages a subscriber's socket may leave untaken before the subscriber is dropped. */
  maxLagMessages?: number;
  connectionsMax?: number;
  /** Serve wss:// with this certificate and key. */
  tls?: { cert: Buffer | string; key: Buffer | string };
}

export interface WsSink extends Sink {
  address(): { host: string; port: number };
  /** Subscribers connected now. */
  subscribers(): number;
  /** Subscribers dropped for falling behind, since open(). */
  droppedSubscribers(): number;
}

export const DEFAULT_MAX_LAG_MESSAGES = 10_000;
export const DEFAULT_WS_SUBSCRIBERS_MAX = 256;
/** The close code a subscriber dropped for falling behind gets (the 4000-4999 range is for applications). */
export const CLOSE_FELL_BEHIND = 4000;
/** Subscribers send nothing the sink reads; this only bounds what one could make it buffer. */
const SUBSCRIBER_MAX_PAYLOAD = 4096;
/** How long close() lets subscribers answer its close frame before cutting them off. */
const CLOSE_GRACE_MS = 1000;

export function wsSink(opts: WsSinkOptions): WsSink {
  const settings = {
    maxLagMessages: opts.maxLagMessages ?? DEFAULT_MAX_LAG_MESSAGES,
    connectionsMax: opts.connectionsMax ?? DEFAULT_WS_SUBSCRIBERS_MAX,
  };
  for (const [key, value] of Object.entries(settings)) {
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new KeywayError(ErrorCode.USAGE, `ws sink: ${key} must be a positive integer, got ${value}`);
    }
  }
  assertPath("ws sink", opts.path);
  if (!Number.isSafeInteger(opts.port) || opts.port < 0 || opts.port > 65535) {
    throw new KeywayError(ErrorCode.USAGE, `ws sink: port must be 0-65535, got ${opts.port}`);
  }
  return new WsFeedSink({ ...opts, ...settings });
}

interface Subscriber {
  ws: WebSocket;
  remote: string;
  /** Messages given to ws.send whose callback has not run yet. */
  pending: number;
}

type Settings = WsSinkOptions & Required<Pick<WsSinkOptions, "maxLagMessages" | "connectionsMax">>;

class WsFeedSink implements WsSink {
  private name = "";
  private log: Logger | null = null;
  private listener: WsListener | null = null;
  private readonly subs = new Set<Subscriber>();
  private dropped = 0;
  private closing: Promise<void> | null = null;

  constructor(private readonly settings: Settings) {}

  async open(ctx: SinkContext): Promise<void> {
    this.name = ctx.name;
    this.log = ctx.log;
    const { host, port, path, tls, connectionsMax } = this.settings;
    this.listener = await listenWs(
      { host, port, path, maxPayload: SUBSCRIBER_MAX_PAYLOAD, connectionsMax, ...(tls === undefined ? {} : { tls }) },
      `sink "${this.name}"`,
      ctx.log,
      (ws, remote) => this.subscribe(ws, remote),
    );
    ctx.log.info({ sink: this.name, ...this.address(), path, tls: tls !== undefined }, "ws sink listening for subscribers");
  }

  address(): { host: string; port: number } {
    if (this.listener === null) throw new KeywayError(ErrorCode.INTERNAL, `sink "${this.name}": address() while not listening`);
    return this.listener.address();
  }

  subscribers(): number {
    return this.subs.size;
  }

  droppedSubscribers(): number {
    return this.dropped;
  }

  async write(values: Payload[]): Promise<void> {
    if (this.closing !== null || this.listener === null) {
      throw new KeywayError(ErrorCode.INTERNAL, `sink "${this.name}": write() on a sink that is not open`);
    }
    if (this.subs.size === 0 || values.length === 0) return;
    // Encoded once for all subscribers: ws would otherwise encode a string per send.
    const messages = values.map((v) => (typeof v === "string" ? Buffer.from(v, "utf8") : Buffer.from(v.buffer, v.byteOffset, v.byteLength)));
    const binary = values.map((v) => typeof v !== "string");
    for (const sub of [...this.subs]) this.send(sub, messages, binary);
  }

  flush(): Promise<void> {
    return Promise.resolve();
  }

  bufferedRecords(): number {
    let pending = 0;
    for (const sub of this.subs) pending += sub.pending;
    return pending;
  }

  close(): Promise<void> {
    this.closing ??= this.shutDown();
    return this.closing;
  }

  private async shutDown(): Promise<void> {
    const closes = [...this.subs].map(
      (sub) =>
        new Promise<void>((resolve) => {
          sub.ws.once("close", () => resolve());
          sub.ws.close(1001, "engine stopping");
        }),
    );
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(closes), new Promise<void>((resolve) => (timer = setTimeout(resolve, CLOSE_GRACE_MS)))]);
    clearTimeout(timer);
    for (const sub of this.subs) sub.ws.terminate();
    this.subs.clear();
    const listener = this.listener;
    this.listener = null;
    await listener?.close();
  }

  private subscribe(ws: WebSocket, remote: string): void {
    if (this.closing !== null) {
      ws.terminate();
      return;
    }
    const sub: Subscriber = { ws, remote, pending: 0 };
    this.subs.add(sub);
    this.log?.info({ sink: this.name, remote, subscribers: this.subs.size }, "ws sink subscriber connected");
    ws.on("error", (err: Error & { code?: string }) =>
      this.log?.warn({ sink: this.name, remote, code: err.code, reason: err.message }, "ws sink closing a subscriber that sent a bad frame"),
    );
    ws.on("close", () => {
      if (this.subs.delete(sub)) this.log?.info({ sink: this.name, remote, subscribers: this.subs.size }, "ws sink subscriber left");
    });
  }

  /**
   * The lag is judged before the batch, on what earlier writes left untaken: send callbacks run
   * only after the batch has been handed over, so counting within it would drop everyone.
   */
  private send(sub: Subscriber, messages: Buffer[], binary: boolean[]): void {
    if (sub.pending > this.settings.maxLagMessages) {
      this.drop(sub);
      return;
    }
    const sent = () => {
      sub.pending -= 1;
    };
    sub.pending += messages.length;
    for (let i = 0; i < messages.length; i++) sub.ws.send(messages[i]!, { binary: binary[i]! }, sent);
  }

  private drop(sub: Subscriber): void {
    this.subs.delete(sub);
    this.dropped += 1;
    this.log?.warn(
      { sink: this.name, remote: sub.remote, maxLagMessages: this.settings.maxLagMessages, droppedSubscribers: this.dropped },
      "ws sink dropping a subscriber that fell behind",
    );
    sub.ws.close(CLOSE_FELL_BEHIND, `fell behind by more than ${this.settings.maxLagMessages} messages`);
  }
}
