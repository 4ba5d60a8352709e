import { describe, expect, it } from "vitest";
import { addBackups, copiesPerWorker, lostSlots, planCopies, promote, pruneBackups, underReplicated } from "../src/cluster/replicas.ts";
import { applyMoves, planMoves } from "../src/cluster/rebalance.ts";
import { createOutputLedger, createReplication, entryForSlots, mergeWritten, unwritten } from "../src/cluster/replication.ts";
import type { BatchOut } from "../src/exchange/grpc-exchange.ts";
import { emptyKeyedBatch } from "../src/runtime/dataflow.ts";
import { backupsOf, equalRanges, type PartitionMap } from "../src/routing/partition-map.ts";

/** Three workers, R copies, every slot's copies placed as the rebuild would place them. */
function replicated(replicas: number, workers = ["w0", "w1", "w2"]): PartitionMap {
  let map = equalRanges(64, workers, 1, replicas);
  map = addBackups(map, planCopies(map, workers), 2);
  return map;
}

const holders = (map: PartitionMap, slot: number) => [map.owners[slot]!, ...backupsOf(map, slot)].map((w) => map.workers[w]);

describe("replica placement", () => {
  it("gives every slot R copies on distinct workers, each worker following about as many slots as it leads", () => {
    const map = replicated(2);
    for (let slot = 0; slot < map.slotCount; slot++) expect(new Set(holders(map, slot)).size).toBe(2);
    expect(underReplicated(map, 3)).toBe(0);
    // Each follows about a third of the slots: the copies spread, they do not pile on one worker.
    const counts = copiesPerWorker(map);
    for (const id of map.workers) expect(Math.abs(counts.get(id)!.backups - map.slotCount / 3)).toBeLessThanOrEqual(2);
  });

  it("promotes a surviving backup where the primary died, preferring one whose heartbeat is on time, and leaves the copy missing", () => {
    const map = replicated(3, ["w0", "w1", "w2", "w3"]);
    const led = Array.from({ length: map.slotCount }, (_, s) => s).filter((s) => map.workers[map.owners[s]!] === "w1");
    const slot = led[0]!;
    const [first, second] = backupsOf(map, slot).map((w) => map.workers[w]!);
    const next = promote(map, new Set(["w1"]), 3, new Set([first!]));
    expect(next.workers).not.toContain("w1");
    expect(next.workers[next.owners[slot]!]).toBe(second);
    expect(backupsOf(next, slot).map((w) => next.workers[w])).toEqual([first]);
    expect(lostSlots(map, new Set(["w1"]))).toEqual([]);
    expect(underReplicated(next, 3)).toBeGreaterThan(0);
    // A plan brings them back, and never onto a slot's own holders.
    const restored = addBackups(next, planCopies(next, ["w0", "w2", "w3"]), 4);
    expect(underReplicated(restored, 3)).toBe(0);
    for (let s = 0; s < restored.slotCount; s++) expect(new Set(holders(restored, s)).size).toBe(3);
  });

  it("names the slots whose every copy died", () => {
    const map = replicated(2);
    const lost = lostSlots(map, new Set(["w1", "w2"]));
    expect(lost.length).toBeGreaterThan(0);
    for (const slot of lost) expect(holders(map, slot).every((id) => id === "w1" || id === "w2")).toBe(true);
    expect(lostSlots(replicated(1), new Set(["w2"]))).toEqual(Array.from({ length: 64 }, (_, s) => s).filter((s) => s >= 42));
  });

  it("drops a backup that became its slot's primary or left", () => {
    const map = replicated(2);
    const pruned = pruneBackups(map, ["w0", "w1"]);
    for (let slot = 0; slot < map.slotCount; slot++) expect(backupsOf(pruned, slot).map((w) => pruned.workers[w])).not.toContain("w2");
    const moved = pruneBackups({ ...map, owners: map.owners.map(() => map.workers.indexOf("w1")) }, map.workers);
    for (let slot = 0; slot < map.slotCount; slot++) expect(backupsOf(moved, slot).map((w) => moved.workers[w])).not.toContain("w1");
  });

  it("keeps a slot's copies through a move: a backup made primary leaves the old primary as a backup (seed 814)", () => {
    const map = replicated(2);
    const target = equalRanges(64, ["w0", "w1", "w2", "w3"], 3, 2);
    const moves = planMoves(map, target);
    const next = applyMoves(map, target, moves, 3);
    for (const { slot, from, to } of moves) {
      expect(holders(next, slot)[0]).toBe(to);
      const before = holders(map, slot);
      // A move into the backup's place keeps the old primary; any other move keeps the backup.
      expect(holders(next, slot)).toEqual(before.includes(to) ? [to, from] : [to, ...before.slice(1)]);
    }
    expect(moves.some((m) => holders(map, m.slot).includes(m.to))).toBe(true);
  });

  it("adds a copy on a member the map does not name yet (a joiner whose move failed; seed 349)", () => {
    const map = pruneBackups(replicated(2), ["w0", "w1"]);
    const restored = addBackups(map, planCopies(map, ["w0", "w1", "w2", "w3"]), 3);
    expect(restored.workers).toEqual(["w0", "w1", "w2", "w3"]);
    expect(underReplicated(restored, 3)).toBe(0);
    expect(copiesPerWorker(restored).get("w3")!.backups).toBeGreaterThan(0);
  });
});

describe("replication bookkeeping", () => {
  it("numbers replicas per backup, tells the backup how far outputs left, and the backup forgets those", async () => {
    const sent: BatchOut[] = [];
    const primary = createReplication(async (_to, batch) => void sent.push(batch));
    const batch = { ...emptyKeyedBatch(), keys: ["a"], slots: [1], values: ["a"] };
    const first = primary.replicate("w1", 3, 0, 0, batch, 7);
    const second = primary.replicate("w1", 3, 0, 0, batch, 8);
    await Promise.all([first.acked, second.acked]);
    second.delivered();
    primary.replicate("w1", 3, 0, 0, batch, 9);
    // The second left first: nothing is delivered through until the first has too.
    expect(sent.map((b) => [b.replica!.seq, b.replica!.deliveredThrough, b.outputSeq])).toEqual([[1n, 0n, 7], [2n, 0n, 8], [3n, 0n, 9]]);
    first.delivered();
    primary.replicate("w1", 3, 0, 0, batch, 10);
    expect(sent[3]!.replica!.deliveredThrough).toBe(2n);

    const backup = createReplication(async () => undefined);
    const out = (outputSeq: number) => ({ pipeline: 0, outputSeq, values: [`v${outputSeq}`], ids: [`id${outputSeq}`], slots: [3] });
    backup.received("w0", 1n, 0n, out(7));
    backup.received("w0", 2n, 0n, out(8));
    backup.received("w0", 3n, 1n, out(9));
    expect(backup.outboxRecords()).toBe(2);
    const kept = backup.takeOutbox("w0");
    expect(kept.map((e) => e.outputSeq)).toEqual([8, 9]);
    expect(backup.outboxRecords()).toBe(0);
  });

  it("resends only the runs whose output did not reach the sinks' worker", () => {
    const ledger = createOutputLedger();
    ledger.record("w1", 0, 4);
    ledger.record("w1", 0, 3);
    ledger.record("w1", 1, 9);
    const written = ledger.of("w1");
    const entry = (pipeline: number, outputSeq: number) => ({ seq: 1n, pipeline, outputSeq, values: ["x"], ids: undefined, slots: [0] });
    const kept = unwritten([entry(0, 4), entry(0, 5), entry(1, 9), entry(1, 10)], "w1", written);
    expect(kept.map((e) => [e.pipeline, e.outputSeq])).toEqual([[0, 5], [1, 10]]);
    expect(unwritten([entry(0, 1)], "w2", written)).toHaveLength(1);
  });

  it("counts a promoted backup's resends as the dead primary's output, and resends a slot's outputs from its new primary only", () => {
    const written = [{ worker: "w1", pipeline: 0, outputSeq: 4 }];
    mergeWritten(written, [{ worker: "w1", pipeline: 0, outputSeq: 6 }, { worker: "w1", pipeline: 1, outputSeq: 2 }, { worker: "w1", pipeline: 0, outputSeq: 5 }]);
    expect(written).toEqual([{ worker: "w1", pipeline: 0, outputSeq: 6 }, { worker: "w1", pipeline: 1, outputSeq: 2 }]);
    const entry = { seq: 1n, pipeline: 0, outputSeq: 7, values: ["a", "b", "c"], ids: ["ia", "ib", "ic"], slots: [5, 9, 5] };
    expect(entryForSlots(entry, (slot) => slot === 5)).toMatchObject({ values: ["a", "c"], ids: ["ia", "ic"], slots: [5, 5], outputSeq: 7 });
    expect(entryForSlots(entry, () => true)).toBe(entry);
    expect(entryForSlots(entry, () => false).values).toEqual([]);
  });
});
