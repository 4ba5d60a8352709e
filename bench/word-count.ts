/**
 * Word count: the engine running examples/word-count/app.ts against a single-loop Node program
 * doing the same work (bench/baselines/naive-wordcount.mjs), on the same generated corpus, as
 * child processes, alternating so drift (page cache, thermal, noisy neighbours) hits both sides.
 * Also the keyed state store's heap bytes per key against a plain Map of the same keys.
 */
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { BenchContext } from "./lib/context.ts";
import { describeExit, spawnNode, waitOrKill, type ChildResult } from "./lib/child.ts";
import { digestFile, type FileDigest } from "./lib/file-digest.ts";
import type { BenchResult, Comparison } from "./lib/report.ts";
import type { StateSizeSample } from "./lib/state-size-probe.ts";
import { median, ratio } from "./lib/stats.ts";
import { ensureCorpus, type CorpusSpec } from "./lib/text-gen.ts";

const FULL_CORPUS: CorpusSpec = { seed: 42, vocabularySize: 50_000, minBytes: 50 * 2 ** 20, zipfExponent: 1 };
const QUICK_CORPUS: CorpusSpec = { ...FULL_CORPUS, minBytes: 4 * 2 ** 20 };
/** The word-count corpus (also the metrics benchmark's): 50 MiB, 4 MiB with --quick. */
export function wordCountCorpus(quick: boolean): CorpusSpec {
  return quick ? QUICK_CORPUS : FULL_CORPUS;
}
const RUNS_FULL = 3;
const RUNS_QUICK = 1;
/** The vocabulary's size (what the word-count run holds) and two larger populations. */
const STATE_KEY_COUNTS = [50_000, 1_000_000, 10_000_000];
/** Key counts whose state heap per key has a target, and whose peak RSS is measured side by side. */
const STATE_TARGET_KEY_COUNTS = [1_000_000, 10_000_000];
const THROUGHPUT_TARGET_RATIO = 0.7;
const RSS_TARGET_RATIO = 1.3;
const STATE_TARGET_RATIO = 1.2;
/** Far beyond any sane run on this corpus; a hung child must not hang the whole bench. */
export const CHILD_TIMEOUT_MS = 10 * 60_000;

type Side = "baseline" | "engine";

interface RunSample {
  side: Side;
  round: number;
  wallMs: number;
  maxRssKiB: number | null;
  cpuSec: number | null;
  outputLines: number;
  outputSha256: string;
  wordsPerSec: number;
}

/** `node` arguments of the engine's word count over input into output (appending); `extra` flags go last. */
export function wordCountEngineArgs(input: string, output: string, extra: readonly string[] = [], logLevel = "warn"): string[] {
  return [
    "bin/keyway.js", "run", "examples/word-count/app.ts",
    "--source", `lines=file:${input}`,
    "--sink", `counts=file:${output}`,
    "--no-progress", "--log-level", logLevel,
    ...extra,
  ];
}

function commandFor(side: Side, input: string, output: string): string[] {
  if (side === "baseline") return ["bench/baselines/naive-wordcount.mjs", input, output];
  return wordCountEngineArgs(input, output);
}

async function runOnce(ctx: BenchContext, side: Side, input: string, output: string): Promise<{ child: ChildResult; digest: FileDigest | null; timedOut: boolean }> {
  // Both programs append, so a leftover output would double the line count.
  rmSync(output, { force: true });
  const { result, timedOut } = await waitOrKill(spawnNode(commandFor(side, input, output), { cwd: ctx.root }), CHILD_TIMEOUT_MS);
  const ok = !timedOut && result.exitCode === 0;
  const digest = ok ? await digestFile(output).catch(() => null) : null;
  rmSync(output, { force: true });
  return { child: result, digest, timedOut };
}

async function measureStateSize(ctx: BenchContext, errors: string[]): Promise<StateSizeSample[]> {
  const counts = ctx.quick ? [STATE_KEY_COUNTS[0]!] : STATE_KEY_COUNTS;
  const child = spawnNode(["--expose-gc", "--import", "tsx", "bench/lib/state-size-probe.ts", ...counts.map(String)], { cwd: ctx.root });
  const { result, timedOut } = await waitOrKill(child, CHILD_TIMEOUT_MS);
  if (timedOut || result.exitCode !== 0) {
    errors.push(`state size probe failed: ${timedOut ? "timed out" : describeExit(result)}`);
    return [];
  }
  return JSON.parse(result.stdoutTail) as StateSizeSample[];
}

/** Peak RSS in MiB of a process holding n keys in the engine's store or in a plain Map (null if unmeasured). */
async function keysRssMiB(ctx: BenchContext, side: "engine" | "map", n: number, errors: string[]): Promise<number | null> {
  const child = spawnNode(["--expose-gc", "--import", "tsx", "bench/lib/state-size-probe.ts", "--only", side, String(n)], { cwd: ctx.root });
  const { result, timedOut } = await waitOrKill(child, CHILD_TIMEOUT_MS);
  if (timedOut || result.exitCode !== 0) {
    errors.push(`state RSS probe (${side}, ${n} keys) failed: ${timedOut ? "timed out" : describeExit(result)}`);
    return null;
  }
  return result.maxRssKiB === null ? null : result.maxRssKiB / 1024;
}

/** The row with a "lower is better" target: ratio <= target. */
function withTarget(row: Comparison, target: number): Comparison {
  return { ...row, target: `ratio <= ${target}`, ...(row.ratio === null ? {} : { targetMet: row.ratio <= target }) };
}

export async function runWordCount(ctx: BenchContext): Promise<BenchResult> {
  const startedAt = performance.now();
  const errors: string[] = [];
  const notes: string[] = [];
  const spec = wordCountCorpus(ctx.quick);
  const runs = ctx.quick ? RUNS_QUICK : RUNS_FULL;

  ctx.log(`word-count: preparing a ${(spec.minBytes / 2 ** 20).toFixed(0)} MiB corpus`);
  const corpus = ensureCorpus(ctx.dataDir, spec);
  ctx.log(`word-count: corpus ${corpus.path} (${corpus.reused ? "reused" : `generated in ${(corpus.generateMs / 1000).toFixed(1)} s`})`);
  const outDir = join(ctx.dataDir, "out");
  mkdirSync(outDir, { recursive: true });

  const samples: RunSample[] = [];
  for (let round = 0; round < runs; round++) {
    // Alternate who goes first, so neither side always runs on a warmer machine.
    const order: Side[] = round % 2 === 0 ? ["baseline", "engine"] : ["engine", "baseline"];
    for (const side of order) {
      ctx.log(`word-count: round ${round + 1}/${runs}, ${side}`);
      const { child, digest, timedOut } = await runOnce(ctx, side, corpus.path, join(outDir, `${side}.txt`));
      if (timedOut || child.exitCode !== 0 || digest === null) {
        errors.push(`${side} run ${round + 1} failed: ${timedOut ? `timed out after ${CHILD_TIMEOUT_MS / 1000} s` : describeExit(child)}`);
        continue;
      }
      samples.push({
        side,
        round,
        wallMs: child.wallMs,
        maxRssKiB: child.maxRssKiB,
        cpuSec: child.cpuSec,
        outputLines: digest.lines,
        outputSha256: digest.sha256,
        wordsPerSec: digest.lines / (child.wallMs / 1000),
      });
      ctx.log(`word-count:   ${(child.wallMs / 1000).toFixed(2)} s wall, ${child.cpuSec ?? "?"} s CPU, ${digest.lines} lines, peak RSS ${child.maxRssKiB ?? "?"} KiB`);
    }
  }

  const of = (side: Side) => samples.filter((s) => s.side === side);
  // One output line per input word, so the baseline's line count is the corpus's word count.
  const lineCounts = new Set(samples.map((s) => s.outputLines));
  if (lineCounts.size > 1) {
    errors.push(`OUTPUT MISMATCH: output line counts differ between runs/sides: ${samples.map((s) => `${s.side}#${s.round + 1}=${s.outputLines}`).join(", ")}`);
  }
  const hashes = new Set(samples.map((s) => s.outputSha256));
  if (lineCounts.size === 1 && hashes.size > 1) {
    // Same count, different content: on one process the order per word must match the baseline's.
    errors.push("OUTPUT MISMATCH: outputs have the same line count but different content");
  }
  const words = of("baseline")[0]?.outputLines ?? of("engine")[0]?.outputLines ?? null;

  const medianOf = (side: Side, pick: (s: RunSample) => number | null): number | null => {
    const values = of(side).map(pick).filter((v): v is number => v !== null);
    return values.length === 0 ? null : median(values);
  };
  const engineWps = medianOf("engine", (s) => s.wordsPerSec);
  const baselineWps = medianOf("baseline", (s) => s.wordsPerSec);
  const engineRssMiB = medianOf("engine", (s) => (s.maxRssKiB === null ? null : s.maxRssKiB / 1024));
  const baselineRssMiB = medianOf("baseline", (s) => (s.maxRssKiB === null ? null : s.maxRssKiB / 1024));
  const throughputRatio = ratio(engineWps, baselineWps);

  const comparisons: Comparison[] = [
    {
      metric: "throughput (median)",
      unit: "words/s",
      engine: engineWps,
      baseline: baselineWps,
      ratio: throughputRatio,
      better: "higher",
      target: `ratio >= ${THROUGHPUT_TARGET_RATIO}`,
      ...(throughputRatio === null ? {} : { targetMet: throughputRatio >= THROUGHPUT_TARGET_RATIO }),
    },
    { metric: "wall time (median)", unit: "s", engine: msToSeconds(medianOf("engine", (s) => s.wallMs)), baseline: msToSeconds(medianOf("baseline", (s) => s.wallMs)), ratio: ratio(medianOf("engine", (s) => s.wallMs), medianOf("baseline", (s) => s.wallMs)), better: "lower" },
    { metric: "CPU time, all threads (median)", unit: "s", engine: medianOf("engine", (s) => s.cpuSec), baseline: medianOf("baseline", (s) => s.cpuSec), ratio: ratio(medianOf("engine", (s) => s.cpuSec), medianOf("baseline", (s) => s.cpuSec)), better: "lower" },
    withTarget({ metric: "peak RSS (median)", unit: "MiB", engine: engineRssMiB, baseline: baselineRssMiB, ratio: ratio(engineRssMiB, baselineRssMiB), better: "lower" }, RSS_TARGET_RATIO),
  ];

  ctx.log("word-count: measuring state bytes per key");
  const stateSizes = await measureStateSize(ctx, errors);
  for (const sample of stateSizes) {
    const row: Comparison = {
      metric: `state heap per key, ${formatCount(sample.keys)} keys`,
      unit: "B",
      engine: sample.engineBytesPerKey,
      baseline: sample.mapBytesPerKey,
      ratio: ratio(sample.engineBytesPerKey, sample.mapBytesPerKey),
      better: "lower",
    };
    comparisons.push(STATE_TARGET_KEY_COUNTS.includes(sample.keys) ? withTarget(row, STATE_TARGET_RATIO) : row);
  }
  if (!ctx.quick) {
    for (const n of STATE_TARGET_KEY_COUNTS) {
      ctx.log(`word-count: peak RSS holding ${formatCount(n)} keys`);
      const engine = await keysRssMiB(ctx, "engine", n, errors);
      const baseline = await keysRssMiB(ctx, "map", n, errors);
      comparisons.push({ metric: `peak RSS holding ${formatCount(n)} keys`, unit: "MiB", engine, baseline, ratio: ratio(engine, baseline), better: "lower" });
    }
  }

  notes.push(
    `corpus: ${(corpus.bytes / 2 ** 20).toFixed(1)} MiB, ${corpus.lines} lines, ${words ?? "?"} words, ${spec.vocabularySize} distinct (Zipf s=${spec.zipfExponent}, seed ${spec.seed})`,
    `${runs} round(s), alternating order; figures are medians. Wall time is spawn to exit, so it includes Node start-up and, for keyway, loading the app through tsx.`,
    "state heap per key: heapUsed delta after forced full GCs, structure + {count} object, key strings excluded (shared by both sides)"
      + (stateSizes.length > 0 ? `; the key strings themselves took about ${stateSizes.map((s) => `${s.keyStringBytesPerKey.toFixed(0)} B`).join(" / ")} each.` : "."),
    "baseline: bench/baselines/naive-wordcount.mjs, one synchronous loop, same split, a Map, 1 MiB buffered writes.",
  );
  if (hashes.size === 1 && samples.length > 1) notes.push("outputs of every run on both sides were byte-identical.");

  return {
    name: "word-count",
    title: "Word count (file source -> keyed count -> file sink)",
    ok: errors.length === 0,
    errors,
    notes,
    comparisons,
    details: {
      corpus: { ...spec, path: corpus.path, bytes: corpus.bytes, lines: corpus.lines, words, reused: corpus.reused },
      runs: samples,
      stateSizes,
    },
    durationMs: performance.now() - startedAt,
  };
}

function msToSeconds(value: number | null): number | null {
  return value === null ? null : value / 1000;
}

function formatCount(n: number): string {
  return n >= 1e6 ? `${n / 1e6}M` : n >= 1e3 ? `${n / 1e3}k` : String(n);
}
