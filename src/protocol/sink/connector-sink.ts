/**
 * The engine-side Sink for an app sink bound to `connector`: output waits here until a sink
 * session has credits for it, goes out in SinkBatches numbered 1, 2, 3... per target, and counts
 * as delivered only once acked. Batches a session leaves unacked when it ends are resent, with the
 * same sequence and ids, before any new batch. The buffer (unsent plus unacked) is bounded:
 * write() waits while it is full, which stops the pipelines that feed it.
 */
import type { Payload, RecordMeta, Sink, SinkContext } from "../../connector/types.ts";
import { ErrorCode, KeywayError } from "../../errors.ts";
import { encodedMessage, type EncodedMessage } from "../../rpc/grpc-adapter.ts";
import { Fifo } from "../../util/fifo.ts";
import { BATCH_OVERHEAD_BYTES, SINK_BUFFER_BATCHES, type ProtocolLimits } from "../limits.ts";
import { Signal } from "../../util/signal.ts";
import { fastPath } from "../wire/proto-wire.ts";
import { encodeSinkEntries, sinkBatchResponse, type SinkEntries } from "../wire/sink-batch-codec.ts";

/**
 * A SinkBatch as the engine keeps it until acked: its encoded SinkResponse (bytes, not an object
 * per record, so unacked output costs the young generation nothing to keep), resent as it is.
 */
export interface SinkBatchOut {
  sequence: bigint;
  records: number;
  message: EncodedMessage;
}

/** What the sink needs of a session to send it batches. */
export interface SinkSessionPort {
  readonly ended: boolean;
  /** Credits the connector granted and the engine has not spent yet. */
  readonly creditsAvailable: number;
  /** The highest sequence sent to the session and not yet acked; 0n when none. */
  readonly lastUnackedSequence: bigint;
  /** Sends a batch, spending one credit per record. */
  send(batch: SinkBatchOut): void;
}

/** Records of one write, encoded, of which those from `next` on are not cut into a batch yet. */
interface Unsent extends SinkEntries {
  next: number;
}

export class ConnectorSink implements Sink {
  readonly wantsRecordIds = true;
  readonly name: string;
  private readonly limits: ProtocolLimits;
  private readonly bufferRecordsMax: number;
  private readonly unsent = new Fifo<Unsent>();
  private unsentRecords = 0;
  /** Unacked batches of ended sessions, by sequence: they go out before anything new. */
  private resend: SinkBatchOut[] = [];
  private resendRecords = 0;
  /** Records sent to live sessions and not yet acked. */
  private unackedRecords = 0;
  private readonly sessions: SinkSessionPort[] = [];
  /** Where the next round-robin search for a session with credits starts. */
  private turn = 0;
  private nextSequence = 1n;
  /** Records written and records cut into batches, since the start. */
  private recordsWritten = 0;
  private recordsCut = 0;
  /** Per batch cut and not acked yet, in sequence order: the number of its first record. */
  private readonly unackedFrom = new Map<bigint, number>();
  private readonly changed = new Signal();
  private closed = false;

  constructor(name: string, limits: ProtocolLimits) {
    this.name = name;
    this.limits = limits;
    this.bufferRecordsMax = SINK_BUFFER_BATCHES * limits.maxBatchRecords;
  }

  // ---- the engine's side ----

  async open(_ctx: SinkContext): Promise<void> {}

  async write(values: Payload[], recordIds?: string[], meta?: readonly (RecordMeta | undefined)[]): Promise<void> {
    if (this.closed) throw new KeywayError(ErrorCode.INTERNAL, `write to connector sink "${this.name}" after close`);
    if (recordIds === undefined || recordIds.length !== values.length) {
      throw new KeywayError(ErrorCode.INTERNAL, `connector sink "${this.name}" needs one record id per value`);
    }
    const entries = fastPath(() => encodeSinkEntries(values, recordIds, meta));
    if (entries === undefined) throw new KeywayError(ErrorCode.BAD_APP, `connector sink "${this.name}": an output's headers must be strings`);
    const roomBytes = this.limits.maxMessageBytes - BATCH_OVERHEAD_BYTES;
    for (let i = 0; i < values.length; i++) {
      const size = entries.counted[i]!;
      if (size > roomBytes) {
        throw new KeywayError(
          ErrorCode.FRAME_TOO_LARGE,
          `connector sink "${this.name}": output record ${recordIds[i]} takes ${size} bytes; a message holds at most ${this.limits.maxMessageBytes} (--max-message-bytes)`,
        );
      }
    }
    if (values.length > 0) this.unsent.push({ ...entries, next: 0 });
    this.unsentRecords += values.length;
    this.recordsWritten += values.length;
    this.dispatch();
    while (!this.closed && this.bufferedRecords() >= this.bufferRecordsMax) await this.changed.wait();
  }

  async flush(): Promise<void> {
    while (this.bufferedRecords() > 0) {
      // Resolving would let a checkpoint cover output that never reached a sink.
      if (this.closed) {
        throw new KeywayError(ErrorCode.INTERNAL, `connector sink "${this.name}" was closed with ${this.bufferedRecords()} records unacknowledged`);
      }
      await this.changed.wait();
    }
  }

  async delivered(): Promise<void> {
    const through = this.recordsWritten;
    while (this.ackedThrough() < through) {
      if (this.closed) throw new KeywayError(ErrorCode.INTERNAL, `connector sink "${this.name}" was closed before its output was acknowledged`);
      await this.changed.wait();
    }
  }

  /** Records 0 .. n-1 are all acked. */
  private ackedThrough(): number {
    const first = this.unackedFrom.values().next();
    return first.done === true ? this.recordsCut : first.value;
  }

  bufferedRecords(): number {
    return this.unsentRecords + this.resendRecords + this.unackedRecords;
  }

  /** Credits the live sessions granted that the engine has not spent: room downstream going unused. */
  creditsHeld(): number {
    let credits = 0;
    for (const session of this.sessions) if (!session.ended) credits += session.creditsAvailable;
    return credits;
  }

  /** Stops waiting for acks: a waiting write() returns, a waiting flush() fails. Buffered output is not delivered. */
  async close(): Promise<void> {
    this.closed = true;
    this.changed.notify();
  }

  // ---- the sessions' side ----

  attach(session: SinkSessionPort): void {
    this.sessions.push(session);
  }

  /** The session ended: its unacked batches are resent on another session. */
  detach(session: SinkSessionPort, unacked: readonly SinkBatchOut[]): void {
    const index = this.sessions.indexOf(session);
    if (index >= 0) this.sessions.splice(index, 1);
    const records = unacked.reduce((n, b) => n + b.records, 0);
    this.unackedRecords -= records;
    this.resendRecords += records;
    this.resend = [...this.resend, ...unacked].sort((a, b) => (a.sequence < b.sequence ? -1 : 1));
    this.dispatch();
  }

  acked(batches: readonly SinkBatchOut[]): void {
    for (const b of batches) {
      this.unackedRecords -= b.records;
      this.unackedFrom.delete(b.sequence);
    }
    this.changed.notify();
    // A session whose unacked batches are all acked may now take resent ones.
    if (this.resend.length > 0) this.dispatch();
  }

  /** Sends what the sessions' credits allow: resent batches first, then new ones. */
  dispatch(): void {
    while (this.resend.length > 0) {
      const batch = this.resend[0]!;
      const session = this.pick(batch.records, batch.sequence);
      if (session === undefined) return;
      this.resend.shift();
      this.resendRecords -= batch.records;
      this.unackedRecords += batch.records;
      session.send(batch);
    }
    for (;;) {
      if (this.unsentRecords === 0) return;
      const session = this.pick(1, this.nextSequence);
      if (session === undefined) return;
      const batch = this.cut(session.creditsAvailable);
      this.unackedRecords += batch.records;
      session.send(batch);
    }
  }

  /**
   * The next live session, round robin, with credits for `records` that may take `sequence`:
   * sequences on one session increase in send order, so its cumulative acks never cover a batch
   * it has not seen yet (a resent batch waits until the session has acked every later one).
   */
  private pick(records: number, sequence: bigint): SinkSessionPort | undefined {
    const count = this.sessions.length;
    for (let i = 0; i < count; i++) {
      const index = (this.turn + i) % count;
      const session = this.sessions[index]!;
      if (session.ended || session.creditsAvailable < records || session.lastUnackedSequence > sequence) continue;
      this.turn = index + 1;
      return session;
    }
    return undefined;
  }

  /** A new batch from the unsent records, within the credits, maxBatchRecords and maxMessageBytes. */
  private cut(credits: number): SinkBatchOut {
    const recordsMax = Math.min(credits, this.limits.maxBatchRecords);
    const maxBytes = this.limits.maxMessageBytes;
    let bytes = BATCH_OVERHEAD_BYTES;
    let records = 0;
    const spans: Uint8Array[] = [];
    let spanBytes = 0;
    while (records < recordsMax && this.unsent.length > 0) {
      const unsent = this.unsent.peek()!;
      const { ends, counted } = unsent;
      const from = unsent.next;
      let to = from;
      while (to < ends.length && records < recordsMax && bytes + counted[to]! <= maxBytes) {
        bytes += counted[to++]!;
        records++;
      }
      if (to > from) {
        const start = from === 0 ? 0 : ends[from - 1]!;
        spans.push(unsent.bytes.subarray(start, ends[to - 1]!));
        spanBytes += ends[to - 1]! - start;
      }
      unsent.next = to;
      if (to < ends.length) break;
      this.unsent.shift();
    }
    this.unsentRecords -= records;
    const sequence = this.nextSequence++;
    this.unackedFrom.set(sequence, this.recordsCut);
    this.recordsCut += records;
    return { sequence, records, message: encodedMessage(sinkBatchResponse(sequence, spans, spanBytes)) };
  }
}
