/**
 * Which worker owns each routing slot. The map carries an epoch so that batches routed under an
 * older map can be recognised once ownership moves.
 */
export interface PartitionMap {
  readonly epoch: number;
  readonly slotCount: number;
  /** Worker ids; owners[] holds indexes into it. */
  readonly workers: readonly string[];
  /** slot -> index into workers. */
  readonly owners: Uint16Array;
}

/** Splits the slots into contiguous, equal (within one) ranges, one per worker, in order. */
export function equalRanges(slotCount: number, workers: readonly string[], epoch: number): PartitionMap {
  if (workers.length === 0) throw new RangeError("a partition map needs at least one worker");
  const owners = new Uint16Array(slotCount);
  for (let w = 0; w < workers.length; w++) {
    const start = Math.floor((w * slotCount) / workers.length);
    const end = Math.floor(((w + 1) * slotCount) / workers.length);
    owners.fill(w, start, end);
  }
  return { epoch, slotCount, workers, owners };
}

/** The contiguous [start, end) slot ranges a worker owns. */
export function rangesOf(map: PartitionMap, worker: string): Array<[number, number]> {
  const index = map.workers.indexOf(worker);
  const ranges: Array<[number, number]> = [];
  let start = -1;
  for (let slot = 0; slot <= map.slotCount; slot++) {
    const owned = slot < map.slotCount && map.owners[slot] === index;
    if (owned && start < 0) start = slot;
    if (!owned && start >= 0) {
      ranges.push([start, slot]);
      start = -1;
    }
  }
  return ranges;
}
