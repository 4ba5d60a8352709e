/**
 * The source role, push style: `connectSource()` attaches to the engine, `send()` hands it one
 * record at a time, and the client does the protocol's work (protocol §7):
 * - positions: the caller's (a replayable upstream: a file offset, a Kafka offset + 1), or
 *   numbered per stream from the engine's resume_after + 1 (a queue);
 * - credits: never more records in flight than the engine granted;
 * - batching: up to `batchRecords` records a message, a partial batch waiting at most `lingerMs`;
 * - a replay buffer of every record not yet committed, resent with its original position after a
 *   reconnect; bounded by records and bytes, and send() waits while it is full (backpressure);
 * - `onCommitted`: the point where a connector may acknowledge its upstream.
 */
import { Buffer } from "node:buffer";
import { create } from "@bufbuild/protobuf";
import type { Payload } from "../connector/types.ts";
import type { Logger } from "../log/logger.ts";
import {
  EndStreamSchema,
  ErrorCode,
  OpenStreamSchema,
  RecordBatchSchema,
  SourceRequestSchema,
  type Hello,
  type Record as WireRecord,
  type SourceRequest,
  type SourceResponse,
  type Welcome,
} from "../protocol/gen/keyway/v1/connector_pb.ts";
import { NO_HEADERS } from "../protocol/wire/proto-wire.ts";
import { Fifo } from "../util/fifo.ts";
import { deferred, type Deferred } from "../util/deferred.ts";
import { ConnectorError, GrpcStatus } from "./errors.ts";
import {
  positiveInteger,
  resolveConnectOptions,
  SessionLoop,
  withTimeout,
  type ConnectOptions,
  type RoleHandler,
  type Session,
} from "./session.ts";

export interface SourceOptions extends ConnectOptions {
  /** Records per RecordBatch message (capped by the engine's max_batch_records). */
  batchRecords?: number;
  /** How long a partial batch waits for more records before it is sent anyway; 0: until the event loop's current turn ends. */
  lingerMs?: number;
  /** Records sent or waiting to be sent and not yet committed, across streams, before send() waits. */
  replayBufferRecordsMax?: number;
  /** The same bound in value bytes (plus keys, headers and ids). */
  replayBufferBytesMax?: number;
  /** send() calls not yet accepted (the caller did not await them) before send() throws. */
  waitingSendsMax?: number;
}

export const BATCH_RECORDS_DEFAULT = 100;
export const LINGER_MS_DEFAULT = 5;
/** About a second of input at the rates measured here, so a --data-dir checkpoint interval fits. */
export const REPLAY_BUFFER_RECORDS_MAX_DEFAULT = 200_000;
export const REPLAY_BUFFER_BYTES_MAX_DEFAULT = 64 * 1024 * 1024;
export const WAITING_SENDS_MAX_DEFAULT = 10_000;
/** What close() waits by default for the engine to commit what was sent. */
export const DRAIN_TIMEOUT_MS_DEFAULT = 10_000;

export interface SendOptions {
  /**
   * The record's position, for upstreams that can replay by position. Must increase per stream.
   * A position at or below the stream's resume_after is a replay: it is dropped here, unsent.
   * Absent: the client numbers the record after the stream's highest position so far.
   */
  position?: bigint;
  /** A stable id; the engine drops a record whose id it applied recently (protocol §7.6). */
  idempotencyId?: string;
  key?: Payload;
  headers?: Record<string, string>;
  /** Event time in milliseconds since the Unix epoch. */
  eventTimeMs?: number;
}

/** Where the engine stands on a stream, from its StreamOpened. */
export interface StreamResume {
  /** The last position the engine applied: send records after it. 0n for none. */
  resumeAfter: bigint;
  /** The last position the engine made durable. 0n for none. */
  committed: bigint;
}

export type CommitListener = (stream: string, position: bigint) => void;

export interface SourceClient {
  /**
   * Opens a stream (once per client; it is reopened by itself after every reconnect) and
   * resolves with the engine's resume point from the first session that opened it.
   */
  open(stream: string): Promise<StreamResume>;
  /**
   * Queues one record and resolves with its position once the replay buffer has taken it;
   * waits while the buffer is full. Opens the stream first if need be. Await each call: calls
   * left waiting beyond `waitingSendsMax` throw.
   */
  send(stream: string, value: Payload, options?: SendOptions): Promise<bigint>;
  /** Called when records up to a position are durable in the engine; returns an unsubscribe. */
  onCommitted(listener: CommitListener): () => void;
  /**
   * No more records on this stream: sends EndStream once all its records are sent, and resolves
   * with the stream's last position once the engine has committed everything (StreamEnded).
   */
  end(stream: string): Promise<bigint>;
  /** Records in the replay buffer: sent or waiting to be sent, not yet committed. */
  bufferedRecords(): number;
  /**
   * Stops sending and waits, up to drainTimeoutMs, for the engine to commit what was sent; then
   * ends the session. Records still uncommitted are not acknowledged upstream (replayed next time).
   */
  close(options?: { drainTimeoutMs?: number }): Promise<void>;
  /** Settles when the client has closed; rejects with a ConnectorError on a configuration error. */
  readonly done: Promise<void>;
}

/** Attaches a source and resolves once the engine has welcomed it (retrying until it does). */
export async function connectSource(options: SourceOptions): Promise<SourceClient> {
  const { client, welcomed } = startSourceClient(options);
  await welcomed;
  return client;
}

/**
 * The client at once, and a promise of its first Welcome, which rejects if the client closes or
 * fails first. For callers that must be able to close it while it is still dialling.
 */
export function startSourceClient(options: SourceOptions): { client: SourceClient; welcomed: Promise<void> } {
  const client = new SourceConnection(options);
  return { client, welcomed: client.welcomedOnce };
}

/** A record in the replay buffer. */
interface Buffered {
  position: bigint;
  record: WireRecord;
  /** Its share of a message, for the byte bound and for cutting batches under max_message_bytes. */
  bytes: number;
}

interface StreamState {
  readonly name: string;
  readonly records: Fifo<Buffered>;
  /** Records at the front of `records` that this session has sent, or that the engine has applied. */
  sent: number;
  /** The highest position given to a record, or reported applied by the engine. */
  lastPosition: bigint;
  committed: bigint;
  /** The engine's resume point in the current or last session; undefined until first opened. */
  resume: StreamResume | undefined;
  state: "closed" | "opening" | "open";
  /** Waiting for the first StreamOpened. */
  readonly opened: Deferred<StreamResume>;
  end: Deferred<bigint> | undefined;
  endSent: boolean;
  endedAt: bigint | undefined;
}

interface WaitingSend {
  stream: string;
  value: Payload;
  options: SendOptions | undefined;
  resolve(position: bigint): void;
  reject(err: unknown): void;
}

/** Field tags, lengths and the position varint of one encoded Record, at most. */
const RECORD_OVERHEAD_BYTES = 32;
/** The RecordBatch and SourceRequest framing around the records, plus the stream name's slack. */
const BATCH_OVERHEAD_BYTES = 64;
const MAX_MESSAGE_BYTES_FALLBACK = 16 * 1024 * 1024;

class SourceConnection implements SourceClient, RoleHandler<SourceRequest, SourceResponse> {
  readonly done: Promise<void>;
  readonly welcomedOnce: Promise<void>;
  private readonly firstWelcome = deferred<void>();
  private readonly log: Logger;
  private readonly loop: SessionLoop<SourceRequest, SourceResponse>;
  private readonly batchRecords: number;
  private readonly lingerMs: number;
  private readonly bufferRecordsMax: number;
  private readonly bufferBytesMax: number;
  private readonly waitingSendsMax: number;
  private readonly streams = new Map<string, StreamState>();
  /** The streams in opening order, served round-robin from `nextStream`. */
  private readonly streamOrder: StreamState[] = [];
  private nextStream = 0;
  private readonly waiting = new Fifo<WaitingSend>();
  private readonly listeners = new Set<CommitListener>();
  private readonly drained: Array<() => void> = [];
  private session: Session<SourceRequest> | null = null;
  private credits = 0;
  private maxBatchRecords = Infinity;
  private maxMessageBytes = MAX_MESSAGE_BYTES_FALLBACK;
  private recordsBuffered = 0;
  private bytesBuffered = 0;
  private lingerTimer: NodeJS.Timeout | NodeJS.Immediate | null = null;
  private closing: Promise<void> | null = null;
  private failure: unknown;

  constructor(options: SourceOptions) {
    const resolved = resolveConnectOptions(options);
    this.log = resolved.log;
    this.batchRecords = positiveInteger("batchRecords", options.batchRecords ?? BATCH_RECORDS_DEFAULT);
    this.lingerMs = options.lingerMs ?? LINGER_MS_DEFAULT;
    if (!(this.lingerMs >= 0)) throw new RangeError(`lingerMs must not be negative, got ${this.lingerMs}`);
    this.bufferRecordsMax = positiveInteger("replayBufferRecordsMax", options.replayBufferRecordsMax ?? REPLAY_BUFFER_RECORDS_MAX_DEFAULT);
    this.bufferBytesMax = positiveInteger("replayBufferBytesMax", options.replayBufferBytesMax ?? REPLAY_BUFFER_BYTES_MAX_DEFAULT);
    this.waitingSendsMax = positiveInteger("waitingSendsMax", options.waitingSendsMax ?? WAITING_SENDS_MAX_DEFAULT);
    this.loop = new SessionLoop(resolved, "Source", this);
    this.done = this.loop.done;
    // Whatever still waits on a closed client would wait forever: it fails instead.
    this.done.then(
      () => this.failAll(new Error("the source client is closed")),
      (err: unknown) => this.failAll(err),
    );
    this.welcomedOnce = Promise.race([
      this.firstWelcome.promise,
      this.done.then(() => {
        throw new Error("the source client closed before the engine welcomed it");
      }),
    ]);
    const signal = resolved.signal;
    if (signal !== undefined) {
      if (signal.aborted) void this.close();
      else signal.addEventListener("abort", () => void this.close(), { once: true });
    }
  }

  // ---- public API ----

  open(stream: string): Promise<StreamResume> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    return this.register(stream).opened.promise;
  }

  send(stream: string, value: Payload, options?: SendOptions): Promise<bigint> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.closing !== null) return Promise.reject(new Error(`send on stream "${stream}" after close()`));
    const state = this.register(stream);
    // Records are taken while disconnected too (the stream has a resume point from an earlier
    // session): the replay buffer holds them until the next session, within its bounds. This
    // assumes one instance per stream, as STREAM_BUSY enforces among live sessions.
    if (this.waiting.length === 0 && state.resume !== undefined && this.hasRoom()) {
      try {
        return Promise.resolve(this.accept(state, value, options));
      } catch (err) {
        return Promise.reject(err);
      }
    }
    if (this.waiting.length >= this.waitingSendsMax) {
      return Promise.reject(
        new RangeError(`${this.waiting.length} send() calls are already waiting (waitingSendsMax); await each send`),
      );
    }
    return new Promise((resolve, reject) => this.waiting.push({ stream, value, options, resolve, reject }));
  }

  onCommitted(listener: CommitListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  end(stream: string): Promise<bigint> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    const state = this.register(stream);
    if (state.end === undefined) {
      state.end = deferred<bigint>();
      this.pump(true);
    }
    return state.end.promise;
  }

  bufferedRecords(): number {
    return this.recordsBuffered;
  }

  close(options: { drainTimeoutMs?: number } = {}): Promise<void> {
    this.closing ??= this.shutDown(options.drainTimeoutMs ?? DRAIN_TIMEOUT_MS_DEFAULT);
    return this.closing;
  }

  // ---- RoleHandler: called by the session loop ----

  hello(hello: Hello): SourceRequest {
    return create(SourceRequestSchema, { kind: { case: "hello", value: hello } });
  }

  welcomed(session: Session<SourceRequest>, welcome: Welcome): void {
    this.session = session;
    this.credits = welcome.initialCredits;
    this.maxBatchRecords = welcome.limits?.maxBatchRecords || Infinity;
    this.maxMessageBytes = welcome.limits?.maxMessageBytes || MAX_MESSAGE_BYTES_FALLBACK;
    for (const state of this.streamOrder) {
      if (state.endedAt === undefined) this.sendOpen(state);
    }
    this.firstWelcome.resolve();
  }

  message(session: Session<SourceRequest>, response: SourceResponse): void {
    const kind = response.kind;
    switch (kind.case) {
      case "credits":
        this.credits += kind.value.records;
        this.pump(false);
        return;
      case "opened":
        this.onOpened(kind.value.stream, kind.value.resumeAfter, kind.value.committed);
        return;
      case "committed": {
        const state = this.streams.get(kind.value.stream);
        if (state === undefined) return session.cancel(`the engine committed unknown stream "${kind.value.stream}"`);
        this.commitUpTo(state, kind.value.position);
        return;
      }
      case "ended":
        this.onEnded(kind.value.stream, kind.value.position);
        return;
    }
  }

  ended(): void {
    this.session = null;
    this.credits = 0;
    this.cancelLinger();
    // R-RECONNECT-FRESH: the next session reopens every stream and resends from its resume point.
    for (const state of this.streamOrder) {
      state.state = "closed";
      state.sent = 0;
      state.endSent = false;
    }
  }

  // ---- internals ----

  private register(stream: string): StreamState {
    let state = this.streams.get(stream);
    if (state !== undefined) return state;
    if (stream === "") throw new RangeError("a stream name must not be empty");
    state = {
      name: stream,
      records: new Fifo(),
      sent: 0,
      lastPosition: 0n,
      committed: 0n,
      resume: undefined,
      state: "closed",
      opened: deferred(),
      end: undefined,
      endSent: false,
      endedAt: undefined,
    };
    this.streams.set(stream, state);
    this.streamOrder.push(state);
    if (this.session !== null) this.sendOpen(state);
    return state;
  }

  private sendOpen(state: StreamState): void {
    state.state = "opening";
    this.session!.write(create(SourceRequestSchema, { kind: { case: "open", value: create(OpenStreamSchema, { stream: state.name }) } }));
  }

  private onOpened(stream: string, resumeAfter: bigint, committed: bigint): void {
    const state = this.streams.get(stream);
    if (state === undefined || state.state !== "opening") {
      this.session?.cancel(`the engine opened stream "${stream}", which this session did not ask to open`);
      return;
    }
    if (resumeAfter < state.committed) {
      // A cluster worker that died may have committed past what the next one knows (protocol §13.4);
      // an engine restarted without --data-dir also goes below, having lost those records.
      this.log.info(
        { stream, resumeAfter: resumeAfter.toString(), committed: state.committed.toString() },
        "the engine resumes below a position it reported committed (a cluster worker died, or the engine restarted without its state): records after the committed position are sent again",
      );
    }
    state.state = "open";
    state.resume = { resumeAfter, committed };
    if (resumeAfter > state.lastPosition) state.lastPosition = resumeAfter;
    this.commitUpTo(state, committed);
    // Records at or below resume_after are applied: they are not resent, but stay until committed.
    let applied = 0;
    while (applied < state.records.length && state.records.at(applied).position <= resumeAfter) applied++;
    state.sent = applied;
    state.opened.resolve(state.resume);
    this.acceptWaiting();
    this.pump(false);
  }

  private commitUpTo(state: StreamState, position: bigint): void {
    if (position <= state.committed) return;
    state.committed = position;
    let removed = 0;
    for (let head = state.records.peek(); head !== undefined && head.position <= position; head = state.records.peek()) {
      state.records.shift();
      this.recordsBuffered--;
      this.bytesBuffered -= head.bytes;
      removed++;
    }
    state.sent = Math.max(0, state.sent - removed);
    for (const listener of this.listeners) listener(state.name, position);
    if (this.recordsBuffered === 0) for (const resolve of this.drained.splice(0)) resolve();
    this.acceptWaiting();
  }

  private onEnded(stream: string, position: bigint): void {
    const state = this.streams.get(stream);
    if (state?.end === undefined) {
      this.session?.cancel(`the engine ended stream "${stream}", which this client did not end`);
      return;
    }
    this.commitUpTo(state, position);
    state.endedAt = position;
    state.end.resolve(position);
  }

  private hasRoom(): boolean {
    return this.recordsBuffered < this.bufferRecordsMax && this.bytesBuffered < this.bufferBytesMax;
  }

  /** Takes waiting sends in call order while there is room and their stream's resume point is known. */
  private acceptWaiting(): void {
    for (let next = this.waiting.peek(); next !== undefined; next = this.waiting.peek()) {
      const state = this.streams.get(next.stream)!;
      if (state.resume === undefined || !this.hasRoom()) return;
      this.waiting.shift();
      try {
        next.resolve(this.accept(state, next.value, next.options));
      } catch (err) {
        next.reject(err);
      }
    }
  }

  /** Puts one record in the replay buffer; returns its position. */
  private accept(state: StreamState, value: Payload, options: SendOptions | undefined): bigint {
    if (state.end !== undefined) throw new Error(`send on stream "${state.name}" after end()`);
    let position: bigint;
    if (options?.position === undefined) {
      position = state.lastPosition + 1n;
    } else {
      position = options.position;
      if (position < 1n) throw new RangeError(`stream "${state.name}": positions start at 1, got ${position}`);
      // A replay of what the engine already applied: it would drop it, so do not spend a credit.
      if (position <= state.resume!.resumeAfter) return position;
      if (position <= state.lastPosition) {
        throw new RangeError(`stream "${state.name}": position ${position} does not increase past ${state.lastPosition}`);
      }
    }
    // A plain object of the message's shape: protobuf-es's create() costs more than the encoding.
    const record: WireRecord = {
      $typeName: "keyway.v1.Record",
      position,
      key: undefined,
      value: toBytes(value),
      eventTimeMs: options?.eventTimeMs === undefined ? 0n : BigInt(Math.trunc(options.eventTimeMs)),
      headers: NO_HEADERS,
      idempotencyId: options?.idempotencyId ?? "",
    };
    let bytes = RECORD_OVERHEAD_BYTES + record.value.length + record.idempotencyId.length;
    if (options?.key !== undefined) {
      record.key = toBytes(options.key);
      bytes += record.key.length;
    }
    if (options?.headers !== undefined) {
      record.headers = {};
      for (const [name, text] of Object.entries(options.headers)) {
        record.headers[name] = text;
        bytes += name.length + text.length + RECORD_OVERHEAD_BYTES;
      }
    }
    if (bytes + BATCH_OVERHEAD_BYTES + state.name.length > this.maxMessageBytes) {
      // Protocol §11: a record over the limit cannot be sent; the connector must deal with it.
      throw new ConnectorError(
        ErrorCode.BATCH_TOO_LARGE,
        GrpcStatus.RESOURCE_EXHAUSTED,
        `stream "${state.name}": a record of about ${bytes} bytes exceeds the engine's max_message_bytes ${this.maxMessageBytes}`,
      );
    }
    state.records.push({ position, record, bytes });
    state.lastPosition = position;
    this.recordsBuffered++;
    this.bytesBuffered += bytes;
    if (state.records.length - state.sent >= this.batchRecords) this.pump(false);
    else this.armLinger();
    return position;
  }

  private armLinger(): void {
    if (this.lingerTimer !== null || this.session === null) return;
    const flush = () => {
      this.lingerTimer = null;
      this.pump(true);
    };
    // No linger: the records of this turn of the event loop leave together, without a timer's >= 1 ms.
    this.lingerTimer = this.lingerMs === 0 ? setImmediate(flush) : setTimeout(flush, this.lingerMs);
  }

  private cancelLinger(): void {
    if (this.lingerTimer === null) return;
    if (this.lingerMs === 0) clearImmediate(this.lingerTimer as NodeJS.Immediate);
    else clearTimeout(this.lingerTimer as NodeJS.Timeout);
    this.lingerTimer = null;
  }

  /**
   * Sends what credits allow, a batch per stream in turn. Full batches go at once; partial ones
   * only when `flushPartial` (the linger time passed, or a stream is ending).
   */
  private pump(flushPartial: boolean): void {
    const session = this.session;
    if (session === null || !session.live) return;
    const batchMax = Math.min(this.batchRecords, this.maxBatchRecords);
    let partialLeft = false;
    let progressed = true;
    while (progressed && this.credits > 0) {
      progressed = false;
      for (let i = 0; i < this.streamOrder.length && this.credits > 0; i++) {
        const state = this.streamOrder[(this.nextStream + i) % this.streamOrder.length]!;
        if (state.state !== "open") continue;
        const unsent = state.records.length - state.sent;
        if (unsent === 0) {
          this.sendEndIfDue(session, state);
          continue;
        }
        if (unsent < batchMax && !flushPartial && state.end === undefined) {
          partialLeft = true;
          continue;
        }
        this.sendBatch(session, state, Math.min(unsent, batchMax, this.credits));
        this.nextStream = (this.nextStream + i + 1) % this.streamOrder.length;
        progressed = true;
        if (state.records.length === state.sent) this.sendEndIfDue(session, state);
      }
    }
    if (partialLeft && this.credits > 0) this.armLinger();
  }

  private sendBatch(session: Session<SourceRequest>, state: StreamState, recordsMax: number): void {
    const records: WireRecord[] = [];
    let bytes = BATCH_OVERHEAD_BYTES + state.name.length;
    while (records.length < recordsMax) {
      const next = state.records.at(state.sent + records.length);
      if (records.length > 0 && bytes + next.bytes > this.maxMessageBytes) break;
      bytes += next.bytes;
      records.push(next.record);
    }
    session.write(create(SourceRequestSchema, { kind: { case: "batch", value: create(RecordBatchSchema, { stream: state.name, records }) } }));
    state.sent += records.length;
    this.credits -= records.length;
  }

  private sendEndIfDue(session: Session<SourceRequest>, state: StreamState): void {
    if (state.end === undefined || state.endSent || state.endedAt !== undefined) return;
    state.endSent = true;
    session.write(create(SourceRequestSchema, { kind: { case: "end", value: create(EndStreamSchema, { stream: state.name }) } }));
  }

  private async shutDown(drainTimeoutMs: number): Promise<void> {
    for (let next = this.waiting.shift(); next !== undefined; next = this.waiting.shift()) {
      next.reject(new Error(`send on stream "${next.stream}" abandoned by close()`));
    }
    if (this.recordsBuffered > 0 && this.failure === undefined) {
      this.pump(true);
      await withTimeout(new Promise<void>((resolve) => this.drained.push(resolve)), drainTimeoutMs);
    }
    if (this.recordsBuffered > 0) {
      this.log.warn({ records: this.recordsBuffered }, "closing with records the engine has not committed; they are not acknowledged upstream");
    }
    // Everything settled: end the session politely. Otherwise cancel it; the engine keeps what it took.
    this.loop.stop(this.recordsBuffered === 0 ? "half-close" : "cancel");
    await this.done;
  }

  private failAll(err: unknown): void {
    this.failure = err;
    for (let next = this.waiting.shift(); next !== undefined; next = this.waiting.shift()) next.reject(err);
    for (const state of this.streamOrder) {
      state.opened.reject(err);
      state.end?.reject(err);
    }
    this.firstWelcome.reject(err);
    for (const resolve of this.drained.splice(0)) resolve();
  }
}

function toBytes(value: Payload): Uint8Array {
  if (typeof value === "string") return Buffer.from(value, "utf8");
  if (value instanceof Uint8Array) return value;
  throw new TypeError(`a record value or key must be a string or a Uint8Array, got ${typeof value}`);
}
