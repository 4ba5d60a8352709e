/**
 * The idempotency ids of one source target, kept twice: the last `sizeIds` ids accepted (what
 * duplicates are checked against) and the last `sizeIds` handed to the pipeline (what a
 * checkpoint records, since queued records are not covered by it yet). The accepted ids run
 * ahead of the handed ones by at most the records queued.
 *
 * The handed ids are kept in chunks: a full chunk never changes again, so a snapshot shares the
 * full chunks and copies only the last one. A snapshot may be asked for as of an earlier point
 * (the last batch the engine finished, while later ones were handed already): the chunks keep ids
 * the window has moved past until the owner trims them, which it does once no such snapshot can
 * be asked for any more.
 */
import { Fifo } from "../../util/fifo.ts";

/** Ids per chunk: a snapshot costs about window / CHUNK_IDS references plus CHUNK_IDS copies. */
const CHUNK_IDS = 512;

export class IdempotencyWindow {
  private readonly sizeIds: number;
  /** Sequence number (in acceptance order) of each id in the accepted window. */
  private readonly sequenceOf = new Map<string, number>();
  private readonly acceptedOrder = new Fifo<{ id: string; sequence: number }>();
  private acceptedCount = 0;
  /** Handed ids, oldest first; every chunk but the last is full and never changes. */
  private handed: string[][] = [[]];
  /** Ids held in the chunks. */
  private handedKept = 0;
  /** Ids handed since the start: the point a snapshot is taken as of. */
  private handedTotal = 0;

  constructor(sizeIds: number) {
    this.sizeIds = sizeIds;
  }

  /** True when the id is among the last sizeIds accepted. */
  has(id: string): boolean {
    return this.sequenceOf.has(id);
  }

  accept(id: string): void {
    const sequence = ++this.acceptedCount;
    this.sequenceOf.set(id, sequence);
    this.acceptedOrder.push({ id, sequence });
    while (this.acceptedOrder.peek()!.sequence <= this.acceptedCount - this.sizeIds) {
      const old = this.acceptedOrder.shift()!;
      // A later acceptance of the same id (after it had left the window) keeps its entry.
      if (this.sequenceOf.get(old.id) === old.sequence) this.sequenceOf.delete(old.id);
    }
  }

  /** The id has been handed to the pipeline (ids are handed in the order they were accepted). */
  hand(id: string): void {
    let last = this.handed.at(-1)!;
    if (last.length === CHUNK_IDS) {
      last = [];
      this.handed.push(last);
    }
    last.push(id);
    this.handedKept++;
    this.handedTotal++;
  }

  /** Ids handed so far: what checkpointChunks takes as its `upTo`. */
  get handedCount(): number {
    return this.handedTotal;
  }

  /**
   * Drops the oldest chunks the window no longer reaches into, as of every point from `oldest`
   * (a handedCount) on: snapshots are asked for no earlier than that from now on.
   */
  trim(oldest: number): void {
    const keep = this.sizeIds + (this.handedTotal - oldest);
    while (this.handedKept - this.handed[0]!.length >= keep) this.handedKept -= this.handed.shift()!.length;
  }

  /**
   * Chunks holding the last sizeIds ids handed up to `upTo` (a handedCount not older than the
   * last trim), possibly with a few older ones before them.
   */
  checkpointChunks(upTo = this.handedTotal): string[][] {
    const chunks: string[][] = [];
    let left = this.handedKept - (this.handedTotal - upTo);
    for (const chunk of this.handed) {
      if (left <= 0) break;
      chunks.push(left >= chunk.length && chunk !== this.handed.at(-1) ? chunk : chunk.slice(0, left));
      left -= chunk.length;
    }
    return chunks;
  }

  /** Restores a checkpoint's chunks: their last sizeIds ids count as accepted and handed. */
  restore(chunks: readonly string[][]): void {
    const ids = chunks.flat().slice(-this.sizeIds);
    for (const id of ids) {
      this.accept(id);
      this.hand(id);
    }
    this.trim(this.handedTotal);
  }
}
