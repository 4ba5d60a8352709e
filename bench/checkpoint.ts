/**
 * Checkpoints with --data-dir: incremental checkpoints (a delta of the slots changed since the
 * last checkpoint) against a full checkpoint (every occupied slot, a base) of the same state, in
 * the same run, through the engine's own code (bench/lib/checkpoint-probe.ts, in a process of its
 * own with a large heap). Also the restart: restoring a base and its deltas against the base alone,
 * and the full checkpoint against the format-1 file every checkpoint was before the chain.
 */
import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { freemem } from "node:os";
import { join } from "node:path";
import type { BenchContext } from "./lib/context.ts";
import { describeExit, spawnNode, waitOrKill } from "./lib/child.ts";
import type { CheckpointProbeResult, CheckpointSample } from "./lib/checkpoint-probe.ts";
import { formatCount, type BenchResult, type Comparison } from "./lib/report.ts";
import { median, ratio } from "./lib/stats.ts";

/** 10M keys wants about 4 GiB of heap at its peak (the store, its key strings, a restored copy, a full capture). */
const KEYS_FULL = 10_000_000;
const KEYS_QUICK = 200_000;
const BYTES_PER_KEY_NEEDED = 600;
const HEAP_MIB = 12_000;
const CHILD_TIMEOUT_MS = 10 * 60_000;

const MiB = 2 ** 20;

export async function runCheckpoint(ctx: BenchContext): Promise<BenchResult> {
  const startedAt = performance.now();
  const errors: string[] = [];
  const notes: string[] = [];
  let keys = ctx.quick ? KEYS_QUICK : KEYS_FULL;
  // The largest count that fits the free memory, when 10M does not.
  const fits = Math.floor(freemem() / BYTES_PER_KEY_NEEDED / 1_000_000) * 1_000_000;
  if (!ctx.quick && fits < keys) {
    keys = Math.max(1_000_000, fits);
    notes.push(`only ${(freemem() / 2 ** 30).toFixed(1)} GiB free: ${formatCount(keys)} keys instead of ${formatCount(KEYS_FULL)}`);
  }
  const dir = join(ctx.dataDir, "checkpoint");
  const out = join(ctx.dataDir, "checkpoint-result.json");
  mkdirSync(ctx.dataDir, { recursive: true });
  rmSync(out, { force: true });

  ctx.log(`checkpoint: ${formatCount(keys)} keys, 4096 slots, data dir ${dir}`);
  const child = spawnNode(["--expose-gc", `--max-old-space-size=${HEAP_MIB}`, "--import", "tsx", "bench/lib/checkpoint-probe.ts", String(keys), dir, out], {
    cwd: ctx.root,
    onStderrLine: (line) => ctx.log(`checkpoint: ${line.replace(/^\[checkpoint-probe\] /, "")}`),
  });
  const { result, timedOut } = await waitOrKill(child, CHILD_TIMEOUT_MS);
  rmSync(dir, { recursive: true, force: true });
  if (timedOut || result.exitCode !== 0 || !existsSync(out)) {
    errors.push(`checkpoint probe failed: ${timedOut ? `timed out after ${CHILD_TIMEOUT_MS / 1000} s` : describeExit(result)}`);
    return { name: "checkpoint", title: "Checkpoints (--data-dir): incremental vs full", ok: false, errors, notes, comparisons: [], details: {}, durationMs: performance.now() - startedAt };
  }
  const probe = JSON.parse(readFileSync(out, "utf8")) as CheckpointProbeResult;
  rmSync(out, { force: true });

  const { full } = probe;
  const comparisons: Comparison[] = [];
  const med = (samples: CheckpointSample[], pick: (s: CheckpointSample) => number) => median(samples.map(pick));
  for (const p of probe.patterns) {
    const capture = med(p.intervals, (s) => s.captureMs);
    const write = med(p.intervals, (s) => s.writeMs);
    const bytes = med(p.intervals, (s) => s.bytes) / MiB;
    const label = `${p.label} (${about(p.keysChanged)} keys)`;
    comparisons.push(
      { metric: `${label}: pause (capture)`, unit: "ms", engine: capture, baseline: full.captureMs, ratio: ratio(capture, full.captureMs), better: "lower" },
      { metric: `${label}: durable write`, unit: "ms", engine: write, baseline: full.writeMs, ratio: ratio(write, full.writeMs), better: "lower" },
      { metric: `${label}: bytes`, unit: "MiB", engine: bytes, baseline: full.bytes / MiB, ratio: ratio(bytes, full.bytes / MiB), better: "lower" },
    );
  }
  const { restoreBase, restoreChain, restoreFormatOne, formatOne, compaction } = probe;
  comparisons.push(
    { metric: `restart: restore base + ${restoreChain.files - 1} deltas vs base alone`, unit: "ms", engine: restoreChain.ms, baseline: restoreBase.ms, ratio: ratio(restoreChain.ms, restoreBase.ms), better: "lower" },
    { metric: "full checkpoint, format 2 base vs format 1 (before): pause", unit: "ms", engine: full.captureMs, baseline: formatOne.captureMs, ratio: ratio(full.captureMs, formatOne.captureMs), better: "lower" },
    { metric: "full checkpoint, format 2 base vs format 1 (before): write", unit: "ms", engine: full.writeMs, baseline: formatOne.writeMs, ratio: ratio(full.writeMs, formatOne.writeMs), better: "lower" },
    { metric: "full checkpoint, format 2 base vs format 1 (before): bytes", unit: "MiB", engine: full.bytes / MiB, baseline: formatOne.bytes / MiB, ratio: ratio(full.bytes, formatOne.bytes), better: "lower" },
    { metric: "restart: restore format 2 base vs format 1 (before)", unit: "ms", engine: restoreBase.ms, baseline: restoreFormatOne.ms, ratio: ratio(restoreBase.ms, restoreFormatOne.ms), better: "lower" },
  );

  const slotsWritten = probe.patterns.map((p) => `${p.label}: ${p.intervals.map((s) => `${s.slots} slots as a ${s.kind}`).join(", ")}`);
  notes.push(
    `${formatCount(probe.keys)} keys "user:<i>" with state {count} in one keyed stage of ${probe.slotCount} slots (filled in ${(probe.fillMs / 1000).toFixed(1)} s, heap ${probe.heapUsedMiB.toFixed(0)} MiB). keyway column = an incremental checkpoint after the keys of its row changed (median over its intervals); baseline = a full checkpoint (every occupied slot, written as a base) of the same state, same run. Each row's change pattern runs in its own intervals, one after the other, on the same chain.`,
    "pause = captureSlots at the barrier (the pipelines wait for it: exporting the slots to write); durable write = temporary file, fsync, rename, directory fsync, after the pipelines resumed. Both in the probe process, one thread; the disk is whatever the bench machine has (fsync times vary with other I/O on it).",
    `slots written per interval: ${slotsWritten.join("; ")}. A delta holds each changed slot whole: n keys changed at random dirty about 4096 x (1 - e^(-n/4096)) slots, so a few thousand already dirty most of them; a checkpoint in which every occupied slot changed is written as a base.`,
    `restore = openCheckpointChain (deltas' checksums checked) + importSlot of each slot's last version + clear the dirty flags, into an empty store, as the engine does at start: base alone ${restoreBase.ms.toFixed(0)} ms (${(restoreBase.bytes / MiB).toFixed(0)} MiB decoded), base + ${restoreChain.files - 1} deltas ${restoreChain.ms.toFixed(0)} ms (${(restoreChain.bytes / MiB).toFixed(0)} MiB decoded: a slot a delta rewrote is decoded once), format 1 ${restoreFormatOne.ms.toFixed(0)} ms.`,
    `compaction (background, off the barrier) of the base and ${compaction.files - 1} deltas into a new base: ${compaction.ms.toFixed(0)} ms, ${(compaction.bytes / MiB).toFixed(0)} MiB written (payloads copied with their checksums, never decoded).`,
    `probe process: peak RSS ${result.maxRssKiB === null ? "?" : `${(result.maxRssKiB / 1024).toFixed(0)} MiB`}, ${(result.wallMs / 1000).toFixed(0)} s wall.`,
  );

  return {
    name: "checkpoint",
    title: "Checkpoints (--data-dir): incremental vs full",
    ok: errors.length === 0,
    errors,
    notes,
    comparisons,
    details: { probe, child: { wallMs: result.wallMs, maxRssKiB: result.maxRssKiB, cpuSec: result.cpuSec } },
    durationMs: performance.now() - startedAt,
  };
}

/** A key count for a row's label: 100k, 1k, 10. */
function about(n: number): string {
  if (n >= 1e6) return `${(n / 1e6).toFixed(n % 1e6 === 0 ? 0 : 1)}M`;
  if (n >= 1e3) return `${Math.round(n / 1e3)}k`;
  return String(n);
}
