/**
 * The engine-side Source for an app source bound to `connector`: records from any number of
 * source sessions queue here in arrival order, and read() hands them to the pipeline. Per named
 * stream it tracks four positions, which only ever grow and always satisfy
 * committed <= handed <= accepted:
 *   accepted  the last position queued (resume_after; a record at or below it is a replay)
 *   handed    the last position read() has passed on (what progressAt() records)
 *   lastValue the last position passed on with a value (drops carry none)
 *   committed the last position reported in Committed
 * The queue holds at most the credits granted to live and recently ended sessions: a session
 * never has more queued plus unspent credits than its credit window.
 *
 * The table of streams is bounded (Limits.max_streams_per_source) and each stream belongs to the
 * connector_name of the session that created it (R-SRC-OPEN-OWNER). With a retention (a single
 * engine; not in a cluster, whose registry and replicated marks remember stream names), a stream
 * that has no session and everything accepted committed is retired after it (R-SRC-RETIREMENT):
 * forgotten, so its next open starts it afresh. A stream on which nothing was ever accepted holds
 * nothing to resume and goes when its session ends. With checkpoints, a retired stream whose
 * position a checkpoint holds is gone only once a checkpoint without it is durable (otherwise a
 * restore could bring its old position back under a name a new stream already uses); until then
 * it is "retiring", and an open of it waits.
 */
import type { RecordMeta, Source, SourceBatch, SourceContext } from "../../connector/types.ts";
import type { Logger } from "../../log/logger.ts";
import { ErrorCode, type Record as WireRecord } from "../gen/keyway/v1/connector_pb.ts";
import type { ProtocolLimits } from "../limits.ts";
import { Fifo } from "../../util/fifo.ts";
import { decimal } from "../../util/decimal.ts";
import { ProtocolError } from "../protocol-error.ts";
import { Signal } from "../../util/signal.ts";
import { IdempotencyWindow } from "./idempotency-window.ts";
import { parseProgress, type SourceProgress } from "./progress.ts";

/** What the source needs of a session to talk back to its connector. */
export interface SourceSessionPort {
  readonly ended: boolean;
  /** The Hello's connector_name: the owner of the streams the session creates. */
  readonly connectorName: string;
  /** The Hello's instance_id. */
  readonly instanceId: string;
  /** Ends the session: a newer session of the same instance opened `stream`, which it has open. */
  replace(by: SourceSessionPort, stream: string): void;
  /** Returns credits for records the pipeline has taken. */
  grant(records: number): void;
  /** Credits granted to the connector and not yet spent by it. */
  readonly credits: number;
  committed(stream: string, position: bigint): void;
  streamEnded(stream: string, position: bigint): void;
}

interface StreamState {
  readonly name: string;
  /**
   * The connector_name of the session that created the stream: only its sessions open it.
   * Undefined for a stream restored from a checkpoint that recorded no owners, until its next open.
   */
  owner: string | undefined;
  /** Progress captures made before the stream existed (-1: restored): older captures do not describe it. */
  readonly born: number;
  /** Since when (Date.now()) it has had no session, no pending end and everything accepted committed. */
  idleSince: number | undefined;
  /** Retired with checkpoints: the captures made by then; it is gone once a later capture is durable. */
  retiring: number | undefined;
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

/**
 * What a stream's open asks of a cluster: whether it may open here (refused with `owner` when the
 * stream belongs to another connector), and where it resumes.
 */
export type StreamClaim = (stream: string, connector: string) => Promise<{ granted: boolean; resumeAfter: bigint; owner?: string }>;

export interface OpenedAt {
  resumeAfter: bigint;
  committed: bigint;
}

/**
 * What one batch read() returned moved: the streams whose handed position it advanced (drops
 * passed on before it included), from where to where, and the idempotency ids handed before it.
 * Kept until the batch is committed, or a checkpoint's progress is taken past it: progress is
 * computed only when asked for, as of a batch that later ones may have followed already.
 */
interface BatchMoves {
  position: bigint;
  streams: StreamState[];
  before: bigint[];
  after: bigint[];
  idsBefore: number;
}

/**
 * A batch's records as they wait for read(): the batch itself, not one object per record. Its
 * positions increase (the session checked them), so the replays it held were a prefix, skipped.
 */
interface QueuedBatch {
  stream: StreamState;
  session: SourceSessionPort;
  records: readonly WireRecord[];
  /** The first record not yet handed on. */
  next: number;
  /** 1 for each record dropped as a duplicate (its idempotency id was applied); undefined when none was. */
  duplicates: Uint8Array | undefined;
}

export interface ConnectorSourceOptions {
  /**
   * Retire a stream with no session and nothing uncommitted after this long (--stream-retention-ms).
   * Undefined: streams are never retired (a cluster worker).
   */
  streamRetentionMs?: number;
}

/** The longest pause between two looks for streams to retire: retirement comes at most this late. */
const RETIREMENT_SWEEP_MS_MAX = 60_000;

export class ConnectorSource implements Source {
  readonly finite = false;
  readonly name: string;
  private readonly limits: ProtocolLimits;
  private readonly retentionMs: number | undefined;
  /** Progress is committed only through checkpoint files (--data-dir): retirement waits for one. */
  private checkpointed = false;
  private wantsMeta = false;
  private log: Logger | undefined;
  private sweeper: NodeJS.Timeout | undefined;
  /** Progress values handed out (progressAt(), prune()), each tagged with its capture number. */
  private captures = 0;
  private readonly captureOf = new WeakMap<object, number>();
  private readonly retiring = new Set<StreamState>();
  /** Notified when a retiring stream is gone. */
  private readonly retired = new Signal();
  private readonly streams = new Map<string, StreamState>();
  private readonly queue = new Fifo<QueuedBatch>();
  private queued = 0;
  private readonly arrived = new Signal();
  private readonly window: IdempotencyWindow;
  private batchesRead = 0n;
  /** Per batch read and not yet committed (or passed by a progress taken), what it moved, oldest first. */
  private readonly moves = new Fifo<BatchMoves>();
  /** What the read() under way has moved so far: drops of takes that returned nothing, then its batch. */
  private moving: BatchMoves | undefined;
  private closed = false;
  private claim: StreamClaim | undefined;
  /** Notified whenever a stream's committed position moves, or the source closes. */
  private readonly settled = new Signal();
  private markOpened!: () => void;
  /** Resolves once the engine has opened the source (restoring a checkpoint): sessions wait for it. */
  readonly opened: Promise<void> = new Promise((resolve) => (this.markOpened = resolve));

  constructor(name: string, limits: ProtocolLimits, options: ConnectorSourceOptions = {}) {
    this.name = name;
    this.limits = limits;
    this.retentionMs = options.streamRetentionMs;
    this.window = new IdempotencyWindow(limits.idempotencyWindow);
  }

  // ---- the engine's side ----

  async open(ctx: SourceContext): Promise<void> {
    this.log = ctx.log;
    this.checkpointed = ctx.checkpointed === true;
    this.wantsMeta = ctx.wantsMeta === true;
    if (ctx.resumeState !== undefined) {
      const progress = parseProgress(this.name, ctx.resumeState);
      for (const [name, position] of Object.entries(progress.streams)) {
        const stream = this.stream(name, progress.owners?.[name], -1);
        stream.accepted = stream.handed = stream.lastValue = stream.committed = position;
        // No session has it yet: its retention runs from the restore.
        this.checkIdle(stream);
      }
      this.window.restore(progress.idempotencyIds);
      ctx.log.info({ streams: this.streams.size }, "connector source restored");
    }
    const retention = this.retentionMs;
    if (retention !== undefined && !this.closed) {
      const every = Math.min(RETIREMENT_SWEEP_MS_MAX, Math.max(10, Math.floor(retention / 10)));
      this.sweeper = setInterval(() => this.sweep(retention), every);
      this.sweeper.unref();
    }
    this.markOpened();
  }

  async read(maxRecords = this.limits.maxBatchRecords): Promise<SourceBatch | null> {
    for (;;) {
      if (this.closed) return null;
      if (this.queued === 0) {
        await this.arrived.wait();
        continue;
      }
      // Undefined when the records taken were all duplicates: take more.
      const batch = this.take(Math.max(1, Math.min(maxRecords, this.limits.maxBatchRecords)));
      if (batch !== undefined) return batch;
    }
  }

  queuedRecords(): number {
    return this.queued;
  }

  /** Credits its live sessions may still spend, counted over the sessions with a stream open (others cannot send). */
  creditsOutstanding(): number {
    const sessions = new Set<SourceSessionPort>();
    for (const stream of this.streams.values()) if (stream.session !== undefined && !stream.session.ended) sessions.add(stream.session);
    let credits = 0;
    for (const session of sessions) credits += session.credits;
    return credits;
  }

  /**
   * The progress covering every batch up to the one at `position` (batches after it may have been
   * read already: what they moved is taken back out). Batches up to it are not asked about again.
   */
  progressAt(position: bigint): SourceProgress {
    const handedAt = new Map<StreamState, bigint>();
    let idsUpTo = this.window.handedCount;
    const later = this.moving === undefined ? [] : [this.moving];
    while (this.moves.length > 0 && this.moves.peek()!.position <= position) this.moves.shift();
    for (let i = this.moves.length - 1; i >= 0; i--) later.push(this.moves.at(i));
    // Newest first, so each stream ends up at where the earliest later batch found it.
    for (const moved of later) {
      moved.streams.forEach((stream, j) => handedAt.set(stream, moved.before[j]!));
      idsUpTo = moved.idsBefore;
    }
    this.window.trim(idsUpTo);
    // A retiring stream is left out: a checkpoint taken from now on no longer holds it.
    const streams: { [stream: string]: bigint } = {};
    const owners: { [stream: string]: string } = {};
    for (const stream of this.streams.values()) {
      const handed = handedAt.get(stream) ?? stream.handed;
      if (handed === 0n || stream.retiring !== undefined) continue;
      streams[stream.name] = handed;
      if (stream.owner !== undefined) owners[stream.name] = stream.owner;
    }
    return this.tagged({ streams, owners, idempotencyIds: this.window.checkpointChunks(idsUpTo) });
  }

  /**
   * The progress to checkpoint instead of `upTo` (a value progressAt() returned, or the restored
   * one), without the streams being retired: the engine calls it at each checkpoint's barrier, so a
   * retirement becomes durable even while no batch flows.
   */
  prune(upTo: unknown): unknown {
    if (this.retiring.size === 0) return upTo;
    const progress = parseProgress(this.name, upTo);
    const capture = this.captureNumber(upTo);
    const kept = (name: string) => {
      const stream = this.streams.get(name);
      return stream !== undefined && stream.born < capture && stream.retiring === undefined;
    };
    const owners = progress.owners ?? {};
    return this.tagged({
      streams: Object.fromEntries(Object.entries(progress.streams).filter(([name]) => kept(name))),
      owners: Object.fromEntries(Object.entries(owners).filter(([name]) => kept(name))),
      idempotencyIds: progress.idempotencyIds,
    });
  }

  /** `upTo` is a batch's position (each batch committed as it is done), or a value progressAt() or prune() returned (a checkpoint). */
  commit(upTo: unknown): void {
    if (typeof upTo === "bigint") return this.commitBatches(upTo);
    const progress = parseProgress(this.name, upTo);
    const capture = this.captureNumber(upTo);
    for (const [name, position] of Object.entries(progress.streams)) {
      const stream = this.streams.get(name);
      // Retired since: gone, or a new stream of that name, which this progress does not describe.
      if (stream === undefined || stream.born >= capture) continue;
      this.settle(stream, position);
    }
    // A checkpoint taken after a stream began retiring is durable: no restore brings it back.
    for (const stream of [...this.retiring]) if (stream.retiring! < capture) this.forget(stream);
  }

  private commitBatches(position: bigint): void {
    while (this.moves.length > 0 && this.moves.peek()!.position <= position) {
      const { streams, after } = this.moves.shift()!;
      // A stream retired since is gone, or is a new stream of that name: nothing of it to settle.
      streams.forEach((stream, i) => {
        if (this.streams.get(stream.name) === stream) this.settle(stream, after[i]!);
      });
    }
    this.window.trim(this.moves.peek()?.idsBefore ?? this.moving?.idsBefore ?? this.window.handedCount);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.sweeper);
    this.arrived.notify();
    this.settled.notify();
    this.retired.notify();
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

  /**
   * Opens a stream on a session; returns where the connector resumes (after a cluster's claim when
   * it needs one, or once a retiring stream is gone). Checks, in order: the owner (STREAM_OWNED),
   * another live session (STREAM_BUSY, unless it is an older session of the same instance, which
   * ends with SESSION_REPLACED), room for a new stream (TOO_MANY_STREAMS).
   */
  openStream(name: string, session: SourceSessionPort): OpenedAt | Promise<OpenedAt> {
    const known = this.streams.get(name);
    if (known?.retiring !== undefined) return this.untilGone(known).then(() => this.openStream(name, session));
    if (this.claim === undefined || (known !== undefined && !known.released)) return this.openHere(name, session);
    if (known !== undefined) this.checkOwner(known, session);
    else this.checkRoom();
    return this.claim(name, session.connectorName).then(({ granted, resumeAfter, owner }) => {
      if (!granted && owner !== undefined) throw this.owned(name, owner, session);
      if (!granted) throw new ProtocolError(ErrorCode.STREAM_BUSY, `stream "${name}" of source "${this.name}" is open on a session of another worker`);
      const stream = this.streams.get(name) ?? this.stream(name, session.connectorName);
      stream.released = false;
      // Records up to resumeAfter were applied and committed on the worker that held the stream.
      if (resumeAfter > stream.accepted) stream.accepted = stream.handed = stream.lastValue = stream.committed = resumeAfter;
      return this.openHere(name, session);
    });
  }

  private openHere(name: string, session: SourceSessionPort): OpenedAt {
    const existing = this.streams.get(name);
    if (existing !== undefined) this.checkOwner(existing, session);
    const holder = existing?.session;
    // The same instance reconnecting has lost its old session (its process froze or was cut off):
    // the stream is its to take now, not once keepalive ends the old one.
    if (holder !== undefined && !holder.ended && session.instanceId !== "" && holder.instanceId === session.instanceId && holder.connectorName === session.connectorName) {
      holder.replace(session, name);
      return this.openHere(name, session);
    }
    if (existing?.session !== undefined && !existing.session.ended) {
      throw new ProtocolError(ErrorCode.STREAM_BUSY, `stream "${name}" of source "${this.name}" is open on another session`);
    }
    if (existing === undefined) this.checkRoom();
    // A session that ended while its open waited (a claim, a retirement) takes nothing.
    if (session.ended) return { resumeAfter: existing?.accepted ?? 0n, committed: existing?.committed ?? 0n };
    const stream = existing ?? this.stream(name, session.connectorName);
    stream.owner ??= session.connectorName;
    stream.session = session;
    stream.endAt = undefined;
    stream.idleSince = undefined;
    return { resumeAfter: stream.accepted, committed: stream.committed };
  }

  private checkOwner(stream: StreamState, session: SourceSessionPort): void {
    if (stream.owner !== undefined && stream.owner !== session.connectorName) throw this.owned(stream.name, stream.owner, session);
  }

  private owned(name: string, owner: string, session: SourceSessionPort): ProtocolError {
    return new ProtocolError(
      ErrorCode.STREAM_OWNED,
      `stream "${name}" of source "${this.name}" belongs to connector "${owner}", not "${session.connectorName}" (Hello.connector_name)`,
    );
  }

  /** Room for one more stream in the table: retiring streams count until they are gone. */
  private checkRoom(): void {
    if (this.streams.size < this.limits.maxStreamsPerSource) return;
    throw new ProtocolError(
      ErrorCode.TOO_MANY_STREAMS,
      `source "${this.name}" already tracks ${this.streams.size} streams, the most it may (Limits.max_streams_per_source); ` +
        (this.retentionMs === undefined ? "streams are not retired here" : `a stream with no session and nothing uncommitted is retired after ${this.retentionMs} ms`),
    );
  }

  /**
   * Queues a batch the session has validated (open stream, credits, increasing positions).
   * Returns how many records were replays (at or below the accepted position): they are not
   * queued, so their credits go straight back.
   */
  accept(session: SourceSessionPort, name: string, records: readonly WireRecord[]): number {
    const stream = this.streams.get(name)!;
    let replays = 0;
    while (replays < records.length && records[replays]!.position <= stream.accepted) replays++;
    if (replays === records.length) return replays;
    let duplicates: Uint8Array | undefined;
    for (let i = replays; i < records.length; i++) {
      const id = records[i]!.idempotencyId;
      if (id === "") continue;
      if (this.window.has(id)) (duplicates ??= new Uint8Array(records.length))[i] = 1;
      else this.window.accept(id);
    }
    stream.accepted = records[records.length - 1]!.position;
    this.queue.push({ stream, session, records, next: replays, duplicates });
    this.queued += records.length - replays;
    this.arrived.notify();
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
      const stream = this.streams.get(name);
      if (stream === undefined || stream.session !== session) continue;
      stream.session = undefined;
      stream.endAt = undefined;
      // Nothing was ever accepted on it: nothing to resume, and no checkpoint holds it.
      if (this.retentionMs !== undefined && stream.accepted === 0n) this.forget(stream);
      else this.checkIdle(stream);
    }
  }

  private stream(name: string, owner: string | undefined, born = this.captures): StreamState {
    const stream: StreamState = {
      name,
      owner,
      born,
      idleSince: undefined,
      retiring: undefined,
      session: undefined,
      accepted: 0n,
      handed: 0n,
      lastValue: 0n,
      committed: 0n,
      endAt: undefined,
      released: false,
    };
    this.streams.set(name, stream);
    return stream;
  }

  private tagged(progress: SourceProgress): SourceProgress {
    this.captureOf.set(progress, ++this.captures);
    return progress;
  }

  /** Which capture a progress value is; 0 for one this source did not hand out (the restored one). */
  private captureNumber(progress: unknown): number {
    return typeof progress === "object" && progress !== null ? (this.captureOf.get(progress) ?? 0) : 0;
  }

  /** A stream is idle while no session has it, no end is pending and everything accepted is committed. */
  private checkIdle(stream: StreamState): void {
    const idle = (stream.session === undefined || stream.session.ended) && stream.endAt === undefined && stream.committed >= stream.accepted;
    if (!idle) stream.idleSince = undefined;
    else stream.idleSince ??= Date.now();
  }

  /** Retires every stream idle for the retention. */
  private sweep(retentionMs: number): void {
    const now = Date.now();
    let retired = 0;
    for (const stream of [...this.streams.values()]) {
      // Idleness is re-checked: a session may have ended without a detach reaching here yet.
      this.checkIdle(stream);
      if (stream.idleSince === undefined || stream.retiring !== undefined || now - stream.idleSince < retentionMs) continue;
      retired++;
      if (this.checkpointed && stream.handed > 0n) {
        stream.retiring = this.captures;
        this.retiring.add(stream);
      } else {
        this.forget(stream);
      }
    }
    if (retired > 0) this.log?.info({ streams: retired, retentionMs, tracked: this.streams.size }, "connector source retired idle streams");
  }

  private forget(stream: StreamState): void {
    if (this.streams.get(stream.name) === stream) this.streams.delete(stream.name);
    if (this.retiring.delete(stream)) this.retired.notify();
  }

  /** Resolves once a retiring stream is gone (or the source closed). */
  private async untilGone(stream: StreamState): Promise<void> {
    while (this.streams.get(stream.name) === stream && !this.closed) await this.retired.wait();
    if (this.closed) throw new ProtocolError(ErrorCode.SHUTTING_DOWN, `source "${this.name}" is closed`);
  }

  /** Up to maxBatchRecords queued records as a batch; undefined when none of them had a value. */
  private take(most: number): SourceBatch | undefined {
    const values: Uint8Array[] = [];
    const meta: (RecordMeta | undefined)[] = [];
    let anyMeta = false;
    const recordIds: string[] = [];
    const upstreams: string[] = [];
    const seqs: number[] = [];
    const credits = new Map<SourceSessionPort, number>();
    const passedDrops = new Set<StreamState>();
    let taken = 0;
    while (taken < most && this.queued > 0) {
      const queued = this.queue.peek()!;
      const { stream, records, duplicates } = queued;
      const name = stream.name;
      const from = queued.next;
      const to = Math.min(records.length, from + most - taken);
      this.moved(stream);
      for (let i = from; i < to; i++) {
        const record = records[i]!;
        const position = record.position;
        if (duplicates !== undefined && duplicates[i] === 1) {
          passedDrops.add(stream);
          continue;
        }
        stream.lastValue = position;
        values.push(record.value);
        if (this.wantsMeta) {
          const m = recordMeta(record);
          meta.push(m);
          anyMeta ||= m !== undefined;
        }
        // A number prints faster than a bigint (decimal: see why there); positions past 2^53 keep the bigint's digits.
        const seq = Number(position);
        recordIds.push(seq <= Number.MAX_SAFE_INTEGER ? `${name}@${decimal(seq)}` : `${name}@${position}`);
        upstreams.push(name);
        seqs.push(seq);
        if (record.idempotencyId !== "") this.window.hand(record.idempotencyId);
      }
      stream.handed = records[to - 1]!.position;
      credits.set(queued.session, (credits.get(queued.session) ?? 0) + (to - from));
      taken += to - from;
      this.queued -= to - from;
      queued.next = to;
      if (to === records.length) this.queue.shift();
    }
    for (const [session, records] of credits) if (!session.ended) session.grant(records);
    // Drops carry nothing to process: when everything before them is committed, so are they.
    for (const stream of passedDrops) this.settle(stream, 0n);
    if (values.length === 0) return undefined;
    this.batchesRead++;
    const moving = this.moving!;
    moving.position = this.batchesRead;
    moving.after = moving.streams.map((s) => s.handed);
    this.moves.push(moving);
    this.moving = undefined;
    return { values, position: this.batchesRead, recordIds, upstreams, seqs, ...(anyMeta ? { meta } : {}) };
  }

  /** Notes, before `stream`'s handed position moves, where it was when the read() under way began moving it. */
  private moved(stream: StreamState): void {
    const moving = (this.moving ??= { position: 0n, streams: [], before: [], after: [], idsBefore: this.window.handedCount });
    if (moving.streams.includes(stream)) return;
    moving.streams.push(stream);
    moving.before.push(stream.handed);
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
      // ENDED releases the stream (protocol §7.1): another session may open it, and it may retire.
      stream.session = undefined;
      if (this.retentionMs !== undefined && stream.accepted === 0n) return this.forget(stream);
    }
    if (this.retentionMs !== undefined) this.checkIdle(stream);
  }
}

/** A record's key, event time and headers; undefined when it has none of them. */
function recordMeta(record: WireRecord): RecordMeta | undefined {
  const hasHeaders = Object.keys(record.headers).length > 0;
  if (record.key === undefined && record.eventTimeMs === 0n && !hasHeaders) return undefined;
  const meta: RecordMeta = {};
  if (record.key !== undefined) meta.key = record.key;
  if (record.eventTimeMs !== 0n) meta.eventTimeMs = Number(record.eventTimeMs);
  if (hasHeaders) meta.headers = { ...record.headers };
  return meta;
}
