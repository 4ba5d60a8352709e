/**
 * A bounded window of recently seen record ids, for sinks that deduplicate redelivered outputs
 * (protocol §8.5). It remembers the last `capacity` ids added and forgets the oldest first: a
 * duplicate is recognised as long as its first copy is among them. Size it to cover every
 * output the engine may send again: the unacked batches (the credit window) and, when the engine
 * runs with --data-dir, the outputs of about two checkpoint intervals.
 */
export interface IdWindow {
  readonly capacity: number;
  readonly size: number;
  has(id: string): boolean;
  /** Remembers an id, forgetting the oldest one when full. Adding a remembered id changes nothing. */
  add(id: string): void;
  /** The remembered ids, oldest first. */
  ids(): IterableIterator<string>;
}

export function createIdWindow(capacity: number): IdWindow {
  if (!Number.isSafeInteger(capacity) || capacity < 1) throw new RangeError(`capacity must be a positive integer, got ${capacity}`);
  const seen = new Set<string>();
  // The ids in arrival order, as a ring: evicting the oldest is one array read. (Taking a Set's
  // first element instead walks past every deleted slot V8 has not yet compacted, which made a
  // full window quadratic.)
  const ring: string[] = new Array<string>(capacity);
  let oldest = 0;
  return {
    capacity,
    get size() {
      return seen.size;
    },
    has: (id) => seen.has(id),
    add(id) {
      if (seen.has(id)) return;
      if (seen.size === capacity) {
        seen.delete(ring[oldest]!);
        ring[oldest] = id;
        oldest = (oldest + 1) % capacity;
      } else {
        ring[(oldest + seen.size) % capacity] = id;
      }
      seen.add(id);
    },
    *ids() {
      for (let i = 0; i < seen.size; i++) yield ring[(oldest + i) % capacity]!;
    },
  };
}
