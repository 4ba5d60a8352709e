/**
 * A bounded window of recently seen record ids, for sinks that deduplicate redelivered outputs
 * (protocol §8.5). It remembers the last `capacity` ids added and forgets the oldest first: a
 * duplicate is recognised as long as its first copy is among them. It must cover every output
 * the engine may send again: the unacked batches (the credit window) and what a restart from a
 * checkpoint replays (Welcome's limits.maxReplayRecords); runSink grows a `dedup` window to that.
 */
export interface IdWindow {
  readonly capacity: number;
  readonly size: number;
  has(id: string): boolean;
  /** Remembers an id, forgetting the oldest one when full. Adding a remembered id changes nothing. */
  add(id: string): void;
  /** Raises the capacity, keeping every id remembered; a capacity not above the current one changes nothing. */
  grow(capacity: number): void;
  /** The remembered ids, oldest first. */
  ids(): IterableIterator<string>;
}

export function createIdWindow(capacity: number): IdWindow {
  if (!Number.isSafeInteger(capacity) || capacity < 1) throw new RangeError(`capacity must be a positive integer, got ${capacity}`);
  const seen = new Set<string>();
  // The ids in arrival order, as a ring: evicting the oldest is one array read. (Taking a Set's
  // first element instead walks past every deleted slot V8 has not yet compacted, which made a
  // full window quadratic.)
  let ring: string[] = new Array<string>(capacity);
  let oldest = 0;
  const ordered = function* () {
    for (let i = 0; i < seen.size; i++) yield ring[(oldest + i) % capacity]!;
  };
  return {
    get capacity() {
      return capacity;
    },
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
    grow(to) {
      if (!Number.isSafeInteger(to) || to <= capacity) return;
      const kept = [...ordered()];
      ring = new Array<string>(to);
      kept.forEach((id, i) => (ring[i] = id));
      oldest = 0;
      capacity = to;
    },
    ids: ordered,
  };
}
