/**
 * Incremental checkpoints in a data dir: a chain of a base (every occupied slot) and deltas (the
 * slots changed since the previous checkpoint, emptied slots included, and the sources'
 * progress), one file per checkpoint (format: `chain-file.ts`), named by the checkpoint's number:
 *
 *   base-<seq>.ckpt    delta-<seq>.ckpt    (12 digits or more, so names sort by number)
 *
 * The chain in force is the newest whole base and the deltas numbered right after it, up to the
 * first missing or torn one. Restore reads the base and applies the deltas in order, each slot's
 * last version only. Every file is written durably (temporary, fsync, rename, fsync of the dir)
 * before the sources hear of it, so a crash at any point leaves a whole chain: a temporary file
 * or a torn delta is ignored, and the chain ends at the delta before it.
 *
 * Compaction runs in the background once the deltas' bytes pass `deltaBytesRatio` of the base's,
 * or `maxDeltas` deltas are waiting: it merges the base and the deltas written so far, file to
 * file (slot payloads copied, never decoded), into a new base numbered as the last delta it
 * covers. Checkpoints go on meanwhile: deltas after that number apply to the new base as well.
 * Files the new base supersedes are deleted only once it is durable. A checkpoint whose slots are
 * the whole state (every occupied slot changed) is written as a base at once.
 */
import { readdirSync } from "node:fs";
import { mkdir, readdir, unlink } from "node:fs/promises";
import { join } from "node:path";
import { ErrorCode, KeywayError } from "../errors.ts";
import type { Logger } from "../log/logger.ts";
import { ChecksumError, KIND_BASE, KIND_DELTA, openChainFile, readPayloads, syncDir, TornFileError, writeChainFile, type ChainFile, type ChainMeta, type PayloadSource } from "./chain-file.ts";
import { LEGACY_FILE_NAME, readLegacyCheckpoint, type LegacyCheckpoint } from "./checkpoint-file.ts";

/** What the engine captured at a checkpoint's barrier. */
export interface Checkpoint {
  app: string;
  slotCount: number;
  /** Per pipeline, in app order: the source's progress (a bigint position or its progressAt() value). */
  sources: Array<{ progress: unknown } | undefined>;
  /** Per pipeline, in app order: [slot, exported state, or null for a slot that is now empty]. */
  slots: Array<Array<[number, Uint8Array | null]>>;
  /** The slots are the whole state (every occupied slot is among them): written as a base. */
  complete: boolean;
  createdAtMs: number;
}

/** The checkpoint a data dir holds, before its slots are loaded. */
export interface RestoredCheckpoint {
  app: string;
  slotCount: number;
  pipelines: number;
  sources: Array<{ progress: unknown } | undefined>;
  createdAtMs: number;
  /** The number of the last checkpoint applied (0 for a format-1 file). */
  seq: number;
  /** Files read: the base and its deltas, or the one format-1 file. */
  files: number;
  /** From a format-1 `checkpoint.v8` (an older keyway's data dir). */
  legacy: boolean;
}

export interface CompactionPolicy {
  /** Compact once the deltas' bytes pass this fraction of the base's. */
  deltaBytesRatio: number;
  /** ... or once this many deltas wait. */
  maxDeltas: number;
}

export const COMPACTION_DEFAULT: CompactionPolicy = { deltaBytesRatio: 0.5, maxDeltas: 64 };

export interface WriteResult {
  kind: "base" | "delta";
  seq: number;
  bytes: number;
}

export interface CompactionResult {
  seq: number;
  /** Files merged: the base and the deltas. */
  files: number;
  bytes: number;
  ms: number;
}

export interface CheckpointChain {
  readonly dir: string;
  /** What the data dir held when opened; undefined for a fresh one. */
  readonly restored: RestoredCheckpoint | undefined;
  /**
   * Hands every slot of the restored checkpoint to `apply`, each slot's last version once. The
   * bytes are valid during the call only (a read buffer reused): import them, do not keep them.
   */
  load(apply: (pipeline: number, slot: number, state: Uint8Array) => void): Promise<void>;
  /** The next checkpoint must hold every occupied slot: no base yet, or the last write failed. */
  readonly wantsBase: boolean;
  /**
   * Writes a checkpoint durably (a delta, or a base when it is complete or one is wanted), then
   * starts a compaction in the background when the policy says so (never with `final`).
   */
  write(checkpoint: Checkpoint, options?: { final?: boolean }): Promise<WriteResult>;
  /** Compacts the chain now (after any compaction running); undefined when there is nothing to merge. */
  compact(): Promise<CompactionResult | undefined>;
  /** Settles once background work (compaction, deleting superseded files) is done; never rejects. */
  settled(): Promise<void>;
  /** The chain in force: its base's number and size, and its deltas'. */
  chain(): { base: { seq: number; bytes: number } | undefined; deltas: Array<{ seq: number; bytes: number }> };
}

const BASE_PREFIX = "base-";
const DELTA_PREFIX = "delta-";
const SUFFIX = ".ckpt";
const NAME = /^(base|delta)-(\d{12,})\.ckpt$/;

export function chainFileName(kind: "base" | "delta", seq: number): string {
  return `${kind === "base" ? BASE_PREFIX : DELTA_PREFIX}${String(seq).padStart(12, "0")}${SUFFIX}`;
}

/** The highest checkpoint number among the chain files in dir (for watchers: tests, benchmarks); undefined when none. */
export function latestCheckpointSeq(dir: string): number | undefined {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return undefined;
  }
  let latest: number | undefined;
  for (const name of names) {
    const m = NAME.exec(name);
    if (m !== null) latest = Math.max(latest ?? 0, Number(m[2]));
  }
  return latest;
}

const slotKey = (slotCount: number, pipeline: number, slot: number): number => pipeline * slotCount + slot;

/**
 * Opens the chain in dir (creating dir): finds the checkpoint in force, and deletes what is not
 * part of it (leftover temporary files, superseded files, deltas past a torn one) before anything
 * is written. A format-1 `checkpoint.v8` is read when there is no chain yet.
 */
export async function openCheckpointChain(dir: string, options: { log: Logger; policy?: Partial<CompactionPolicy> }): Promise<CheckpointChain> {
  const { log } = options;
  const policy: CompactionPolicy = { ...COMPACTION_DEFAULT, ...options.policy };
  await mkdir(dir, { recursive: true });
  const names = await readdir(dir);
  const bases: number[] = [];
  const deltas = new Set<number>();
  // Temporary files of a write a crash interrupted (chain files, or a format-1 checkpoint's).
  const stale: string[] = names.filter((n) => n.endsWith(".tmp") && (NAME.test(n.slice(0, -4)) || n === `${LEGACY_FILE_NAME}.tmp`));
  for (const name of names) {
    const m = NAME.exec(name);
    if (m === null) continue;
    (m[1] === "base" ? bases : { push: (n: number) => deltas.add(n) }).push(Number(m[2]));
  }
  bases.sort((a, b) => b - a);
  const path = (kind: "base" | "delta", seq: number) => join(dir, chainFileName(kind, seq));

  // The newest whole base, then its deltas up to the first missing or torn one.
  let files: ChainFile[] = [];
  for (const seq of bases) {
    try {
      const base = await openChainFile(path("base", seq));
      if (base.kind !== KIND_BASE || base.meta.seq !== seq) throw new TornFileError("its header does not match its name");
      files = [base];
      break;
    } catch (err) {
      if (!(err instanceof TornFileError)) throw asBadCheckpoint(err, path("base", seq));
      log.warn({ file: path("base", seq), reason: err.message }, "ignoring a checkpoint base that is not whole; trying an older one");
    }
  }
  if (files.length === 0 && bases.length > 0) {
    throw new KeywayError(ErrorCode.BAD_CHECKPOINT, `no whole checkpoint base in ${dir}: ${bases.length} base file(s), all damaged`);
  }
  if (files.length === 0 && deltas.size > 0) {
    throw new KeywayError(ErrorCode.BAD_CHECKPOINT, `checkpoint in ${dir} has ${deltas.size} delta file(s) but no base: it cannot be restored`);
  }
  if (files.length > 0) {
    const base = files[0]!;
    for (let seq = base.meta.seq + 1; deltas.has(seq); seq++) {
      const file = path("delta", seq);
      try {
        const delta = await openChainFile(file);
        if (delta.kind !== KIND_DELTA || delta.meta.seq !== seq) throw new TornFileError("its header does not match its name");
        for await (const _ of readPayloads(file, delta.entries, true));
        if (delta.meta.app !== base.meta.app || delta.meta.slotCount !== base.meta.slotCount || delta.meta.pipelines !== base.meta.pipelines) {
          throw new KeywayError(ErrorCode.BAD_CHECKPOINT, `${file} belongs to app "${delta.meta.app}", its base ${base.path} to "${base.meta.app}"`);
        }
        files.push(delta);
      } catch (err) {
        if (!(err instanceof TornFileError) && !(err instanceof ChecksumError)) throw asBadCheckpoint(err, file);
        log.warn({ file, reason: err instanceof Error ? err.message : String(err) }, "ignoring a torn checkpoint delta: restoring the checkpoint before it");
        break;
      }
    }
  }
  const inForce = new Set(files.map((f) => f.path));
  for (const seq of bases) if (!inForce.has(path("base", seq))) stale.push(chainFileName("base", seq));
  for (const seq of deltas) if (!inForce.has(path("delta", seq))) stale.push(chainFileName("delta", seq));

  let legacy: LegacyCheckpoint | undefined;
  if (files.length === 0) legacy = await readLegacyCheckpoint(dir);
  else if (names.includes(LEGACY_FILE_NAME)) stale.push(LEGACY_FILE_NAME);

  // Deleted durably before the first write: a delta past a torn one must never join a later chain.
  if (stale.length > 0) {
    await Promise.all(stale.map((name) => unlink(join(dir, name)).catch(ignoreMissing)));
    await syncDir(dir);
    log.debug({ dataDir: dir, deleted: stale }, "deleted checkpoint files outside the chain in force");
  }

  const last = files.at(-1);
  const restored: RestoredCheckpoint | undefined =
    last !== undefined
      ? { app: last.meta.app, slotCount: last.meta.slotCount, pipelines: last.meta.pipelines, sources: last.meta.sources, createdAtMs: last.meta.createdAtMs, seq: last.meta.seq, files: files.length, legacy: false }
      : legacy !== undefined
        ? { app: legacy.app, slotCount: legacy.slotCount, pipelines: legacy.slots.length, sources: legacy.sources, createdAtMs: legacy.createdAtMs, seq: 0, files: 1, legacy: true }
        : undefined;

  // The chain in force, as this process keeps it from now on.
  let base: { seq: number; bytes: number } | undefined = files.length > 0 ? { seq: files[0]!.meta.seq, bytes: files[0]!.size } : undefined;
  let chainDeltas = files.slice(1).map((f) => ({ seq: f.meta.seq, bytes: f.size }));
  let lastSeq = restored?.seq ?? 0;
  let wantsBase = base === undefined;
  // Background work runs one task at a time: compaction never races the deletions.
  let maintenance: Promise<unknown> = Promise.resolve();
  let compactionQueued = false;
  const background = <T>(task: () => Promise<T>): Promise<T> => {
    const result = maintenance.then(task);
    maintenance = result.catch(() => undefined);
    return result;
  };

  /** Deletes the files the chain in force no longer needs (never a temporary file: a write may be under way). */
  const prune = async (): Promise<void> => {
    if (base === undefined) return;
    const keepFrom = base.seq;
    const doomed = (await readdir(dir)).filter((name) => {
      if (name === LEGACY_FILE_NAME) return true;
      const m = NAME.exec(name);
      if (m === null) return false;
      const seq = Number(m[2]);
      return m[1] === "base" ? seq < keepFrom : seq <= keepFrom;
    });
    await Promise.all(doomed.map((name) => unlink(join(dir, name)).catch(ignoreMissing)));
  };

  const compactOnce = async (): Promise<CompactionResult | undefined> => {
    compactionQueued = false;
    if (base === undefined || chainDeltas.length === 0) return undefined;
    const startedAt = performance.now();
    const from = base;
    const covered = chainDeltas.slice();
    const inputs = await Promise.all([openChainFile(path("base", from.seq)), ...covered.map((d) => openChainFile(path("delta", d.seq)))]);
    const slotCount = inputs[0]!.meta.slotCount;
    // Each slot's last version: the file that wrote it last (an empty slot is left out of a base).
    const winner = new Map<number, number>();
    inputs.forEach((file, i) => {
      for (const e of file.entries) winner.set(slotKey(slotCount, e.pipeline, e.slot), i);
    });
    const lastMeta = inputs.at(-1)!.meta;
    const meta: ChainMeta = { ...lastMeta };
    async function* payloads(): AsyncGenerator<PayloadSource[]> {
      for (const [i, file] of inputs.entries()) {
        const kept = file.entries.filter((e) => e.length > 0 && winner.get(slotKey(slotCount, e.pipeline, e.slot)) === i);
        for await (const run of readPayloads(file.path, kept, false)) {
          yield run.map(({ entry, bytes }) => ({ pipeline: entry.pipeline, slot: entry.slot, bytes, crc: entry.crc }));
        }
      }
    }
    const target = path("base", meta.seq);
    const bytes = await writeChainFile(dir, target, KIND_BASE, meta, payloads());
    if (base !== undefined && base.seq > meta.seq) {
      // A complete checkpoint wrote a newer base meanwhile: this one is superseded already.
      await unlink(target).catch(ignoreMissing);
    } else {
      base = { seq: meta.seq, bytes };
      chainDeltas = chainDeltas.filter((d) => d.seq > meta.seq);
    }
    await prune();
    const result = { seq: meta.seq, files: inputs.length, bytes, ms: performance.now() - startedAt };
    log.debug({ dataDir: dir, ...result }, "checkpoint chain compacted");
    return result;
  };

  const startCompaction = (): void => {
    if (compactionQueued) return;
    compactionQueued = true;
    background(compactOnce).catch((err: unknown) => log.warn({ dataDir: dir, err }, "checkpoint compaction failed; the chain stays as it was and grows until a later one succeeds"));
  };

  return {
    dir,
    restored,
    async load(apply) {
      if (legacy !== undefined) {
        legacy.slots.forEach((slots, pipeline) => {
          for (const [slot, state] of slots) apply(pipeline, slot, state);
        });
        return;
      }
      if (files.length === 0) return;
      const slotCount = files[0]!.meta.slotCount;
      const winner = new Map<number, number>();
      files.forEach((file, i) => {
        for (const e of file.entries) winner.set(slotKey(slotCount, e.pipeline, e.slot), i);
      });
      for (const [i, file] of files.entries()) {
        const kept = file.entries.filter((e) => e.length > 0 && winner.get(slotKey(slotCount, e.pipeline, e.slot)) === i);
        for await (const run of readPayloads(file.path, kept, true)) {
          for (const { entry, bytes } of run) apply(entry.pipeline, entry.slot, bytes);
        }
      }
      // The delta files' payloads are not needed again: let them go.
      files = [];
    },
    get wantsBase() {
      return wantsBase;
    },
    async write(checkpoint, writeOptions = {}) {
      const seq = lastSeq + 1;
      const asBase = wantsBase || checkpoint.complete;
      const meta: ChainMeta = { app: checkpoint.app, slotCount: checkpoint.slotCount, pipelines: checkpoint.slots.length, seq, createdAtMs: checkpoint.createdAtMs, sources: checkpoint.sources };
      const entries: PayloadSource[] = [];
      checkpoint.slots.forEach((slots, pipeline) => {
        for (const [slot, bytes] of slots) if (bytes !== null || !asBase) entries.push({ pipeline, slot, bytes });
      });
      let bytes: number;
      try {
        bytes = await writeChainFile(dir, path(asBase ? "base" : "delta", seq), asBase ? KIND_BASE : KIND_DELTA, meta, [entries]);
      } catch (err) {
        // The slots this checkpoint captured are clean in memory but not on disk: the next one holds them all.
        wantsBase = true;
        throw err;
      }
      lastSeq = seq;
      wantsBase = false;
      if (asBase) {
        base = { seq, bytes };
        chainDeltas = [];
        background(prune).catch((err: unknown) => log.warn({ dataDir: dir, err }, "could not delete superseded checkpoint files"));
      } else {
        chainDeltas.push({ seq, bytes });
        const deltaBytes = chainDeltas.reduce((n, d) => n + d.bytes, 0);
        if (writeOptions.final !== true && (deltaBytes > policy.deltaBytesRatio * base!.bytes || chainDeltas.length >= policy.maxDeltas)) startCompaction();
      }
      log.debug({ dataDir: dir, seq, kind: asBase ? "base" : "delta", bytes, slots: entries.length }, "checkpoint written");
      return { kind: asBase ? "base" : "delta", seq, bytes };
    },
    compact: () => background(compactOnce),
    settled: () => maintenance.then(() => undefined),
    chain: () => ({ base: base === undefined ? undefined : { ...base }, deltas: chainDeltas.map((d) => ({ ...d })) }),
  };
}

function ignoreMissing(err: unknown): void {
  if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
}

function asBadCheckpoint(err: unknown, file: string): unknown {
  if (err instanceof KeywayError) return err;
  return new KeywayError(ErrorCode.BAD_CHECKPOINT, `cannot read ${file}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}
