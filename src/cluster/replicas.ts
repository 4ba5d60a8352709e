/**
 * Where each slot's copies live, as pure functions over partition maps: promoting backups when
 * workers die, dropping copies that became invalid, and planning the copies that bring every
 * slot back to R. The coordinator applies the plans; tests check them without processes.
 */
import { backupsOf, NO_WORKER, type PartitionMap } from "../routing/partition-map.ts";

/** A copy of a slot to make: its primary ships the state to `to`. */
export interface CopyPlan {
  slot: number;
  primary: string;
  to: string;
}

/** The same map over another worker list (a superset of the workers it names). */
export function reindex(map: PartitionMap, workers: readonly string[], epoch = map.epoch): PartitionMap {
  const index = map.workers.map((id) => workers.indexOf(id));
  const owners = map.owners.map((o) => index[o]!);
  const backups = map.backups.map((b) => (b === NO_WORKER ? NO_WORKER : index[b]!));
  return { ...map, epoch, workers, owners, backups };
}

/** Slots whose primary and every backup are among `dead`: their state is gone. */
export function lostSlots(map: PartitionMap, dead: ReadonlySet<string>): number[] {
  const lost: number[] = [];
  for (let slot = 0; slot < map.slotCount; slot++) {
    const holders = [map.owners[slot]!, ...backupsOf(map, slot)];
    if (holders.every((w) => dead.has(map.workers[w]!))) lost.push(slot);
  }
  return lost;
}

/**
 * The map without `dead`: a slot they led is led by its first surviving backup, one not
 * `suspect` (late with its heartbeat: it may be dying too) if there is one; their backup places
 * become missing copies. Slots with no survivor must be checked first (lostSlots).
 */
export function promote(map: PartitionMap, dead: ReadonlySet<string>, epoch: number, suspect: ReadonlySet<string> = new Set()): PartitionMap {
  const stride = map.replicas - 1;
  const owners = map.owners.slice();
  const backups = map.backups.slice();
  const isDead = (w: number) => w !== NO_WORKER && dead.has(map.workers[w]!);
  const isSuspect = (w: number) => suspect.has(map.workers[w]!);
  for (let slot = 0; slot < map.slotCount; slot++) {
    const alive = backupsOf(map, slot).filter((w) => !isDead(w));
    const survivors = [...alive.filter((w) => !isSuspect(w)), ...alive.filter(isSuspect)];
    if (isDead(owners[slot]!)) owners[slot] = survivors.shift() ?? owners[slot]!;
    for (let j = 0; j < stride; j++) backups[slot * stride + j] = survivors[j] ?? NO_WORKER;
  }
  const kept = map.workers.filter((id) => !dead.has(id));
  return reindex({ ...map, owners, backups, workers: map.workers }, kept, epoch);
}

/** Removes backups that are no longer valid: a worker not among `holders`, or the slot's own primary. */
export function pruneBackups(map: PartitionMap, holders: readonly string[]): PartitionMap {
  const stride = map.replicas - 1;
  const backups = map.backups.slice();
  for (let slot = 0; slot < map.slotCount; slot++) {
    const valid = backupsOf(map, slot).filter((w, i, all) => w !== map.owners[slot] && holders.includes(map.workers[w]!) && all.indexOf(w) === i);
    for (let j = 0; j < stride; j++) backups[slot * stride + j] = valid[j] ?? NO_WORKER;
  }
  return { ...map, backups };
}

/**
 * The copies that bring each slot to min(replicas, holders) copies, each to the holder that
 * follows the fewest slots so far (ties: the next one round the ring from the primary).
 */
export function planCopies(map: PartitionMap, holders: readonly string[]): CopyPlan[] {
  const want = Math.min(map.replicas, holders.length) - 1;
  const load = new Map(holders.map((id) => [id, 0]));
  for (let slot = 0; slot < map.slotCount; slot++) for (const w of backupsOf(map, slot)) load.set(map.workers[w]!, (load.get(map.workers[w]!) ?? 0) + 1);
  const plans: CopyPlan[] = [];
  for (const slot of interleaved(map)) {
    const primary = map.workers[map.owners[slot]!]!;
    const have = new Set([primary, ...backupsOf(map, slot).map((w) => map.workers[w]!)]);
    const start = holders.indexOf(primary);
    for (let n = have.size - 1; n < want; n++) {
      let best: string | undefined;
      for (let k = 1; k <= holders.length; k++) {
        const candidate = holders[(start + k + holders.length) % holders.length]!;
        if (have.has(candidate)) continue;
        if (best === undefined || load.get(candidate)! < load.get(best)!) best = candidate;
      }
      if (best === undefined) break;
      have.add(best);
      load.set(best, load.get(best)! + 1);
      plans.push({ slot, primary, to: best });
    }
  }
  return plans;
}

/** Slots taking each primary's in turn, so copies made greedily spread evenly over the other workers. */
function interleaved(map: PartitionMap): number[] {
  const byPrimary = new Map<number, number[]>();
  for (let slot = 0; slot < map.slotCount; slot++) {
    const owner = map.owners[slot]!;
    let list = byPrimary.get(owner);
    if (list === undefined) byPrimary.set(owner, (list = []));
    list.push(slot);
  }
  const lists = [...byPrimary.values()];
  const order: number[] = [];
  for (let i = 0; order.length < map.slotCount; i++) for (const list of lists) if (i < list.length) order.push(list[i]!);
  return order;
}

/**
 * The map with finished copies added as backups. A holder the map does not name yet (a member
 * that leads no slot, such as a joiner whose move failed) is added to its workers.
 */
export function addBackups(map: PartitionMap, copies: readonly CopyPlan[], epoch: number): PartitionMap {
  const stride = map.replicas - 1;
  const backups = map.backups.slice();
  const workers = [...map.workers];
  for (const { slot, to } of copies) {
    if (!workers.includes(to)) workers.push(to);
    const w = workers.indexOf(to);
    if (map.owners[slot] === w) continue;
    for (let j = 0; j < stride; j++) {
      const at = slot * stride + j;
      if (backups[at] === w) break;
      if (backups[at] === NO_WORKER) {
        backups[at] = w;
        break;
      }
    }
  }
  return { ...map, epoch, workers, backups };
}

/** Per worker id: slots it leads and slots it follows. */
export function copiesPerWorker(map: PartitionMap): Map<string, { primaries: number; backups: number }> {
  const counts = new Map(map.workers.map((id) => [id, { primaries: 0, backups: 0 }]));
  for (let slot = 0; slot < map.slotCount; slot++) {
    counts.get(map.workers[map.owners[slot]!]!)!.primaries++;
    for (const w of backupsOf(map, slot)) counts.get(map.workers[w]!)!.backups++;
  }
  return counts;
}

/** Slots with fewer copies than min(replicas, holders). */
export function underReplicated(map: PartitionMap, holders: number): number {
  const want = Math.min(map.replicas, holders) - 1;
  let n = 0;
  for (let slot = 0; slot < map.slotCount; slot++) if (backupsOf(map, slot).length < want) n++;
  return n;
}
