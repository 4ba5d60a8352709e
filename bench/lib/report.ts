/** Result shapes shared by the benchmarks, and their rendering as a console table and markdown. */
import { median, ratio } from "./stats.ts";

export interface Comparison {
  metric: string;
  unit: string;
  engine: number | null;
  baseline: number | null;
  /** engine / baseline. */
  ratio: number | null;
  /** Which way is better for this metric, so a reader knows whether a ratio above 1 is good. */
  better: "higher" | "lower";
  /** A goal to read the figure against; informational, never asserted. */
  target?: string;
  targetMet?: boolean;
}

/**
 * A row of medians over a benchmark's runs: the runs `isKeyway` picks against the others, each
 * side's runs without the figure (null) left out.
 */
export function medianRow<R>(runs: readonly R[], isKeyway: (run: R) => boolean, metric: string, unit: string, pick: (run: R) => number | null, better: Comparison["better"]): Comparison {
  const medianOf = (keyway: boolean): number | null => {
    const values = runs.filter((r) => isKeyway(r) === keyway).map(pick).filter((v): v is number => v !== null);
    return values.length === 0 ? null : median(values);
  };
  const engine = medianOf(true);
  const baseline = medianOf(false);
  return { metric, unit, engine, baseline, ratio: ratio(engine, baseline), better };
}

export interface BenchResult {
  name: string;
  title: string;
  /** False when the benchmark could not run or its outputs disagree; never because of a timing. */
  ok: boolean;
  errors: string[];
  notes: string[];
  comparisons: Comparison[];
  /** Every raw figure behind the comparisons (per run, per side), for the JSON file. */
  details: Record<string, unknown>;
  durationMs: number;
}

export interface Machine {
  node: string;
  v8: string;
  platform: string;
  kernel: string;
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  rssMethod: string;
}

export interface RunReport {
  date: string;
  machine: Machine;
  git: { commit: string | null; engineDirty: boolean | null };
  quick: boolean;
  durationMs: number;
  benchmarks: BenchResult[];
}

export function formatNumber(value: number | null, unit = ""): string {
  if (value === null || !Number.isFinite(value)) return "n/a";
  const abs = Math.abs(value);
  let text: string;
  if (abs >= 1e6) text = `${(value / 1e6).toFixed(2)}M`;
  else if (abs >= 1e4) text = `${(value / 1e3).toFixed(1)}k`;
  else if (abs >= 100) text = value.toFixed(0);
  else if (abs >= 10) text = value.toFixed(1);
  else text = value.toFixed(abs >= 1 ? 2 : 3);
  return unit ? `${text} ${unit}` : text;
}

function formatRatio(c: Comparison): string {
  return c.ratio === null ? "n/a" : `${c.ratio.toFixed(2)}x`;
}

function formatTarget(c: Comparison): string {
  if (c.target === undefined) return "";
  if (c.targetMet === undefined) return c.target;
  return `${c.target} (${c.targetMet ? "met" : "missed"})`;
}

const HEADER = ["metric", "keyway", "baseline", "ratio keyway/baseline", "better", "target"];

function rows(result: BenchResult): string[][] {
  return result.comparisons.map((c) => [
    c.metric,
    formatNumber(c.engine, c.unit),
    formatNumber(c.baseline, c.unit),
    formatRatio(c),
    c.better,
    formatTarget(c),
  ]);
}

export function consoleTable(report: RunReport): string {
  const out: string[] = [];
  for (const result of report.benchmarks) {
    out.push("", `${result.title} [${result.ok ? "ok" : "FAILED"}]`);
    const table = [HEADER, ...rows(result)];
    const widths = HEADER.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
    for (const row of table) out.push(`  ${row.map((cell, i) => cell.padEnd(widths[i]!)).join("  ").trimEnd()}`);
    for (const error of result.errors) out.push(`  FAILED: ${error}`);
    for (const note of result.notes) out.push(`  note: ${note}`);
  }
  return out.join("\n");
}

export function markdown(report: RunReport): string {
  const m = report.machine;
  const out: string[] = [
    "# Keyway benchmark results",
    "",
    `- date: ${report.date}${report.quick ? " (quick run: small inputs, not comparable)" : ""}`,
    `- machine: ${m.cpuModel}, ${m.cores} cores, ${m.memoryGiB} GiB, ${m.platform} ${m.kernel}`,
    `- node ${m.node} (V8 ${m.v8}); peak RSS via ${m.rssMethod}`,
    `- commit: ${report.git.commit ?? "unknown"}${report.git.engineDirty ? " (tracked files in src/, connectors/ or bin/ differed from it during the run)" : ""}`,
    `- total run time: ${(report.durationMs / 1000).toFixed(0)} s`,
    "",
    "Ratios are keyway / baseline, measured in the same run. Whether higher or lower is better is",
    "given per row. Targets are goals to read the figures against; benchmarks assert nothing.",
  ];
  for (const result of report.benchmarks) {
    out.push("", `## ${result.title}${result.ok ? "" : " — FAILED"}`, "");
    out.push(`| ${HEADER.join(" | ")} |`, `|${HEADER.map(() => " --- ").join("|")}|`);
    for (const row of rows(result)) out.push(`| ${row.join(" | ")} |`);
    if (result.errors.length > 0) out.push("", ...result.errors.map((e) => `- **FAILED**: ${e}`));
    if (result.notes.length > 0) out.push("", ...result.notes.map((n) => `- ${n}`));
  }
  return `${out.join("\n")}\n`;
}

/** A rate for log lines: "1.23M" or "456k". */
export function formatRate(perSec: number): string {
  return perSec >= 1e6 ? `${(perSec / 1e6).toFixed(2)}M` : `${(perSec / 1e3).toFixed(0)}k`;
}

/** A round count for notes: "1M", "100k". */
export function formatCount(n: number): string {
  return n >= 1e6 ? `${n / 1e6}M` : n >= 1e3 ? `${n / 1e3}k` : String(n);
}
