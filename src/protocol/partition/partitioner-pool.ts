/**
 * The sessions of one partitioner name, sharing its load: each keys() call is cut into
 * PartitionBatch requests (within a session's credits, maxBatchRecords and maxMessageBytes), each
 * sent to one session with credits, round robin. While no session has credits the requests wait;
 * when a session ends, its unanswered requests go back to the front of the queue for another.
 * What waits is bounded by the callers: each pipeline awaits one batch's keys at a time. A wait
 * is never silent: values waiting for a session are logged every few seconds, and a session
 * that leaves a request unanswered for the answer timeout is ended (its requests go elsewhere).
 */
import type { Key } from "../../app/spec.ts";
import { ErrorCode, KeywayError } from "../../errors.ts";
import type { Logger } from "../../log/logger.ts";
import { Fifo } from "../../util/fifo.ts";
import { BATCH_OVERHEAD_BYTES, RECORD_OVERHEAD_BYTES, type ProtocolLimits } from "../limits.ts";

/** One keys() call: its values and the keys filled in as answers come. */
interface Job {
  values: Uint8Array[];
  keys: Key[];
  /** Values whose keys have not come yet. */
  remaining: number;
  resolve(keys: Key[]): void;
}

/** Values [start, end) of a job: what one request carries, or what waits to be sent. */
export interface JobRange {
  job: Job;
  start: number;
  end: number;
  /** Set once sent: a request re-sent after its session ended keeps its id and values (protocol 9.2). */
  requestId?: bigint;
}

/** A wait for a session logs this often while it lasts. */
const STALL_WARNING_MS = 5000;

export interface PartitionerWatch {
  /** A session that leaves a request unanswered this long is ended (the engine's session timeout). */
  answerTimeoutMs: number;
  log: Logger;
}

export interface PartitionSessionPort {
  readonly ended: boolean;
  readonly creditsAvailable: number;
  /** Sends the range's values as request `requestId`, spending one credit per value. */
  send(requestId: bigint, range: JobRange): void;
}

/** Request ids are unique per engine lifetime, across every partitioner name. */
export interface RequestIds {
  next: bigint;
}

export class PartitionerPool {
  readonly name: string;
  private readonly limits: ProtocolLimits;
  private readonly requestIds: RequestIds;
  private readonly waiting = new Fifo<JobRange>();
  private readonly sessions: PartitionSessionPort[] = [];
  private turn = 0;
  readonly watch: PartitionerWatch;
  private stallWarner: NodeJS.Timeout | undefined;

  constructor(name: string, limits: ProtocolLimits, requestIds: RequestIds, watch: PartitionerWatch) {
    this.name = name;
    this.limits = limits;
    this.requestIds = requestIds;
    this.watch = watch;
  }

  /** The keys of these values, in order, once the partition function's sessions answer. */
  keys(values: Uint8Array[]): Promise<Key[]> {
    if (values.length === 0) return Promise.resolve([]);
    const roomBytes = this.limits.maxMessageBytes - BATCH_OVERHEAD_BYTES;
    const tooLarge = values.find((v) => v.byteLength + RECORD_OVERHEAD_BYTES > roomBytes);
    if (tooLarge !== undefined) {
      return Promise.reject(
        new KeywayError(
          ErrorCode.FRAME_TOO_LARGE,
          `partitioner "${this.name}": a value of ${tooLarge.byteLength} bytes does not fit a message of ${this.limits.maxMessageBytes} bytes (--max-message-bytes)`,
        ),
      );
    }
    return new Promise((resolve) => {
      const job: Job = { values, keys: new Array<Key>(values.length), remaining: values.length, resolve };
      this.waiting.push({ job, start: 0, end: values.length });
      this.dispatch();
    });
  }

  attach(session: PartitionSessionPort): void {
    this.sessions.push(session);
  }

  /** The session ended: its unanswered requests go first to whichever session has credits next. */
  detach(session: PartitionSessionPort, unanswered: readonly JobRange[]): void {
    const index = this.sessions.indexOf(session);
    if (index >= 0) this.sessions.splice(index, 1);
    if (unanswered.length > 0) this.waiting.unshift(...unanswered);
    this.dispatch();
  }

  /** Keys for a range, validated by the session (one per value). */
  answered(range: JobRange, keys: readonly Key[]): void {
    const { job } = range;
    for (let i = 0; i < keys.length; i++) job.keys[range.start + i] = keys[i]!;
    job.remaining -= keys.length;
    if (job.remaining === 0) job.resolve(job.keys);
  }

  /** Sends waiting values while some session has credits; says so while some cannot go. */
  dispatch(): void {
    this.send();
    if (this.waiting.length === 0) {
      clearInterval(this.stallWarner);
      this.stallWarner = undefined;
    } else if (this.stallWarner === undefined) {
      const since = Date.now();
      this.stallWarner = setInterval(() => {
        let values = 0;
        for (let i = 0; i < this.waiting.length; i++) values += this.waiting.at(i).end - this.waiting.at(i).start;
        const sessions = this.sessions.filter((s) => !s.ended).length;
        this.watch.log.warn({ partitioner: this.name, values, sessions, waitedMs: Date.now() - since }, sessions === 0 ? "partitioner requests waiting: no session of this partitioner is attached" : "partitioner requests waiting: no session has credits");
      }, STALL_WARNING_MS);
      this.stallWarner.unref();
    }
  }

  private send(): void {
    for (;;) {
      const range = this.waiting.peek();
      if (range === undefined) return;
      if (range.requestId !== undefined) {
        // A re-sent request goes whole, to a session with credits for all of it, or waits.
        const session = this.pick(range.end - range.start);
        if (session === undefined) return;
        this.waiting.shift();
        session.send(range.requestId, range);
        continue;
      }
      const session = this.pick(1);
      if (session === undefined) return;
      const end = this.cutEnd(range, session.creditsAvailable);
      // keys() refused values that fit no message, and pick() a session without credits.
      if (end === range.start) throw new KeywayError(ErrorCode.INTERNAL, `partitioner "${this.name}": an empty request`);
      if (end === range.end) this.waiting.shift();
      const request: JobRange = { job: range.job, start: range.start, end, requestId: this.requestIds.next++ };
      range.start = end;
      session.send(request.requestId!, request);
    }
  }

  private pick(creditsNeeded: number): PartitionSessionPort | undefined {
    const count = this.sessions.length;
    for (let i = 0; i < count; i++) {
      const index = (this.turn + i) % count;
      const session = this.sessions[index]!;
      if (session.ended || session.creditsAvailable < creditsNeeded) continue;
      this.turn = index + 1;
      return session;
    }
    return undefined;
  }

  /** Where a request starting at range.start ends, within credits, maxBatchRecords and maxMessageBytes. */
  private cutEnd(range: JobRange, credits: number): number {
    const { values } = range.job;
    const last = Math.min(range.end, range.start + Math.min(credits, this.limits.maxBatchRecords));
    let bytes = BATCH_OVERHEAD_BYTES;
    let end = range.start;
    while (end < last && bytes + values[end]!.byteLength + RECORD_OVERHEAD_BYTES <= this.limits.maxMessageBytes) {
      bytes += values[end]!.byteLength + RECORD_OVERHEAD_BYTES;
      end++;
    }
    return end;
  }
}
