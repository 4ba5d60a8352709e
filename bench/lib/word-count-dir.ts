/**
 * Word count (examples/word-count/app.ts) over a generated corpus cut into a directory of files
 * (`--source lines=file:DIR`, spread over the workers of a cluster), timed from the sink file's
 * first byte to its complete size, with the driver's own count of the corpus to check the output
 * against. Shared by the cluster and replication benchmarks, which vary the engine's flags.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import type { BenchContext } from "./context.ts";
import { describeExit, spawnNode, waitOrKill } from "./child.ts";
import { CpuSampler, parseLogLine, pidPreloadEnv, STOP_TIMEOUT_MS, takePid } from "./engine-child.ts";
import { digestFile } from "./file-digest.ts";
import { sleep } from "./net.ts";
import { ensureCorpus, type CorpusSpec } from "./text-gen.ts";

export const CHILD_TIMEOUT_MS = 10 * 60_000;
export const CLUSTER_CORPUS: CorpusSpec = { seed: 42, vocabularySize: 50_000, minBytes: 16 * 2 ** 20, zipfExponent: 1 };
/** The word-count benchmark's quick corpus, so a quick run of both generates it once. */
export const CLUSTER_CORPUS_QUICK: CorpusSpec = { ...CLUSTER_CORPUS, minBytes: 4 * 2 ** 20 };
/** How often the driver looks at the output file's size. */
export const OUTPUT_POLL_MS = 5;
export const DIRECTORY_FILES = 2;

/** The corpus cut into DIRECTORY_FILES files at line boundaries, and what the output must be. */
export interface Dataset {
  corpusPath: string;
  dir: string;
  files: string[];
  bytes: number;
  lines: number;
  words: number;
  /** word -> its count in the corpus. */
  expected: Map<string, number>;
  /** The output's exact size: per word, "w 1\n" ... "w n\n". */
  expectedBytes: number;
}

/** The app's split, so the driver can count the corpus itself. */
function wordsOf(line: string): string[] {
  return line.toLowerCase().split(/[^\p{L}\p{N}]+/u).filter(Boolean);
}

function countWords(text: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const line of text.split("\n")) {
    for (const word of wordsOf(line)) counts.set(word, (counts.get(word) ?? 0) + 1);
  }
  return counts;
}

/** Bytes of the word-count output for these counts: every "<word> <i>\n" for i in 1..n. */
function outputBytes(expected: ReadonlyMap<string, number>): number {
  let bytes = 0;
  for (const [word, n] of expected) {
    const wordBytes = Buffer.byteLength(word, "utf8") + 2;
    bytes += wordBytes * n;
    // Digits of 1..n: 9 one-digit numbers, 90 two-digit, ...
    for (let digits = 1, low = 1; low <= n; digits++, low *= 10) bytes += digits * (Math.min(n, low * 10 - 1) - low + 1);
  }
  return bytes;
}

/**
 * Checks word-count output against the expected count per word: per word the outputs must be
 * "w 1", "w 2", ... "w n" in that order (none lost, duplicated or reordered), n as expected.
 * Workers may interleave different words differently; per word nothing may differ.
 */
export function checkWordCountOutput(path: string, expected: ReadonlyMap<string, number>): string[] {
  const problems: string[] = [];
  const add = (p: string) => {
    if (problems.length < 10) problems.push(p);
  };
  const reached = new Map<string, number>();
  for (const line of readFileSync(path, "utf8").split("\n")) {
    if (line === "") continue;
    const space = line.lastIndexOf(" ");
    const word = line.slice(0, space);
    const n = Number(line.slice(space + 1));
    const previous = reached.get(word) ?? 0;
    if (n !== previous + 1) add(`word "${word}": count ${n} after ${previous}`);
    reached.set(word, Math.max(previous, n));
  }
  if (reached.size !== expected.size) add(`${reached.size} distinct words in the output, ${expected.size} in the corpus`);
  for (const [word, n] of expected) {
    if ((reached.get(word) ?? 0) !== n) add(`word "${word}": reached ${reached.get(word) ?? 0}, the corpus has ${n}`);
  }
  return problems;
}

/** Cuts the corpus into DIRECTORY_FILES files of about equal size at line ends (kept in bench/.data/ until the corpus changes). */
export function prepareDataset(ctx: BenchContext, spec: CorpusSpec): Dataset {
  const corpus = ensureCorpus(ctx.dataDir, spec);
  const text = readFileSync(corpus.path, "utf8");
  const dir = join(ctx.dataDir, `cluster-dir-${basename(corpus.path, ".txt")}`);
  const files = Array.from({ length: DIRECTORY_FILES }, (_, i) => join(dir, `part-${i}.txt`));
  const whole = Buffer.from(text, "utf8");
  const fresh = files.every((f) => existsSync(f)) && files.reduce((n, f) => n + statSync(f).size, 0) === whole.length;
  if (!fresh || !corpus.reused) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    let start = 0;
    for (let i = 0; i < DIRECTORY_FILES; i++) {
      const last = i === DIRECTORY_FILES - 1;
      const cut = last ? whole.length : whole.indexOf(0x0a, Math.floor((whole.length * (i + 1)) / DIRECTORY_FILES)) + 1;
      writeFileSync(files[i]!, whole.subarray(start, cut));
      start = cut;
    }
  }
  const expected = countWords(text);
  let words = 0;
  for (const n of expected.values()) words += n;
  return { corpusPath: corpus.path, dir, files, bytes: corpus.bytes, lines: corpus.lines, words, expected, expectedBytes: outputBytes(expected) };
}

/**
 * Watches the sink file while a run goes on: when its first byte appears (the first batch is
 * through) and when it reaches the complete output's size, sampling the engine processes' CPU at
 * both instants.
 */
export class OutputWatch {
  firstAt: number | null = null;
  completeAt: number | null = null;
  cpuAtFirst: number | null = null;
  cpuAtComplete: number | null = null;
  bytes = 0;
  private readonly cpu: CpuSampler;

  constructor(
    private readonly path: string,
    private readonly expectedBytes: number,
    pids: readonly number[],
  ) {
    this.cpu = new CpuSampler(pids);
  }

  /** One look; true once the output is complete. */
  poll(): boolean {
    if (this.completeAt !== null) return true;
    this.bytes = statSync(this.path, { throwIfNoEntry: false })?.size ?? 0;
    const now = performance.now();
    const cpu = this.firstAt === null && this.bytes === 0 ? null : this.cpu.sample();
    if (this.firstAt === null && this.bytes > 0) {
      this.firstAt = now;
      this.cpuAtFirst = cpu;
    }
    if (this.bytes >= this.expectedBytes) {
      this.completeAt = now;
      this.cpuAtComplete = cpu;
    }
    return this.completeAt !== null;
  }

  activeCpuSec(): number | null {
    return this.cpuAtFirst === null || this.cpuAtComplete === null ? null : this.cpuAtComplete - this.cpuAtFirst;
  }
}

/** What one directory run measured; the caller knows its worker count and flags. */
export interface DirectoryRun {
  /** First output byte in the sink file -> the sink file complete. */
  processMs: number;
  /** CPU seconds of every engine process over processMs (from /proc); null unless every process announced its pid. */
  activeCpuSec: number | null;
  /** Engine spawn to the first output byte (start-up, joining, first batch). */
  spawnToFirstOutputMs: number;
  /** Engine spawn to the first "reading sources placed here" (clusters only). */
  spawnToSourcesMs: number | null;
  engineWallMs: number;
  /** Engine and its local workers over their whole life (GNU time counts reaped children). */
  engineCpuSec: number | null;
  engineMaxRssKiB: number | null;
  outputLines: number;
  pids: number;
}

export type DirectoryOutcome = { run: DirectoryRun; error?: undefined } | { run: null; error: string };

/** One run reading the directory (`file:DIR`) on `workers` workers, `flags` added to `keyway run`. */
export async function runDirectoryOnce(ctx: BenchContext, workers: number, data: Dataset, output: string, flags: readonly string[] = []): Promise<DirectoryOutcome> {
  rmSync(output, { force: true });
  const pids: number[] = [];
  let sourcesAt: number | null = null;
  const spawnedAt = performance.now();
  const engine = spawnNode(
    [
      "bin/keyway.js", "run", "examples/word-count/app.ts",
      "--source", `lines=file:${data.dir}`, "--sink", `counts=file:${output}`,
      ...(workers > 1 ? ["--workers", String(workers)] : []),
      ...flags,
      // info: "reading sources placed here" is logged at info (2 workers; one process logs nothing).
      "--no-progress", "--log-level", "info",
    ],
    {
      cwd: ctx.root,
      env: pidPreloadEnv(),
      onStderrLine(line) {
        if (takePid(line, pids)) return;
        if (sourcesAt === null && parseLogLine(line)?.msg === "reading sources placed here") sourcesAt = performance.now();
      },
    },
  );
  const watch = new OutputWatch(output, data.expectedBytes, pids);
  while (!engine.exited() && !watch.poll()) {
    if (performance.now() - spawnedAt > CHILD_TIMEOUT_MS) break;
    await sleep(OUTPUT_POLL_MS);
  }
  const { result, timedOut } = await waitOrKill(engine, Math.max(STOP_TIMEOUT_MS, CHILD_TIMEOUT_MS - (performance.now() - spawnedAt)));
  if (timedOut || result.exitCode !== 0) return { run: null, error: timedOut ? "timed out" : describeExit(result) };
  watch.poll();
  if (watch.firstAt === null || watch.completeAt === null) {
    return { run: null, error: `the engine exited 0 with ${watch.bytes} bytes of output, ${data.expectedBytes} expected` };
  }
  const digest = await digestFile(output);
  return {
    run: {
      processMs: watch.completeAt - watch.firstAt,
      activeCpuSec: pids.length === workers ? watch.activeCpuSec() : null,
      spawnToFirstOutputMs: watch.firstAt - spawnedAt,
      spawnToSourcesMs: sourcesAt === null ? null : sourcesAt - spawnedAt,
      engineWallMs: result.wallMs,
      engineCpuSec: result.cpuSec,
      engineMaxRssKiB: result.maxRssKiB,
      outputLines: digest.lines,
      pids: pids.length,
    },
  };
}
