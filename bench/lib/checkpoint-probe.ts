/**
 * The checkpoint benchmark's measuring process (bench/checkpoint.ts runs it alone, with a large
 * heap): N keys in a keyed state store of 4096 slots, checkpointed through the engine's own code
 * (captureSlots at the barrier, then the checkpoint chain's durable write, restore through
 * openCheckpointChain + importSlot as the engine does), in a data dir on the bench's disk.
 *
 * Order: fill the store; a full checkpoint (every occupied slot, a base: what every checkpoint
 * cost before the chain); the same state as a format-1 checkpoint.v8 (the writer of before this
 * change); a restore of the base alone; then intervals, each changing some keys and taking an
 * incremental checkpoint, for each change pattern; a restore of the base and those deltas; a
 * compaction of that chain; the "1% of keys spread" intervals last (each is written as a base, as
 * every occupied slot changed, and replaces the chain); a restore of the format-1 file.
 *
 * usage: node --expose-gc --max-old-space-size=M --import tsx bench/lib/checkpoint-probe.ts KEYS DIR OUT.json
 */
import { mkdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { openCheckpointChain, type CheckpointChain } from "../../src/durability/checkpoint-chain.ts";
import { writeLegacyCheckpoint } from "../../src/durability/checkpoint-file.ts";
import { silentLogger } from "../../src/log/logger.ts";
import { createKeyHash, SLOT_COUNT_DEFAULT, slotOfHash } from "../../src/routing/hash.ts";
import { captureSlots, clearDirty, createStageStore, importSlot, stateFor, type StageStore } from "../../src/runtime/state-store.ts";

export interface CheckpointSample {
  /** Pipelines paused: captureSlots (export the slots to write). */
  captureMs: number;
  /** Temporary file, fsync, rename, directory fsync. */
  writeMs: number;
  bytes: number;
  slots: number;
  kind: "base" | "delta" | "format-1";
}

export interface PatternResult {
  name: string;
  label: string;
  keysChanged: number;
  intervals: CheckpointSample[];
}

export interface RestoreSample {
  ms: number;
  files: number;
  bytes: number;
  keys: number;
}

export interface CheckpointProbeResult {
  keys: number;
  slotCount: number;
  fillMs: number;
  heapUsedMiB: number;
  full: CheckpointSample;
  formatOne: CheckpointSample;
  patterns: PatternResult[];
  restoreBase: RestoreSample;
  restoreChain: RestoreSample;
  restoreFormatOne: RestoreSample;
  compaction: { ms: number; files: number; bytes: number };
}

const gc = (globalThis as { gc?: () => void }).gc ?? (() => undefined);
const [keysArg, dirArg, outArg] = process.argv.slice(2);
const KEYS = Number(keysArg);
if (!Number.isSafeInteger(KEYS) || KEYS <= 0 || dirArg === undefined || outArg === undefined) {
  process.stderr.write("usage: checkpoint-probe.ts KEYS DIR OUT.json\n");
  process.exit(2);
}
const log = (message: string) => process.stderr.write(`[checkpoint-probe] ${message}\n`);
const APP = "checkpoint-bench";
const SLOTS = SLOT_COUNT_DEFAULT;

rmSync(dirArg, { recursive: true, force: true });
mkdirSync(dirArg, { recursive: true });
const chainDir = join(dirArg, "chain");
const formatOneDir = join(dirArg, "format-1");

// Seeded, so every run changes the same keys.
let seed = 0x9e3779b9;
const random = (): number => {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};

const hashOf = await createKeyHash();
const init = () => ({ count: 0 });
const keys: string[] = new Array(KEYS);
const hashes = new Int32Array(KEYS);
const store = createStageStore(SLOTS, hashOf);
const stores: StageStore[] = [store];
let startedAt = performance.now();
for (let i = 0; i < KEYS; i++) {
  const key = `user:${i}`;
  keys[i] = key;
  const hash = hashOf(key);
  hashes[i] = hash;
  (stateFor(store, hash, key, init) as { count: number }).count = 1 + (i % 1000);
}
const fillMs = performance.now() - startedAt;
gc();
const heapUsedMiB = process.memoryUsage().heapUsed / 2 ** 20;
log(`${KEYS} keys in ${(fillMs / 1000).toFixed(1)} s, heap ${heapUsedMiB.toFixed(0)} MiB`);

let position = 0n;
/** One checkpoint as the engine takes it: capture at the barrier (the base when the chain wants one), then the durable write. */
async function checkpoint(chain: CheckpointChain): Promise<CheckpointSample> {
  gc();
  const t0 = performance.now();
  const captured = captureSlots(stores, chain.wantsBase);
  const t1 = performance.now();
  const written = await chain.write({
    app: APP,
    slotCount: SLOTS,
    sources: [{ progress: ++position }],
    slots: [captured.slots],
    complete: captured.complete,
    createdAtMs: Date.now(),
  });
  const t2 = performance.now();
  return { captureMs: t1 - t0, writeMs: t2 - t1, bytes: written.bytes, slots: captured.slots.length, kind: written.kind };
}

async function restore(dir: string): Promise<RestoreSample> {
  gc();
  const target = createStageStore(SLOTS, hashOf);
  const t0 = performance.now();
  const chain = await openCheckpointChain(dir, { log: silentLogger(), policy: { deltaBytesRatio: Infinity, maxDeltas: Infinity } });
  let bytes = 0;
  await chain.load((_pipeline, slot, state) => {
    bytes += state.byteLength;
    importSlot([target], slot, state);
  });
  clearDirty([target]);
  const ms = performance.now() - t0;
  if (target.keyCount !== KEYS) throw new Error(`restored ${target.keyCount} keys, expected ${KEYS}`);
  return { ms, files: chain.restored!.files, bytes, keys: target.keyCount };
}

// The chain never compacts by itself here: the compaction is measured on its own.
const chain = await openCheckpointChain(chainDir, { log: silentLogger(), policy: { deltaBytesRatio: Infinity, maxDeltas: Infinity } });
const full = await checkpoint(chain);
log(`full checkpoint: capture ${full.captureMs.toFixed(0)} ms, write ${full.writeMs.toFixed(0)} ms, ${(full.bytes / 2 ** 20).toFixed(1)} MiB`);

// Format 1, as every checkpoint was written before the chain: every slot, one node:v8 file.
gc();
startedAt = performance.now();
const all = captureSlots(stores, true);
const formatOneCaptureMs = performance.now() - startedAt;
const formatOneSlots = all.slots as Array<[number, Uint8Array]>;
startedAt = performance.now();
await writeLegacyCheckpoint(formatOneDir, { app: APP, slotCount: SLOTS, sources: [{ progress: position }], slots: [formatOneSlots], createdAtMs: Date.now() });
const formatOne: CheckpointSample = {
  captureMs: formatOneCaptureMs,
  writeMs: performance.now() - startedAt,
  bytes: statSync(join(formatOneDir, "checkpoint.v8")).size,
  slots: formatOneSlots.length,
  kind: "format-1",
};
all.slots.length = 0;
log(`format-1 checkpoint: capture ${formatOne.captureMs.toFixed(0)} ms, write ${formatOne.writeMs.toFixed(0)} ms`);

const restoreBase = await restore(chainDir);
log(`restore of the base: ${restoreBase.ms.toFixed(0)} ms`);

/** Adds one to the count of each key at these indexes (the engine's update: stateFor, then a change). */
function change(indexes: ArrayLike<number>): void {
  for (let j = 0; j < indexes.length; j++) {
    const i = indexes[j]!;
    (stateFor(store, hashes[i]!, keys[i]!, init) as { count: number }).count++;
  }
}
function randomKeys(n: number): Uint32Array {
  const out = new Uint32Array(n);
  for (let j = 0; j < n; j++) out[j] = Math.floor(random() * KEYS);
  return out;
}
/** 1% of the keys, all in 1% of the slots: every key of the slots [from, from + slotSpan). */
function clusteredKeys(from: number, slotSpan: number): Uint32Array {
  const out: number[] = [];
  for (let i = 0; i < KEYS; i++) {
    const slot = slotOfHash(hashes[i]!, store.shift);
    if (slot >= from && slot < from + slotSpan) out.push(i);
  }
  return Uint32Array.from(out);
}

const onePercent = Math.max(1, Math.round(KEYS / 100));
const slotSpan = Math.max(1, Math.round(SLOTS / 100));
const patterns: Array<{ name: string; label: string; intervals: number; keys: (interval: number) => Uint32Array }> = [
  { name: "clustered-1pct", label: "1% of keys, in 1% of slots", intervals: 3, keys: (n) => clusteredKeys((n * 997) % (SLOTS - slotSpan), slotSpan) },
  { name: "spread-0.01pct", label: "0.01% of keys, spread", intervals: 3, keys: () => randomKeys(Math.max(1, Math.round(KEYS / 10_000))) },
  { name: "spread-0.1pct", label: "0.1% of keys, spread", intervals: 1, keys: () => randomKeys(Math.max(1, Math.round(KEYS / 1000))) },
];
const spreadOnePercent = { name: "spread-1pct", label: "1% of keys, spread", intervals: 1, keys: () => randomKeys(onePercent) };

async function runPattern(p: (typeof patterns)[number]): Promise<PatternResult> {
  const intervals: CheckpointSample[] = [];
  let keysChanged = 0;
  for (let n = 0; n < p.intervals; n++) {
    const indexes = p.keys(n);
    keysChanged = indexes.length;
    change(indexes);
    const sample = await checkpoint(chain);
    intervals.push(sample);
    log(`${p.label}: ${indexes.length} keys changed, ${sample.slots} slots, ${sample.kind}, capture ${sample.captureMs.toFixed(0)} ms, write ${sample.writeMs.toFixed(0)} ms, ${(sample.bytes / 2 ** 20).toFixed(2)} MiB`);
  }
  return { name: p.name, label: p.label, keysChanged, intervals };
}

const results: PatternResult[] = [];
for (const p of patterns) results.push(await runPattern(p));

const restoreChain = await restore(chainDir);
log(`restore of the base and ${restoreChain.files - 1} deltas: ${restoreChain.ms.toFixed(0)} ms`);

gc();
const compacted = await chain.compact();
if (compacted === undefined) throw new Error("nothing to compact");
const compaction = { ms: compacted.ms, files: compacted.files, bytes: compacted.bytes };
log(`compaction of ${compacted.files} files: ${compacted.ms.toFixed(0)} ms`);

results.push(await runPattern(spreadOnePercent));
await chain.settled();

const restoreFormatOne = await restore(formatOneDir);
log(`restore of the format-1 file: ${restoreFormatOne.ms.toFixed(0)} ms`);

const result: CheckpointProbeResult = { keys: KEYS, slotCount: SLOTS, fillMs, heapUsedMiB, full, formatOne, patterns: results, restoreBase, restoreChain, restoreFormatOne, compaction };
writeFileSync(outArg, `${JSON.stringify(result)}\n`);
rmSync(dirArg, { recursive: true, force: true });
