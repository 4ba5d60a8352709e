/**
 * Which worker leads each routing slot, and which follow it. The map carries an epoch so that
 * batches routed under an older map can be recognised once ownership moves.
 */
export interface PartitionMap {
  readonly epoch: number;
  readonly slotCount: number;
  /** Worker ids; owners[] and backups[] hold indexes into it. */
  readonly workers: readonly string[];
  /** slot -> index into workers: the slot's primary. */
  readonly owners: Uint16Array;
  /** Copies each slot should have, the primary's included (1: no backups). */
  readonly replicas: number;
  /**
   * slot * (replicas - 1) + j -> index into workers of the slot's j-th backup, or NO_WORKER
   * where a copy is missing (being rebuilt, or fewer workers than copies).
   */
  readonly backups: Uint16Array;
}

export const NO_WORKER = 0xffff;

/** Splits the slots into contiguous, equal (within one) ranges, one per worker, in order; no backups. */
export function equalRanges(slotCount: number, workers: readonly string[], epoch: number, replicas = 1): PartitionMap {
  if (workers.length === 0) throw new RangeError("a partition map needs at least one worker");
  const owners = new Uint16Array(slotCount);
  for (let w = 0; w < workers.length; w++) {
    const start = Math.floor((w * slotCount) / workers.length);
    const end = Math.floor(((w + 1) * slotCount) / workers.length);
    owners.fill(w, start, end);
  }
  return { epoch, slotCount, workers, owners, replicas, backups: new Uint16Array(slotCount * (replicas - 1)).fill(NO_WORKER) };
}

/** Indexes into map.workers of the slot's backups (missing copies left out). */
export function backupsOf(map: PartitionMap, slot: number): number[] {
  const stride = map.replicas - 1;
  const out: number[] = [];
  for (let j = 0; j < stride; j++) {
    const w = map.backups[slot * stride + j]!;
    if (w !== NO_WORKER) out.push(w);
  }
  return out;
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
