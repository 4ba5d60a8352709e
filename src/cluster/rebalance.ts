/**
 * Which slots move when membership changes. Pure functions over partition maps, so the plan is
 * testable without processes. A new map gives each worker an equal contiguous range, in the
 * order of the worker list, which keeps a worker's slots next to each other.
 */
import type { PartitionMap } from "../routing/partition-map.ts";
import { pruneBackups, reindex } from "./replicas.ts";

export interface SlotMove {
  slot: number;
  /** Worker ids. */
  from: string;
  to: string;
}

/** Every slot whose owner differs between two maps. */
export function planMoves(before: PartitionMap, after: PartitionMap): SlotMove[] {
  const moves: SlotMove[] = [];
  for (let slot = 0; slot < before.slotCount; slot++) {
    const from = before.workers[before.owners[slot]!]!;
    const to = after.workers[after.owners[slot]!]!;
    if (from !== to) moves.push({ slot, from, to });
  }
  return moves;
}

/** Moves grouped by (from, to) pair, in chunks of at most chunkSlots, so each pause stays short. */
export function chunkMoves(moves: readonly SlotMove[], chunkSlots: number): SlotMove[][] {
  const byPair = new Map<string, SlotMove[]>();
  for (const move of moves) {
    const pair = `${move.from}\u0000${move.to}`;
    let list = byPair.get(pair);
    if (list === undefined) byPair.set(pair, (list = []));
    list.push(move);
  }
  const chunks: SlotMove[][] = [];
  for (const list of byPair.values()) {
    for (let i = 0; i < list.length; i += chunkSlots) chunks.push(list.slice(i, i + chunkSlots));
  }
  return chunks;
}

/**
 * An intermediate map where only the given moves have happened: the map in force while a
 * migration proceeds chunk by chunk. A moved slot keeps its backups; when one of them becomes
 * its primary, the old primary (whose state it imported) takes its place, so a move never
 * leaves a slot with fewer copies.
 */
export function applyMoves(current: PartitionMap, target: PartitionMap, moves: readonly SlotMove[], epoch: number): PartitionMap {
  const workers = [...new Set([...current.workers, ...target.workers])];
  const base = reindex(current, workers, epoch);
  const owners = base.owners.slice();
  const backups = base.backups.slice();
  const stride = base.replicas - 1;
  for (const move of moves) {
    const to = workers.indexOf(move.to);
    owners[move.slot] = to;
    const at = backups.indexOf(to, move.slot * stride);
    if (at >= 0 && at < (move.slot + 1) * stride) backups[at] = workers.indexOf(move.from);
  }
  return pruneBackups({ ...base, owners, backups }, workers);
}
