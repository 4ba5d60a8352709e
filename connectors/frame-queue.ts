/**
 * What a listening source (tcp://, ws://) holds for read(): the records its clients sent, merged
 * in arrival order. Bounded in records and bytes: past either bound every connection is paused
 * (its socket no longer read, so a stalled engine pushes back on the clients' send buffers) until
 * read() drains it. Such sources cannot replay, so a position only counts the records delivered.
 */
import type { Payload, SourceBatch } from "../src/connector/types.ts";
import { ErrorCode, KeywayError } from "../src/errors.ts";
import type { Logger } from "../src/log/logger.ts";

/** A client connection the queue can stop reading from. */
export interface Pausable {
  pause(): void;
  resume(): void;
}

export interface FrameQueueLimits {
  bufferRecordsMax: number;
  bufferBytesMax: number;
}

export class FrameQueue<C extends Pausable> {
  /** Records waiting for read(); decoders may append to it directly, then call arrived(). */
  frames: Payload[] = [];
  /** Bytes received and not yet taken; may count framing and partial frames, so the bound errs on the safe side. */
  private bytes = 0;
  private delivered = 0n;
  private paused = false;
  private closed = false;
  /** A read is waiting and its answer is queued behind the records arriving now. */
  private answering = false;
  private waitingRead: { resolve: (batch: SourceBatch | null) => void; maxRecords: number } | null = null;
  private readonly connections = new Set<C>();
  private name = "";
  private log: Logger | null = null;

  constructor(
    private readonly limits: FrameQueueLimits,
    /** The source's scheme, for log lines: `tcp`, `ws`. */
    private readonly scheme: string,
  ) {}

  /**
   * The source opened. Positions continue from a restart's resumeFrom so they keep rising: the
   * engine drops records at or below a committed position as replays.
   */
  open(name: string, log: Logger, resumeFrom: bigint | undefined): void {
    this.name = name;
    this.log = log;
    this.delivered = resumeFrom ?? 0n;
  }

  read(maxRecords = Number.POSITIVE_INFINITY): Promise<SourceBatch | null> {
    if (this.closed) return Promise.resolve(null);
    if (this.waitingRead !== null) {
      return Promise.reject(new KeywayError(ErrorCode.INTERNAL, `source "${this.name}": concurrent read()`));
    }
    if (this.frames.length > 0) return Promise.resolve(this.take(maxRecords));
    return new Promise((resolve) => {
      this.waitingRead = { resolve, maxRecords };
    });
  }

  queuedRecords(): number {
    return this.frames.length;
  }

  /** Counts bytes received, before they are decoded into frames. */
  received(bytes: number): void {
    this.bytes += bytes;
  }

  /** Records were appended to `frames`: answer a waiting read, or pause everyone once full. */
  arrived(): void {
    if (this.frames.length === 0) return;
    if (this.waitingRead !== null) {
      // A socket chunk's records all arrive in one go: answering after them makes one batch of
      // the chunk, not a batch per record.
      if (!this.answering) {
        this.answering = true;
        queueMicrotask(this.answerRead);
      }
    } else if (this.isFull()) {
      this.pauseAll();
    }
  }

  /** A new client: paused at once while the queue is full. */
  add(connection: C): void {
    this.connections.add(connection);
    if (this.paused) connection.pause();
  }

  remove(connection: C): void {
    this.connections.delete(connection);
  }

  /** Drops what is held and answers a waiting read with null; returns the connections, for the caller to close. */
  close(): C[] {
    this.closed = true;
    this.frames = [];
    this.bytes = 0;
    const waiting = this.waitingRead;
    this.waitingRead = null;
    waiting?.resolve(null);
    const connections = [...this.connections];
    this.connections.clear();
    return connections;
  }

  private readonly answerRead = (): void => {
    this.answering = false;
    const waiting = this.waitingRead;
    if (waiting === null || this.frames.length === 0) return;
    this.waitingRead = null;
    waiting.resolve(this.take(waiting.maxRecords));
  };

  private take(maxRecords: number): SourceBatch {
    let values: Payload[];
    if (this.frames.length <= maxRecords) {
      values = this.frames;
      this.frames = [];
      this.bytes = 0;
    } else {
      values = this.frames.splice(0, Math.max(1, Math.floor(maxRecords)));
      // A string's UTF-16 length stands for its bytes (exact for ASCII, less otherwise): the byte
      // bound is a memory bound, and it is exact again whenever read() takes everything.
      for (const v of values) this.bytes -= typeof v === "string" ? v.length : v.byteLength;
    }
    this.delivered += BigInt(values.length);
    if (this.paused && !this.isFull()) this.resumeAll();
    return { values, position: this.delivered };
  }

  private isFull(): boolean {
    return this.frames.length >= this.limits.bufferRecordsMax || this.bytes >= this.limits.bufferBytesMax;
  }

  private pauseAll(): void {
    if (this.paused) return;
    this.paused = true;
    for (const connection of this.connections) connection.pause();
    this.log?.debug({ source: this.name, records: this.frames.length, bytes: this.bytes }, `${this.scheme} source full; clients paused`);
  }

  private resumeAll(): void {
    this.paused = false;
    for (const connection of this.connections) connection.resume();
  }
}
