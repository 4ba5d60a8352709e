/**
 * What Prometheus metrics cost (issue 13): the word count of bench/word-count.ts (same corpus, same
 * app, same engine flags) run with `--metrics-listen 127.0.0.1:0` (the "keyway" column) and
 * without it (the "baseline" column: no metrics server, no observer bound), in the same run,
 * alternating. While a metrics run goes this process scrapes GET /metrics once a second, as
 * Prometheus would, so what a scrape costs the engine is counted; it finds the port in the engine's
 * "serving metrics" log line. Both sides log at info, so they differ by the flag alone.
 *
 * Correctness: every run's output must have the same line count and bytes (one process: the same
 * words in the same order), the metrics run must have served at least one scrape, and a run without
 * the flag must not serve metrics at all; anything else fails the benchmark.
 */
import { Agent, get } from "node:http";
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { BenchContext } from "./lib/context.ts";
import { describeExit, spawnNode, waitOrKill } from "./lib/child.ts";
import { digestFile } from "./lib/file-digest.ts";
import { formatRate, medianRow, type BenchResult, type Comparison } from "./lib/report.ts";
import { median } from "./lib/stats.ts";
import { ensureCorpus } from "./lib/text-gen.ts";
import { CHILD_TIMEOUT_MS, wordCountCorpus, wordCountEngineArgs } from "./word-count.ts";

const ROUNDS_FULL = 3;
const ROUNDS_QUICK = 1;
const SCRAPE_INTERVAL_MS = 1000;
const SCRAPE_TIMEOUT_MS = 5000;
const RATIO_TARGET = 0.95;

type Side = "on" | "off";
const SIDE_NAME: Record<Side, string> = { on: "--metrics-listen", off: "no metrics" };

interface ScrapeStats {
  ok: number;
  /** Scrapes that failed while the engine ran (refused, reset, timed out, not 200). */
  failed: number;
  /** Milliseconds from request to the whole response, per successful scrape. */
  ms: number[];
  lastBytes: number;
  /** keyway_source_records_total summed over its series, at the last successful scrape. */
  lastSourceRecords: number | null;
}

interface RunSample {
  side: Side;
  round: number;
  wallMs: number;
  cpuSec: number | null;
  maxRssKiB: number | null;
  outputLines: number;
  outputSha256: string;
  wordsPerSec: number;
  metricsAddress: string | null;
  scrapes: ScrapeStats | null;
}

function sourceRecords(text: string): number | null {
  let sum: number | null = null;
  for (const m of text.matchAll(/^keyway_source_records_total(?:\{[^}]*\})? ([0-9.e+]+)$/gm)) sum = (sum ?? 0) + Number(m[1]);
  return sum;
}

/** Scrapes http://address/metrics every SCRAPE_INTERVAL_MS (one at a time, over one keep-alive connection) until stop(). */
function startScraper(address: string, running: () => boolean): { stop: () => Promise<ScrapeStats> } {
  const [host, port] = [address.slice(0, address.lastIndexOf(":")), Number(address.slice(address.lastIndexOf(":") + 1))];
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const stats: ScrapeStats = { ok: 0, failed: 0, ms: [], lastBytes: 0, lastSourceRecords: null };
  let inFlight: Promise<void> | null = null;
  const scrape = (): Promise<void> =>
    new Promise<void>((resolve) => {
      const t0 = performance.now();
      const fail = () => {
        // A scrape cut short by the engine's exit is not a failure of the engine.
        if (running()) stats.failed++;
        resolve();
      };
      const req = get({ host, port, path: "/metrics", agent, timeout: SCRAPE_TIMEOUT_MS }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("error", fail);
        res.on("end", () => {
          if (res.statusCode !== 200) return fail();
          const text = Buffer.concat(chunks).toString("utf8");
          stats.ok++;
          stats.ms.push(performance.now() - t0);
          stats.lastBytes = text.length;
          stats.lastSourceRecords = sourceRecords(text) ?? stats.lastSourceRecords;
          resolve();
        });
      });
      req.on("timeout", () => req.destroy(new Error("timed out")));
      req.on("error", fail);
    });
  const tick = () => {
    if (inFlight === null) inFlight = scrape().finally(() => (inFlight = null));
  };
  tick();
  const timer = setInterval(tick, SCRAPE_INTERVAL_MS);
  return {
    async stop() {
      clearInterval(timer);
      await inFlight;
      agent.destroy();
      return stats;
    },
  };
}

async function runOnce(ctx: BenchContext, side: Side, round: number, input: string, output: string, errors: string[]): Promise<RunSample | null> {
  rmSync(output, { force: true });
  let metricsAddress: string | null = null;
  let scraper: ReturnType<typeof startScraper> | undefined;
  const extra = side === "on" ? ["--metrics-listen", "127.0.0.1:0"] : [];
  const child = spawnNode(wordCountEngineArgs(input, output, extra, "info"), {
    cwd: ctx.root,
    onStderrLine: (line) => {
      if (!line.includes("serving metrics")) return;
      try {
        const entry = JSON.parse(line) as { msg?: string; address?: string };
        if (entry.msg !== "serving metrics" || typeof entry.address !== "string" || metricsAddress !== null) return;
        metricsAddress = entry.address;
        if (side === "on") scraper = startScraper(entry.address, () => !child.exited());
      } catch {
        // Not a log line.
      }
    },
  });
  const { result, timedOut } = await waitOrKill(child, CHILD_TIMEOUT_MS);
  const scrapes = scraper === undefined ? null : await scraper.stop();
  const label = `${SIDE_NAME[side]}, round ${round + 1}`;
  if (timedOut || result.exitCode !== 0) {
    errors.push(`${label}: ${timedOut ? `timed out after ${CHILD_TIMEOUT_MS / 1000} s` : describeExit(result)}`);
    rmSync(output, { force: true });
    return null;
  }
  const digest = await digestFile(output).catch(() => null);
  rmSync(output, { force: true });
  if (digest === null) {
    errors.push(`${label}: no output file`);
    return null;
  }
  if (side === "on" && metricsAddress === null) errors.push(`${label}: the engine logged no "serving metrics" line`);
  if (side === "on" && scrapes !== null && scrapes.ok === 0) errors.push(`${label}: no scrape of /metrics succeeded`);
  if (side === "off" && metricsAddress !== null) errors.push(`${label}: metrics served at ${metricsAddress} without --metrics-listen`);
  return {
    side,
    round,
    wallMs: result.wallMs,
    cpuSec: result.cpuSec,
    maxRssKiB: result.maxRssKiB,
    outputLines: digest.lines,
    outputSha256: digest.sha256,
    wordsPerSec: digest.lines / (result.wallMs / 1000),
    metricsAddress,
    scrapes,
  };
}

export async function runMetrics(ctx: BenchContext): Promise<BenchResult> {
  const startedAt = performance.now();
  const errors: string[] = [];
  const spec = wordCountCorpus(ctx.quick);
  const rounds = ctx.quick ? ROUNDS_QUICK : ROUNDS_FULL;
  const corpus = ensureCorpus(ctx.dataDir, spec);
  ctx.log(`metrics: corpus ${corpus.path} (${corpus.reused ? "reused" : `generated in ${(corpus.generateMs / 1000).toFixed(1)} s`})`);
  const outDir = join(ctx.dataDir, "out");
  mkdirSync(outDir, { recursive: true });

  const samples: RunSample[] = [];
  for (let round = 0; round < rounds; round++) {
    // Alternate who goes first, so neither side always runs on a warmer machine.
    const order: Side[] = round % 2 === 0 ? ["off", "on"] : ["on", "off"];
    for (const side of order) {
      const sample = await runOnce(ctx, side, round, corpus.path, join(outDir, `metrics-${side}.txt`), errors);
      if (sample === null) continue;
      samples.push(sample);
      const s = sample.scrapes;
      ctx.log(
        `metrics: round ${round + 1}/${rounds} ${SIDE_NAME[side]}: ${formatRate(sample.wordsPerSec)} words/s, ${(sample.wallMs / 1000).toFixed(2)} s wall, ${sample.cpuSec ?? "?"} s CPU` +
          (s === null ? "" : `, ${s.ok} scrapes (${s.failed} failed), last ${s.lastBytes} bytes, source records ${s.lastSourceRecords ?? "n/a"}`),
      );
    }
  }

  const lineCounts = new Set(samples.map((s) => s.outputLines));
  const hashes = new Set(samples.map((s) => s.outputSha256));
  if (lineCounts.size > 1) errors.push(`OUTPUT MISMATCH: output line counts differ: ${samples.map((s) => `${s.side}#${s.round + 1}=${s.outputLines}`).join(", ")}`);
  else if (hashes.size > 1) errors.push("OUTPUT MISMATCH: outputs have the same line count but different content");

  const isOn = (s: RunSample) => s.side === "on";
  const throughput = medianRow(samples, isOn, "throughput, metrics on vs off (median)", "words/s", (s) => s.wordsPerSec, "higher");
  if (throughput.ratio !== null) {
    throughput.target = `>= ${RATIO_TARGET}x without metrics`;
    throughput.targetMet = throughput.ratio >= RATIO_TARGET;
  }
  const comparisons: Comparison[] = [
    throughput,
    medianRow(samples, isOn, "wall time (median)", "s", (s) => s.wallMs / 1000, "lower"),
    medianRow(samples, isOn, "CPU time, all threads (median)", "s", (s) => s.cpuSec, "lower"),
    medianRow(samples, isOn, "peak RSS (median)", "MiB", (s) => (s.maxRssKiB === null ? null : s.maxRssKiB / 1024), "lower"),
  ];
  const scraped = samples.flatMap((s) => (s.scrapes === null ? [] : [s.scrapes]));
  const scrapeMs = scraped.flatMap((s) => s.ms);
  return {
    name: "metrics",
    title: "Prometheus metrics: word count with --metrics-listen (scraped every second) vs without",
    ok: errors.length === 0,
    errors,
    notes: [
      `word count as in the word-count benchmark (examples/word-count/app.ts, file source -> file sink) on its ${(corpus.bytes / 2 ** 20).toFixed(1)} MiB corpus; ${rounds} round(s) per side, alternating; medians. words/s = output lines / wall time from spawn to exit. Both sides run with --log-level info; the "keyway" column adds --metrics-listen 127.0.0.1:0, the baseline has no metrics server and no observer bound.`,
      scrapeMs.length === 0
        ? "no successful scrape."
        : `scrapes: GET /metrics once a second from the bench process over one keep-alive connection, from the "serving metrics" log line to the engine's exit; per run ${scraped.map((s) => `${s.ok}${s.failed > 0 ? ` (+${s.failed} failed)` : ""}`).join(", ")}; ${median(scrapeMs).toFixed(1)} ms median, ${Math.max(...scrapeMs).toFixed(1)} ms max per scrape; the last response ${scraped.at(-1)!.lastBytes} bytes.`,
      ...(hashes.size === 1 && samples.length > 1 ? ["outputs of every run on both sides were byte-identical."] : []),
    ],
    comparisons,
    details: { corpus: { ...spec, path: corpus.path, bytes: corpus.bytes }, rounds, scrapeIntervalMs: SCRAPE_INTERVAL_MS, runs: samples },
    durationMs: performance.now() - startedAt,
  };
}
