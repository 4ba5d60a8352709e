/**
 * The engine-side Source for an app source bound to `connector`: records from any number of
 * source sessions queue here in arrival order, and read() hands them to the pipeline. Per named
 * stream it tracks four positions, which only ever grow and always satisfy
 * committed <= handed <= accepted:
 *   accepted  the last position queued (resume_after; a record at or below it is a replay)
 *   handed    the last position read() has passed on (what checkpoint() records)
 *   lastValue the last position passed on with a value (drops carry none)
 *   committed the last position reported in Committed
 * The queue holds at most the credits granted to live and recently ended sessions: a session
 * never has more queued plus unspent credits than its credit window.
 */
import type { Source, SourceBatch, SourceContext } from "../../connector/types.ts";
import { ErrorCode as KeywayCode, KeywayError } from "../../errors.ts";
import { ErrorCode, type Record as WireRecord } from "../gen/keyway/v1/connector_pb.ts";
import { STREAMS_PER_SOURCE_MAX, type ProtocolLimits } from "../limits.ts";
import { Fifo } from "../../util/fifo.ts";
import { ProtocolError } from "../protocol-error.ts";
import { Signal } from "../signal.ts";
import { IdempotencyWindow } from "./idempotency-window.ts";
import { parseProgress, type SourceProgress } from "./progress.ts";

/** What the source needs of a session to talk back to its connector. */
export interface SourceSessionPort {
  readonly ended: boolean;
  /** Returns credits for records the pipeline has taken. */
  grant(records: number): void;
  committed(stream: string, position: bigint): void;
  streamEnded(stream: string, position: bigint): void;
}

interface StreamState {
  readonly name: string;
  /** The session the stream is open on, if any. */
  session: SourceSessionPort | undefined;
  accepted: bigint;
  handed: bigint;
  lastValue: bigint;
  committed: bigint;
  /** Set by EndStream: StreamEnded is sent once committed reaches it. */
  endAt: bigint | undefined;
  /** In a cluster: given up to another worker; opening it again here needs a new claim. */
  released: boolean;
}

/** What a stream's open asks of a cluster: whether it may open here, and where it resumes. */
export type StreamClaim = (stream: string) => Promise<{ granted: boolean; resumeAfter: bigint }>;

export interface OpenedAt {
  resumeAfter: bigint;
  committed: bigint;
}

interface QueuedRecord {
  stream: StreamState;
  position: bigint;
  /** Absent for a duplicate (its idempotency id was applied): it only moves the stream's position. */
  value: Uint8Array | undefined;
  /** The idempotency id that entered the window with this record; "" when none did. */
  windowedId: string;
  session: SourceSessionPort;
}

export class ConnectorSource implements Source {
  readonly finite = false;
  readonly name: string;
  private readonly limits: ProtocolLimits;
  private readonly streams = new Map<string, StreamState>();
  private readonly queue = new Fifo<QueuedRecord>();
  private readonly arrived = new Signal();
  private readonly window: IdempotencyWindow;
  private batchesRead = 0n;
  private closed = false;
  private claim: StreamClaim | undefined;
  /** Notified whenever a stream's committed position moves, or the source closes. */
  private readonly settled = new Signal();
  private markOpened!: () => void;
  /** Resolves once the engine has opened the source (restoring a checkpoint): sessions wait for it. */
  readonly opened: Promise<void> = new Promise((resolve) => (this.markOpened = resolve));

  constructor(name: string, limits: ProtocolLimits) {
    this.name = name;
    this.limits = limits;
    this.window = new IdempotencyWindow(limits.idempotencyWindow);
  }

  // ---- the engine's side ----

  async open(ctx: SourceContext): Promise<void> {
    if (ctx.resumeState !== undefined) {
      const progress = parseProgress(this.name, ctx.resumeState);
      for (const [name, position] of Object.entries(progress.streams)) {
        const stream = this.stream(name);
        stream.accepted = stream.handed = stream.lastValue = stream.committed = position;
      }
      this.window.restore(progress.idempotencyIds);
      ctx.log.info({ streams: this.streams.size }, "connector source restored");
    }
    this.markOpened();
  }

  async read(): Promise<SourceBatch | null> {
    for (;;) {
      if (this.closed) return null;
      if (this.queue.length === 0) {
        await this.arrived.wait();
        continue;
      }
      // Undefined when the records taken were all duplicates: take more.
      const batch = this.take();
      if (batch !== undefined) return batch;
    }
  }

  checkpoint(): SourceProgress {
    const handed = [...this.streams.values()].filter((s) => s.handed > 0n);
    return {
      streams: Object.fromEntries(handed.map((s) => [s.name, s.handed])),
      idempotencyIds: this.window.checkpointChunks(),
    };
  }

  commit(upTo: unknown): void {
    const progress = parseProgress(this.name, upTo);
    for (const [name, position] of Object.entries(progress.streams)) {
      const stream = this.streams.get(name);
      if (stream === undefined) throw new KeywayError(KeywayCode.INTERNAL, `commit names stream "${name}", unknown to source "${this.name}"`);
      this.settle(stream, position);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.arrived.notify();
    this.settled.notify();
  }

  // ---- the sessions' side ----

  /** In a cluster: a stream not held here opens only once the cluster grants it. */
  setStreamClaim(claim: StreamClaim): void {
    this.claim = claim;
  }

  /**
   * Gives a stream up to another worker once every record accepted here is committed; refused
   * (false) while a live session has it open. Returns the position it stands at.
   */
  async releaseStream(name: string): Promise<{ released: boolean; position: bigint }> {
    const stream = this.streams.get(name);
    if (stream === undefined) return { released: true, position: 0n };
    for (;;) {
      if (stream.session !== undefined && !stream.session.ended) return { released: false, position: stream.accepted };
      if (stream.committed >= stream.accepted || this.closed) break;
      await this.settled.wait();
    }
    stream.released = true;
    return { released: true, position: stream.accepted };
  }

  /** Opens a stream on a session; returns where the connector resumes (after a cluster's claim when it needs one). */
  openStream(name: string, session: SourceSessionPort): OpenedAt | Promise<OpenedAt> {
    const known = this.streams.get(name);
    if (this.claim === undefined || (known !== undefined && !known.released)) return this.openHere(name, session);
    return this.claim(name).then(({ granted, resumeAfter }) => {
      if (!granted) throw new ProtocolError(ErrorCode.STREAM_BUSY, `stream "${name}" of source "${this.name}" is open on a session of another worker`);
      const stream = this.streams.get(name) ?? this.stream(name);
      stream.released = false;
      // Records up to resumeAfter were applied and committed on the worker that held the stream.
      if (resumeAfter > stream.accepted) stream.accepted = stream.handed = stream.lastValue = stream.committed = resumeAfter;
      return this.openHere(name, session);
    });
  }

  private openHere(name: string, session: SourceSessionPort): OpenedAt {
    const existing = this.streams.get(name);
    if (existing?.session !== undefined && !existing.session.ended) {
      throw new ProtocolError(ErrorCode.STREAM_BUSY, `stream "${name}" of source "${this.name}" is open on another session`);
    }
    if (existing === undefined && this.streams.size >= STREAMS_PER_SOURCE_MAX) {
      throw new ProtocolError(
        ErrorCode.PROTOCOL_VIOLATION,
        `source "${this.name}" already has ${STREAMS_PER_SOURCE_MAX} streams, the most the engine tracks`,
      );
    }
    const stream = existing ?? this.stream(name);
    stream.session = session;
    stream.endAt = undefined;
    return { resumeAfter: stream.accepted, committed: stream.committed };
  }

  /**
   * Queues a batch the session has validated (open stream, credits, increasing positions).
   * Returns how many records were replays (at or below the accepted position): they are not
   * queued, so their credits go straight back.
   */
  accept(session: SourceSessionPort, name: string, records: readonly WireRecord[]): number {
    const stream = this.streams.get(name)!;
    let replays = 0;
    for (const record of records) {
      if (record.position <= stream.accepted) {
        replays++;
        continue;
      }
      stream.accepted = record.position;
      const id = record.idempotencyId;
      const duplicate = id !== "" && this.window.has(id);
      if (id !== "" && !duplicate) this.window.accept(id);
      this.queue.push({
        stream,
        position: record.position,
        value: duplicate ? undefined : record.value,
        windowedId: duplicate ? "" : id,
        session,
      });
    }
    if (replays < records.length) this.arrived.notify();
    return replays;
  }

  /** No more records on the stream: StreamEnded follows once everything accepted is committed. */
  endStream(name: string): void {
    const stream = this.streams.get(name)!;
    stream.endAt = stream.accepted;
    this.settle(stream, 0n);
  }

  /** The session ended: its streams close. Records it sent stay queued and are processed. */
  detach(session: SourceSessionPort, streamNames: Iterable<string>): void {
    for (const name of streamNames) {
      const stream = this.streams.get(name)!;
      if (stream.session !== session) continue;
      stream.session = undefined;
      stream.endAt = undefined;
    }
  }

  private stream(name: string): StreamState {
    const stream: StreamState = { name, session: undefined, accepted: 0n, handed: 0n, lastValue: 0n, committed: 0n, endAt: undefined, released: false };
    this.streams.set(name, stream);
    return stream;
  }

  /** Up to maxBatchRecords queued records as a batch; undefined when none of them had a value. */
  private take(): SourceBatch | undefined {
    const values: Uint8Array[] = [];
    const recordIds: string[] = [];
    const upstreams: string[] = [];
    const seqs: number[] = [];
    const credits = new Map<SourceSessionPort, number>();
    const passedDrops = new Set<StreamState>();
    for (let taken = 0; taken < this.limits.maxBatchRecords && this.queue.length > 0; taken++) {
      const record = this.queue.shift()!;
      const { stream, position } = record;
      stream.handed = position;
      if (record.value === undefined) {
        passedDrops.add(stream);
      } else {
        stream.lastValue = position;
        values.push(record.value);
        recordIds.push(`${stream.name}@${position}`);
        upstreams.push(stream.name);
        seqs.push(Number(position));
      }
      if (record.windowedId !== "") this.window.hand(record.windowedId);
      credits.set(record.session, (credits.get(record.session) ?? 0) + 1);
    }
    for (const [session, records] of credits) if (!session.ended) session.grant(records);
    // Drops carry nothing to process: when everything before them is committed, so are they.
    for (const stream of passedDrops) this.settle(stream, 0n);
    if (values.length === 0) return undefined;
    this.batchesRead++;
    return { values, position: this.batchesRead, recordIds, upstreams, seqs };
  }

  /**
   * Advances the stream's committed position to `durable` (a committed checkpoint's position),
   * and through drops passed on after the last value once that value is committed; tells the
   * stream's session, and ends the stream when its end is reached.
   */
  private settle(stream: StreamState, durable: bigint): void {
    let committed = durable > stream.committed ? durable : stream.committed;
    if (committed >= stream.lastValue && stream.handed > committed) committed = stream.handed;
    const session = stream.session !== undefined && !stream.session.ended ? stream.session : undefined;
    if (committed > stream.committed) {
      stream.committed = committed;
      session?.committed(stream.name, committed);
      this.settled.notify();
    }
    if (stream.endAt !== undefined && stream.committed >= stream.endAt && session !== undefined) {
      session.streamEnded(stream.name, stream.endAt);
      stream.endAt = undefined;
    }
  }
}
