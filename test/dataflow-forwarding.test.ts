import { describe, expect, it } from "vitest";
import { pipeline } from "../src/index.ts";
import { createKeyHash, createSlotOf } from "../src/routing/hash.ts";
import { equalRanges } from "../src/routing/partition-map.ts";
import { compileDataflow, emptyKeyedBatch, type Dataflow, type KeyedBatch, type StageRun } from "../src/runtime/dataflow.ts";

const SLOTS = 64;

// Two stages: count words, then re-key by first letter and count the words seen per letter.
const app = pipeline("p")
  .source("in")
  .flatMap((line) => line.split(" "))
  .keyBy((w) => w)
  .state(
    () => ({ n: 0 }),
    (w, s) => {
      s.n++;
      return { w, n: s.n };
    },
  )
  .keyBy((r) => r.w[0]!)
  .state(
    () => ({ seen: 0 }),
    (r, s) => {
      s.seen++;
      return `${r.w}:${r.n}`;
    },
  )
  .sink("out");

function perKey(lines: readonly unknown[]): Map<string, string[]> {
  const groups = new Map<string, string[]>();
  for (const line of lines as string[]) {
    const word = line.slice(0, line.indexOf(":"));
    groups.set(word, [...(groups.get(word) ?? []), line]);
  }
  return groups;
}

/** Three workers' dataflows joined by a synchronous stand-in for the exchange; output gathered in one list. */
async function threeWorkers(frozen?: Uint8Array) {
  const slotOf = await createSlotOf(SLOTS);
  const hashOf = await createKeyHash();
  const map = equalRanges(SLOTS, ["w0", "w1", "w2"], 1);
  const flows: Dataflow[] = [];
  const sent = [0, 0, 0];
  const held: Array<{ stage: number; batch: KeyedBatch }> = [];
  const output: { values: unknown[]; ids: string[] } = { values: [], ids: [] };
  const gather = async (run: StageRun) => {
    output.values.push(...run.values);
    output.ids.push(...(run.ids ?? []));
    await Promise.all(run.pending);
  };
  for (let self = 0; self < 3; self++) {
    flows.push(
      compileDataflow(app, {
        hashOf,
        placement: { map, self, ...(self === 0 && frozen !== undefined ? { frozen } : {}) },
        out: {
          send: async (owner, stage, batch, hops) => {
            sent[owner]! += batch.values.length;
            await gather(await flows[owner]!.runStage(stage, structuredClone(batch), { withIds: batch.lineage.length > 0, inbound: true, hops }));
          },
          hold: async (stage, batch) => {
            held.push({ stage, batch });
          },
        },
      }),
    );
  }
  return { slotOf, hashOf, map, flows, sent, held, output, gather };
}

describe("dataflow across workers", () => {
  const lines = ["the quick brown fox", "jumps over the lazy dog", "the end of the quick tale"];
  const batch = { values: lines, position: 3n, recordIds: ["a", "b", "c"] };

  it("sends records for slots another worker owns, with their keys and slots, and the per-key outputs and ids match one worker's", async () => {
    const { hashOf, map, flows, sent, output, gather } = await threeWorkers();
    const single = compileDataflow(app, { hashOf, placement: { map: equalRanges(SLOTS, ["w0"], 1), self: 0 } });
    await gather(await flows[0]!.process(batch, true));
    const alone = await single.process(batch, true);
    expect(alone.pending).toEqual([]);
    expect(sent[1]! + sent[2]!).toBeGreaterThan(0);
    expect(perKey(output.values)).toEqual(perKey(alone.values));
    expect(new Set(output.ids)).toEqual(new Set(alone.ids));
    expect(output.values).toHaveLength(15);
    // Each worker holds state only for the slots it owns.
    flows.forEach((flow, self) => {
      for (const store of flow.stores) {
        store.text.forEach((m, slot) => {
          if (m !== undefined) expect(map.owners[slot]).toBe(self);
        });
      }
    });
  });

  it("holds records of frozen slots instead of routing them, and runs nothing for them", async () => {
    const frozen = new Uint8Array(SLOTS).fill(1);
    const { flows, sent, held, output } = await threeWorkers(frozen);
    const run = await flows[0]!.process(batch, false);
    await Promise.all(run.pending);
    expect(sent).toEqual([0, 0, 0]);
    expect(output.values).toEqual([]);
    expect(run.values).toEqual([]);
    expect(held.reduce((n, h) => n + h.batch.values.length, 0)).toBe(15);
    expect(held.every((h) => h.stage === 0)).toBe(true);
  });

  it("forwards records that reach a worker not owning their slot, and counts them", async () => {
    const { flows, slotOf, hashOf, map } = await threeWorkers();
    const word = ["alpha", "beta", "gamma", "delta", "omega"].find((w) => map.owners[slotOf(w)] === 2)!;
    const input: KeyedBatch = { ...emptyKeyedBatch(), keys: [word], hashes: [hashOf(word)], values: [word] };
    const run = await flows[1]!.runStage(0, input, { withIds: false, inbound: true, hops: 0 });
    await Promise.all(run.pending);
    expect(run.forwarded).toBe(1);
    expect(flows[2]!.stores[0]!.keyCount).toBe(1);
    expect(flows[1]!.stores[0]!.keyCount).toBe(0);
  });

  it("fails clearly when a slot is owned elsewhere and nothing can forward", async () => {
    const flow = compileDataflow(app, { hashOf: await createKeyHash(), placement: { map: equalRanges(SLOTS, ["w0", "w1"], 1), self: 0 } });
    await expect(flow.process({ values: ["a b c d e f g h i j k l m n o p"], position: 1n }, false)).rejects.toThrow(/cannot forward/);
  });
});
