/**
 * Incremental checkpoints (src/durability/checkpoint-chain.ts) on real files: a base and deltas
 * restore to the state they were taken from, compaction keeps it, and a crash at any point (files
 * left as a crash would leave them) restores a whole, consistent checkpoint.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { deserialize, serialize } from "node:v8";
import { describe, expect, it } from "vitest";
import { chainFileName, openCheckpointChain, type CheckpointChain, type CompactionPolicy } from "../src/durability/checkpoint-chain.ts";
import { LEGACY_FILE_NAME, writeLegacyCheckpoint } from "../src/durability/checkpoint-file.ts";
import { ErrorCode } from "../src/errors.ts";
import type { Logger } from "../src/log/logger.ts";
import type { Key } from "../src/app/spec.ts";
import { createKeyHash, hashShift } from "../src/routing/hash.ts";
import { captureSlots, createStageStore, dropSlot, exportSlot, importSlot, slotOccupied, stateFor, type StageStore } from "../src/runtime/state-store.ts";
import { scratchDir } from "./helpers/process.ts";
import { prng } from "./helpers/text.ts";

const SLOTS = 64;
const APP = "chain-test";
/** Two pipelines: the first with two keyed stages, the second with one. */
type Stores = StageStore[][];

const keyHash = await createKeyHash();
const SHIFT = hashShift(SLOTS);
/** Keys are named `k<slot>-<n>`: a routing hash that puts each in the slot its name says. */
const hashOf = (key: Key): number => ((Number(/^k(\d+)-/.exec(key as string)![1]) << SHIFT) | (keyHash(key) >>> (32 - SHIFT))) | 0;

function makeStores(): Stores {
  return [[createStageStore(SLOTS, hashOf), createStageStore(SLOTS, hashOf)], [createStageStore(SLOTS, hashOf)]];
}

const init = () => ({ n: 0, seen: [] as string[] });

/** Updates `count` keys of the given slots (all slots when none given) and, now and then, empties a slot. */
function mutate(stores: Stores, random: () => number, count: number, slots?: number[], dropOne = false): void {
  for (let i = 0; i < count; i++) {
    const pipeline = random() < 0.7 ? 0 : 1;
    const stage = stores[pipeline]!.length === 1 ? 0 : Math.floor(random() * 2);
    const slot = slots === undefined ? Math.floor(random() * SLOTS) : slots[Math.floor(random() * slots.length)]!;
    const key = `k${slot}-${Math.floor(random() * 40)}`;
    const state = stateFor(stores[pipeline]![stage]!, hashOf(key), key, init) as { n: number; seen: string[] };
    state.n += 1 + Math.floor(random() * 5);
    if (state.seen.length < 3) state.seen.push(`v${i}`);
  }
  if (dropOne) {
    const pipeline = 0;
    for (let slot = 0; slot < SLOTS; slot++) {
      if (stores[pipeline]!.some((s) => slotOccupied(s, slot))) {
        for (const s of stores[pipeline]!) dropSlot(s, slot);
        return;
      }
    }
  }
}

/** Every occupied slot's contents, decoded, keys in order, per pipeline: what a restore must give back. */
function contents(stores: Stores): unknown[] {
  const byKey = (a: [string, unknown], b: [string, unknown]) => (a[0] < b[0] ? -1 : 1);
  return stores.map((stages) => {
    const out: Record<number, unknown> = {};
    for (let slot = 0; slot < SLOTS; slot++) {
      if (!stages.some((s) => slotOccupied(s, slot))) continue;
      const exported = deserialize(exportSlot(stages, slot)) as { stages: Array<{ text: Array<[string, unknown]> }> };
      for (const stage of exported.stages) stage.text.sort(byKey);
      out[slot] = exported;
    }
    return out;
  });
}

/** Takes a checkpoint as the engine does: the dirty slots (every occupied one when a base is wanted), then a durable write. */
async function checkpoint(chain: CheckpointChain, stores: Stores, position: bigint, final = false) {
  const captured = stores.map((stages) => captureSlots(stages, chain.wantsBase));
  return chain.write(
    {
      app: APP,
      slotCount: SLOTS,
      sources: [{ progress: position }, { progress: { streams: { a: position * 2n } } }],
      slots: captured.map((c) => c.slots),
      complete: captured.every((c) => c.complete),
      createdAtMs: Date.now(),
    },
    { final },
  );
}

interface Warning {
  msg: string;
  fields: object;
}

function recordingLog(warnings: Warning[] = []): Logger {
  const log: Logger = {
    debug: () => undefined,
    info: () => undefined,
    warn: (fields, msg) => warnings.push({ msg: msg ?? String(fields), fields: typeof fields === "object" ? fields : {} }),
    error: (fields, msg) => warnings.push({ msg: msg ?? String(fields), fields: typeof fields === "object" ? fields : {} }),
    child: () => log,
  };
  return log;
}

const NEVER_COMPACT: Partial<CompactionPolicy> = { deltaBytesRatio: 1e9, maxDeltas: 1e9 };

async function restore(dir: string, warnings: Warning[] = [], policy: Partial<CompactionPolicy> = NEVER_COMPACT) {
  const chain = await openCheckpointChain(dir, { log: recordingLog(warnings), policy });
  const stores = makeStores();
  await chain.load((pipeline, slot, state) => importSlot(stores[pipeline]!, slot, state));
  for (const stages of stores) for (const s of stages) s.dirty.fill(0);
  return { chain, stores, restored: chain.restored };
}

const files = (dir: string) => readdirSync(dir).sort();

/** A chain of a base and `deltas` deltas; returns the state's contents after each checkpoint (index = seq). */
async function buildChain(dir: string, deltas: number, seed = 7): Promise<{ chain: CheckpointChain; stores: Stores; states: unknown[] }> {
  const random = prng(seed);
  const chain = await openCheckpointChain(dir, { log: recordingLog(), policy: NEVER_COMPACT });
  const stores = makeStores();
  const states: unknown[] = [undefined];
  mutate(stores, random, 2000);
  await checkpoint(chain, stores, 1n);
  states.push(contents(stores));
  for (let d = 0; d < deltas; d++) {
    // A few slots change between checkpoints, and one slot is emptied now and then.
    mutate(stores, random, 30, [d % SLOTS, (d * 7 + 3) % SLOTS, (d * 13 + 5) % SLOTS], d % 2 === 1);
    await checkpoint(chain, stores, BigInt(d + 2));
    states.push(contents(stores));
  }
  await chain.settled();
  return { chain, stores, states };
}

describe("checkpoint chain: base and deltas", () => {
  it("writes a base, then deltas of the changed slots only, and restores the state they were taken from", async () => {
    const dir = scratchDir("chain");
    const random = prng(1);
    const chain = await openCheckpointChain(dir, { log: recordingLog(), policy: NEVER_COMPACT });
    expect(chain.restored).toBeUndefined();
    expect(chain.wantsBase).toBe(true);
    const stores = makeStores();
    mutate(stores, random, 5000);
    const base = await checkpoint(chain, stores, 10n);
    expect(base).toMatchObject({ kind: "base", seq: 1 });

    // Three slots change, one empties: the delta holds those four only.
    mutate(stores, random, 50, [3, 9, 40]);
    for (const s of stores[0]!) dropSlot(s, 17);
    const delta = await checkpoint(chain, stores, 20n);
    expect(delta.kind).toBe("delta");
    expect(delta.bytes).toBeLessThan(base.bytes / 4);
    const second = await checkpoint(chain, stores, 30n);
    expect(second.kind).toBe("delta");
    mutate(stores, random, 20, [5]);
    await checkpoint(chain, stores, 40n);
    expect(files(dir)).toEqual([chainFileName("base", 1), chainFileName("delta", 2), chainFileName("delta", 3), chainFileName("delta", 4)]);

    const back = await restore(dir);
    expect(back.restored).toMatchObject({ app: APP, slotCount: SLOTS, pipelines: 2, seq: 4, files: 4, legacy: false });
    expect(back.restored!.sources).toEqual([{ progress: 40n }, { progress: { streams: { a: 80n } } }]);
    expect(contents(back.stores)).toEqual(contents(stores));
    expect(back.stores[0]![0]!.keyCount + back.stores[0]![1]!.keyCount).toBe(stores[0]![0]!.keyCount + stores[0]![1]!.keyCount);
    expect(back.stores[0]!.some((s) => slotOccupied(s, 17))).toBe(false);

    // The restored chain goes on from there: the next checkpoint is delta 5 on the same base.
    mutate(back.stores, random, 10, [7]);
    expect(await checkpoint(back.chain, back.stores, 50n)).toMatchObject({ kind: "delta", seq: 5 });
    expect(contents((await restore(dir)).stores)).toEqual(contents(back.stores));
  });

  it("writes a checkpoint in which every occupied slot changed as a base, and deletes the chain it replaces", async () => {
    const dir = scratchDir("chain-complete");
    const { chain, stores } = await buildChain(dir, 3);
    // Updates spread over every slot of both pipelines.
    mutate(stores, prng(2), 20_000);
    const result = await checkpoint(chain, stores, 99n);
    expect(result).toMatchObject({ kind: "base", seq: 5 });
    await chain.settled();
    expect(files(dir)).toEqual([chainFileName("base", 5)]);
    expect(contents((await restore(dir)).stores)).toEqual(contents(stores));
  });

  it("compacts base and deltas into a new base numbered as the last delta, in the background, while deltas go on", async () => {
    const dir = scratchDir("chain-compact");
    const { chain, states } = await buildChain(dir, 6);
    const compacted = await chain.compact();
    expect(compacted).toMatchObject({ seq: 7, files: 7 });
    expect(files(dir)).toEqual([chainFileName("base", 7)]);
    expect(contents((await restore(dir)).stores)).toEqual(states[7]);

    // By policy: two deltas past the base start a compaction; checkpoints do not wait for it.
    const policed = await openCheckpointChain(dir, { log: recordingLog(), policy: { deltaBytesRatio: 1e9, maxDeltas: 2 } });
    const live = makeStores();
    await policed.load((pipeline, slot, state) => importSlot(live[pipeline]!, slot, state));
    for (const stages of live) for (const s of stages) s.dirty.fill(0);
    const random = prng(3);
    for (let i = 0; i < 8; i++) {
      mutate(live, random, 20, [i, i + 10]);
      await checkpoint(policed, live, BigInt(100 + i));
    }
    await policed.settled();
    const { base, deltas } = policed.chain();
    expect(base!.seq).toBeGreaterThan(7);
    expect(deltas.length).toBeLessThan(2);
    // What is on disk is exactly the chain in force.
    expect(files(dir)).toEqual([chainFileName("base", base!.seq), ...deltas.map((d) => chainFileName("delta", d.seq))]);
    const back = await restore(dir);
    expect(back.restored!.seq).toBe(15);
    expect(back.restored!.sources[0]).toEqual({ progress: 107n });
    expect(contents(back.stores)).toEqual(contents(live));
  });

  it("a failed write makes the next checkpoint a base, so slots captured by the failed one are not lost", async () => {
    const dir = scratchDir("chain-failed");
    const { chain, stores } = await buildChain(dir, 1);
    mutate(stores, prng(4), 30, [1, 2]);
    // The data dir vanishes under the engine: the write fails.
    rmSync(dir, { recursive: true });
    await expect(checkpoint(chain, stores, 5n)).rejects.toThrow();
    expect(chain.wantsBase).toBe(true);
    // Slots 1 and 2 were captured (clean now) by the failed write; the base holds them anyway.
    mkdirSync(dir, { recursive: true });
    expect(await checkpoint(chain, stores, 6n)).toMatchObject({ kind: "base", seq: 3 });
    expect(contents((await restore(dir)).stores)).toEqual(contents(stores));
  });
});

describe("checkpoint chain: crash safety", () => {
  it("ignores a torn delta and every delta after it, restoring the checkpoint before it", async () => {
    const dir = scratchDir("chain-torn");
    const { states } = await buildChain(dir, 4);
    const torn = join(dir, chainFileName("delta", 3));
    truncateSync(torn, Math.floor(readFileSync(torn).length / 2));
    const warnings: Warning[] = [];
    const back = await restore(dir, warnings);
    expect(back.restored!.seq).toBe(2);
    expect(contents(back.stores)).toEqual(states[2]);
    expect(warnings.map((w) => w.msg)).toEqual(["ignoring a torn checkpoint delta: restoring the checkpoint before it"]);
    // The torn delta and the ones past it are gone, so none can join the chain that goes on from here.
    expect(files(dir)).toEqual([chainFileName("base", 1), chainFileName("delta", 2)]);
    mutate(back.stores, prng(5), 10, [4]);
    expect(await checkpoint(back.chain, back.stores, 77n)).toMatchObject({ kind: "delta", seq: 3 });
    expect(contents((await restore(dir)).stores)).toEqual(contents(back.stores));
  });

  it("treats a delta whose bytes fail their checksum as torn", async () => {
    const dir = scratchDir("chain-crc");
    const { states } = await buildChain(dir, 3);
    const damaged = join(dir, chainFileName("delta", 4));
    const bytes = readFileSync(damaged);
    // A byte inside the first payload (after the 24-byte header and the meta).
    const metaLength = bytes.readUInt32LE(12);
    bytes[24 + metaLength + 5]! ^= 0xff;
    writeFileSync(damaged, bytes);
    const warnings: Warning[] = [];
    const back = await restore(dir, warnings);
    expect(back.restored!.seq).toBe(3);
    expect(contents(back.stores)).toEqual(states[3]);
    expect(warnings).toHaveLength(1);
  });

  it("ignores and deletes a leftover temporary file (a crash before a delta's rename)", async () => {
    const dir = scratchDir("chain-tmp");
    const { states } = await buildChain(dir, 2);
    // What a crash mid-write leaves: the next delta's temporary file, cut short.
    const next = readFileSync(join(dir, chainFileName("delta", 3)));
    writeFileSync(join(dir, `${chainFileName("delta", 4)}.tmp`), next.subarray(0, next.length - 10));
    const back = await restore(dir);
    expect(back.restored!.seq).toBe(3);
    expect(contents(back.stores)).toEqual(states[3]);
    expect(files(dir).some((n) => n.endsWith(".tmp"))).toBe(false);
  });

  it("survives a crash mid-compaction: before the new base's rename, and after it before the old files are deleted", async () => {
    // Before the rename: the old chain whole, the new base a temporary file.
    const before = scratchDir("chain-compact-crash-a");
    const a = await buildChain(before, 3);
    writeFileSync(join(before, `${chainFileName("base", 4)}.tmp`), readFileSync(join(before, chainFileName("base", 1))).subarray(0, 1000));
    const backA = await restore(before);
    expect(backA.restored).toMatchObject({ seq: 4, files: 4 });
    expect(contents(backA.stores)).toEqual(a.states[4]);
    expect(files(before)).toEqual([1, 2, 3, 4].map((seq) => chainFileName(seq === 1 ? "base" : "delta", seq)));

    // After the rename: the new base and the files it supersedes side by side, and a delta written after it.
    const after = scratchDir("chain-compact-crash-b");
    const b = await buildChain(after, 3);
    const old = files(after);
    const saved = old.map((name) => [name, readFileSync(join(after, name))] as const);
    await b.chain.compact();
    mutate(b.stores, prng(6), 10, [2]);
    await checkpoint(b.chain, b.stores, 50n);
    for (const [name, bytes] of saved) writeFileSync(join(after, name), bytes);
    expect(files(after)).toEqual([...old, chainFileName("base", 4), chainFileName("delta", 5)].sort());
    const backB = await restore(after);
    expect(backB.restored).toMatchObject({ seq: 5, files: 2 });
    expect(contents(backB.stores)).toEqual(contents(b.stores));
    expect(files(after)).toEqual([chainFileName("base", 4), chainFileName("delta", 5)]);
  });

  it("falls back to the older base when the newest is not whole, and refuses a dir with deltas and no base", async () => {
    const dir = scratchDir("chain-bad-base");
    const { chain, states } = await buildChain(dir, 3);
    const keep = files(dir).map((name) => [name, readFileSync(join(dir, name))] as const);
    await chain.compact();
    for (const [name, bytes] of keep) writeFileSync(join(dir, name), bytes);
    truncateSync(join(dir, chainFileName("base", 4)), 100);
    const warnings: Warning[] = [];
    const back = await restore(dir, warnings);
    expect(back.restored).toMatchObject({ seq: 4, files: 4 });
    expect(contents(back.stores)).toEqual(states[4]);
    expect(warnings.map((w) => w.msg)).toEqual(["ignoring a checkpoint base that is not whole; trying an older one"]);

    rmSync(join(dir, chainFileName("base", 1)));
    await expect(openCheckpointChain(dir, { log: recordingLog() })).rejects.toMatchObject({ code: ErrorCode.BAD_CHECKPOINT, message: expect.stringMatching(/delta file\(s\) but no base/) });
  });

  it("refuses a chain file of another format version with a typed error", async () => {
    const dir = scratchDir("chain-version");
    await buildChain(dir, 1);
    const path = join(dir, chainFileName("base", 1));
    const bytes = readFileSync(path);
    bytes.writeUInt32LE(3, 4);
    writeFileSync(path, bytes);
    await expect(openCheckpointChain(dir, { log: recordingLog() })).rejects.toMatchObject({ code: ErrorCode.BAD_CHECKPOINT, message: expect.stringMatching(/format 3; this keyway reads format 2/) });
  });
});

describe("checkpoint chain: a format-1 checkpoint.v8", () => {
  it("is restored, and replaced by a base at the first checkpoint", async () => {
    const dir = scratchDir("chain-legacy");
    const stores = makeStores();
    mutate(stores, prng(8), 3000);
    const slots = stores.map((stages) => captureSlots(stages, true).slots as Array<[number, Uint8Array]>);
    await writeLegacyCheckpoint(dir, { app: APP, slotCount: SLOTS, sources: [{ progress: 12n }, undefined], slots, createdAtMs: Date.now() });

    const back = await restore(dir);
    expect(back.restored).toMatchObject({ app: APP, seq: 0, legacy: true, sources: [{ progress: 12n }, undefined] });
    expect(contents(back.stores)).toEqual(contents(stores));
    expect(back.chain.wantsBase).toBe(true);
    expect(await checkpoint(back.chain, back.stores, 13n)).toMatchObject({ kind: "base", seq: 1 });
    await back.chain.settled();
    expect(existsSync(join(dir, LEGACY_FILE_NAME))).toBe(false);
    expect(contents((await restore(dir)).stores)).toEqual(contents(stores));
  });

  it("of an unknown version is refused with BAD_CHECKPOINT", async () => {
    const dir = scratchDir("chain-legacy-bad");
    writeFileSync(join(dir, LEGACY_FILE_NAME), serialize({ v: 7, checkpoint: {} }));
    await expect(openCheckpointChain(dir, { log: recordingLog() })).rejects.toMatchObject({ code: ErrorCode.BAD_CHECKPOINT, message: expect.stringMatching(/unknown format \(version 7\)/) });
  });
});
