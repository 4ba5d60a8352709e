/**
 * The cluster benchmark, two measurements:
 *
 * 1. Scaling: word count (examples/word-count/app.ts) on 1 worker and on 2 (`--workers 2`), the
 *    same corpus fed by an external connector process (`keyway connector file-source` against
 *    `--source lines=connector`; `file:` when the connector path does not work), alternating,
 *    median of rounds. The ratio is 2 workers / 1 worker. Every run's output is checked per word
 *    against the driver's own count of the corpus.
 * 2. Grow under load: bench/apps/sequence-window.ts on one worker holding 1M keys, under a steady
 *    offered load, while a second worker joins and half the slots move to it. The driver times
 *    every output's arrival at the sink, so the longest gap while slots move is set beside the
 *    longest gap over an equally long window without a move, in the same run. The output is then
 *    proven free of loss, duplication and reordering per key by examples/validation/check.ts.
 */
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createServer, type Socket } from "node:net";
import { checkSequenceWindows } from "../examples/validation/check.ts";
import type { BenchContext } from "./lib/context.ts";
import { describeExit, spawnNode, waitOrKill, type ChildResult, type MeasuredChild } from "./lib/child.ts";
import { digestFile } from "./lib/file-digest.ts";
import { closeServer, connectWhenListening, freePort, listen, sleep, writeWithBackpressure } from "./lib/net.ts";
import type { BenchResult, Comparison } from "./lib/report.ts";
import { median, percentileSorted, ratio } from "./lib/stats.ts";
import { createRandom, ensureCorpus, type CorpusSpec } from "./lib/text-gen.ts";

// ---------------------------------------------------------------------------------------------
// Shared

const CHILD_TIMEOUT_MS = 10 * 60_000;
const READY_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 20_000;

/** One JSON log line of the engine (pino), or null for anything else it prints. */
function parseLogLine(line: string): Record<string, unknown> | null {
  if (!line.startsWith("{")) return null;
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return null;
  }
}

/** Resolves once `ready()` holds; rejects if the child exits first or timeoutMs pass. */
async function waitUntil(ready: () => boolean, child: MeasuredChild, timeoutMs: number, what: string): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!ready()) {
    if (child.exited()) throw new Error(`exited before ${what}`);
    if (performance.now() > deadline) throw new Error(`not ${what} within ${timeoutMs / 1000} s`);
    await sleep(10);
  }
}

async function stopChild(child: MeasuredChild, who: string, errors: string[]): Promise<ChildResult> {
  child.kill("SIGTERM");
  const { result, timedOut } = await waitOrKill(child, STOP_TIMEOUT_MS);
  if (timedOut) errors.push(`${who}: did not exit within ${STOP_TIMEOUT_MS / 1000} s of SIGTERM; killed (${describeExit(result)})`);
  else if (result.exitCode !== 0) errors.push(`${who}: ended with ${describeExit(result)}`);
  return result;
}

// ---------------------------------------------------------------------------------------------
// 1. Word count, 1 worker against 2

const FULL_CORPUS: CorpusSpec = { seed: 42, vocabularySize: 50_000, minBytes: 16 * 2 ** 20, zipfExponent: 1 };
/** The word-count benchmark's quick corpus, so a quick run of both generates it once. */
const QUICK_CORPUS: CorpusSpec = { ...FULL_CORPUS, minBytes: 4 * 2 ** 20 };
const ROUNDS_FULL = 3;
const ROUNDS_QUICK = 1;
const SCALING_TARGET_RATIO = 1.5;
/** Lines of the corpus fed to the connector probe. */
const PROBE_LINES = 2000;

type Mode = "connector" | "file";
type Workers = 1 | 2;

interface ScalingRun {
  workers: Workers;
  round: number;
  mode: Mode;
  /** Connector: from the engine accepting the connector's session to the connector's exit (all committed). File: engine spawn to exit. */
  processMs: number;
  wordsPerSec: number;
  /** Engine spawn to exit (includes start-up, workers joining, idle time until SIGTERM in connector mode). */
  engineWallMs: number;
  /** Engine and its local workers (GNU time counts reaped children). */
  engineCpuSec: number | null;
  engineMaxRssKiB: number | null;
  connectorWallMs: number | null;
  connectorCpuSec: number | null;
  outputLines: number;
  /** Output lines already in the sink file when the connector exited; equal to outputLines when "committed" means written. */
  linesAtConnectorExit: number | null;
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

/**
 * Checks word-count output against the expected count per word: per word the outputs must be
 * "w 1", "w 2", ... "w n" in that order (none lost, duplicated or reordered), n as expected.
 * Workers may interleave different words differently; per word nothing may differ.
 */
function checkWordCountOutput(path: string, expected: ReadonlyMap<string, number>): string[] {
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

interface ScalingOutcome {
  run: Omit<ScalingRun, "round" | "workers" | "mode" | "wordsPerSec"> | null;
  error?: string;
}

/** One run fed by `keyway connector file-source`; the clock runs from session open to the connector's exit. */
async function runConnectorOnce(ctx: BenchContext, workers: Workers, input: string, output: string): Promise<ScalingOutcome> {
  rmSync(output, { force: true });
  const port = await freePort();
  let serving = false;
  let joined = workers === 1;
  let sessionOpenedAtMs: number | null = null;
  const engine = spawnNode(
    [
      "bin/keyway.js", "run", "examples/word-count/app.ts",
      "--source", "lines=connector", "--listen", `127.0.0.1:${port}`,
      "--sink", `counts=file:${output}`,
      "--workers", String(workers),
      // info: the readiness lines below are logged at info.
      "--no-progress", "--log-level", "info",
    ],
    {
      cwd: ctx.root,
      onStderrLine(line) {
        const entry = parseLogLine(line);
        if (entry === null) return;
        const msg = String(entry.msg ?? "");
        if (msg.startsWith("serving connectors")) serving = true;
        if (msg === "slots moved" && Array.isArray(entry.workers) && entry.workers.length === workers) joined = true;
        if (msg === "connector session opened" && sessionOpenedAtMs === null) sessionOpenedAtMs = Number(entry.time);
      },
    },
  );
  try {
    // Sources wait for every worker; starting the connector after that keeps the wait out of the figure.
    await waitUntil(() => serving && joined, engine, READY_TIMEOUT_MS, workers === 1 ? "serving connectors" : `serving connectors with ${workers} workers joined`);
    const connectorStartedAt = Date.now();
    const connector = spawnNode(
      ["bin/keyway.js", "connector", "file-source", "--engine", `127.0.0.1:${port}`, "--target", "lines", "--path", input, "--log-level", "warn"],
      { cwd: ctx.root },
    );
    // The connector retries a missing engine forever; an engine that died must not hang the bench.
    let engineDied = false;
    const watch = setInterval(() => {
      if (!engine.exited()) return;
      engineDied = true;
      connector.kill("SIGKILL");
    }, 100);
    const { result: conn, timedOut } = await waitOrKill(connector, CHILD_TIMEOUT_MS).finally(() => clearInterval(watch));
    const connectorEndedAt = connectorStartedAt + conn.wallMs;
    if (engineDied) {
      const { result } = await waitOrKill(engine, STOP_TIMEOUT_MS);
      return { run: null, error: `the engine exited while the connector was sending: ${describeExit(result)}` };
    }
    if (timedOut || conn.exitCode !== 0) {
      const stopErrors: string[] = [];
      await stopChild(engine, "engine", stopErrors);
      return { run: null, error: `connector ${timedOut ? "timed out" : `failed: ${describeExit(conn)}`}${stopErrors.length > 0 ? `; ${stopErrors.join("; ")}` : ""}` };
    }
    const atExit = await digestFile(output).catch(() => null);
    const stopErrors: string[] = [];
    const eng = await stopChild(engine, "engine", stopErrors);
    if (stopErrors.length > 0) return { run: null, error: stopErrors.join("; ") };
    if (sessionOpenedAtMs === null) return { run: null, error: "the engine never logged the connector's session opening" };
    const digest = await digestFile(output);
    return {
      run: {
        processMs: connectorEndedAt - sessionOpenedAtMs,
        engineWallMs: eng.wallMs,
        engineCpuSec: eng.cpuSec,
        engineMaxRssKiB: eng.maxRssKiB,
        connectorWallMs: conn.wallMs,
        connectorCpuSec: conn.cpuSec,
        outputLines: digest.lines,
        linesAtConnectorExit: atExit?.lines ?? null,
      },
    };
  } catch (err) {
    engine.kill("SIGKILL");
    const { result } = await waitOrKill(engine, STOP_TIMEOUT_MS);
    return { run: null, error: `${(err as Error).message} (${describeExit(result)})` };
  }
}

/** One run reading the file itself (`file:` source); the clock runs from spawn to exit. */
async function runFileOnce(ctx: BenchContext, workers: Workers, input: string, output: string): Promise<ScalingOutcome> {
  rmSync(output, { force: true });
  const args = [
    "bin/keyway.js", "run", "examples/word-count/app.ts",
    "--source", `lines=file:${input}`, "--sink", `counts=file:${output}`,
    "--workers", String(workers), "--no-progress", "--log-level", "warn",
  ];
  const { result, timedOut } = await waitOrKill(spawnNode(args, { cwd: ctx.root }), CHILD_TIMEOUT_MS);
  if (timedOut || result.exitCode !== 0) return { run: null, error: timedOut ? "timed out" : describeExit(result) };
  const digest = await digestFile(output);
  return {
    run: {
      processMs: result.wallMs,
      engineWallMs: result.wallMs,
      engineCpuSec: result.cpuSec,
      engineMaxRssKiB: result.maxRssKiB,
      connectorWallMs: null,
      connectorCpuSec: null,
      outputLines: digest.lines,
      linesAtConnectorExit: null,
    },
  };
}

async function measureScaling(ctx: BenchContext, errors: string[], notes: string[]): Promise<{ comparisons: Comparison[]; details: Record<string, unknown> }> {
  const spec = ctx.quick ? QUICK_CORPUS : FULL_CORPUS;
  const rounds = ctx.quick ? ROUNDS_QUICK : ROUNDS_FULL;
  ctx.log(`cluster: preparing a ${(spec.minBytes / 2 ** 20).toFixed(0)} MiB corpus`);
  const corpus = ensureCorpus(ctx.dataDir, spec);
  const outDir = join(ctx.dataDir, "out");
  const corpusText = readFileSync(corpus.path, "utf8");
  const expected = countWords(corpusText);
  let words = 0;
  for (const n of expected.values()) words += n;

  // Does the external connector path work? A small probe decides, so a broken connector path
  // degrades this benchmark to file: sources (said in the notes) instead of failing it.
  const probeInput = join(ctx.dataDir, "cluster-probe.txt");
  const probeText = `${corpusText.split("\n").slice(0, PROBE_LINES).join("\n")}\n`;
  writeFileSync(probeInput, probeText);
  const probeOutput = join(outDir, "cluster-probe-out.txt");
  ctx.log("cluster: probing the connector path (keyway connector file-source -> --source lines=connector)");
  const probe = await runConnectorOnce(ctx, 1, probeInput, probeOutput);
  const probeProblems = probe.run === null ? [] : checkWordCountOutput(probeOutput, countWords(probeText));
  rmSync(probeOutput, { force: true });
  rmSync(probeInput, { force: true });
  let mode: Mode = "connector";
  if (probe.run === null || probeProblems.length > 0) {
    mode = "file";
    const why = probe.run === null ? probe.error! : `wrong output: ${probeProblems.slice(0, 3).join("; ")}`;
    notes.push(`the external connector path did not work, so sources are file: (the engine reads the file itself). Probe: ${why}`);
    ctx.log(`cluster: connector probe failed (${why}); falling back to file: sources`);
  }

  const runs: ScalingRun[] = [];
  for (let round = 0; round < rounds; round++) {
    // Alternate who goes first, so neither side always gets the warmer or quieter machine.
    const order: Workers[] = round % 2 === 0 ? [1, 2] : [2, 1];
    for (const workers of order) {
      ctx.log(`cluster: word count round ${round + 1}/${rounds}, ${workers} worker(s), ${mode} source`);
      const output = join(outDir, `cluster-wc-${workers}.txt`);
      const outcome = mode === "connector" ? await runConnectorOnce(ctx, workers, corpus.path, output) : await runFileOnce(ctx, workers, corpus.path, output);
      if (outcome.run === null) {
        rmSync(output, { force: true });
        errors.push(`word count on ${workers} worker(s), round ${round + 1} failed: ${outcome.error}`);
        continue;
      }
      const problems = checkWordCountOutput(output, expected);
      rmSync(output, { force: true });
      if (problems.length > 0) {
        errors.push(`OUTPUT MISMATCH: word count on ${workers} worker(s), round ${round + 1}: ${problems.join("; ")}`);
      }
      const run: ScalingRun = { ...outcome.run, workers, round, mode, wordsPerSec: outcome.run.outputLines / (outcome.run.processMs / 1000) };
      runs.push(run);
      ctx.log(`cluster:   ${(run.processMs / 1000).toFixed(2)} s, ${formatRate(run.wordsPerSec)} words/s, engine CPU ${run.engineCpuSec?.toFixed(2) ?? "?"} s, connector CPU ${run.connectorCpuSec?.toFixed(2) ?? "-"} s, ${run.outputLines} lines${problems.length > 0 ? " (WRONG OUTPUT)" : ""}`);
    }
  }

  const medianOf = (workers: Workers, pick: (r: ScalingRun) => number | null): number | null => {
    const values = runs.filter((r) => r.workers === workers).map(pick).filter((v): v is number => v !== null);
    return values.length === 0 ? null : median(values);
  };
  const row = (metric: string, unit: string, pick: (r: ScalingRun) => number | null, better: Comparison["better"]): Comparison => {
    const two = medianOf(2, pick);
    const one = medianOf(1, pick);
    return { metric, unit, engine: two, baseline: one, ratio: ratio(two, one), better };
  };
  const throughput = row("word count throughput, 2 workers vs 1 (median)", "words/s", (r) => r.wordsPerSec, "higher");
  throughput.target = `ratio >= ${SCALING_TARGET_RATIO}`;
  if (throughput.ratio !== null) throughput.targetMet = throughput.ratio >= SCALING_TARGET_RATIO;
  const comparisons: Comparison[] = [
    throughput,
    row(mode === "connector" ? "word count time, session open to all committed (median)" : "word count wall time, spawn to exit (median)", "s", (r) => r.processMs / 1000, "lower"),
    row("word count engine CPU, all its processes (median)", "s", (r) => r.engineCpuSec, "lower"),
  ];
  if (mode === "connector") comparisons.push(row("word count connector CPU (median)", "s", (r) => r.connectorCpuSec, "lower"));

  const committedEarly = runs.filter((r) => r.linesAtConnectorExit !== null && r.linesAtConnectorExit !== r.outputLines);
  notes.push(
    `scaling: the keyway column is 2 workers (\`--workers 2\`), the baseline column 1 worker, same app (examples/word-count/app.ts) and corpus (${(corpus.bytes / 2 ** 20).toFixed(1)} MiB, ${corpus.lines} lines, ${words} words, ${expected.size} distinct); ${rounds} round(s), alternating; medians.`,
    mode === "connector"
      ? "scaling: fed by an external connector process (`keyway connector file-source` -> `--source lines=connector`), file sink. Timed from the engine logging the connector's session as opened (after every worker had joined) to the connector's exit, which it does once the engine has committed every line; start-up of the engine, the workers and the connector is not counted."
      : "scaling: file: source and sink; timed from spawn to exit, so start-up (and for 2 workers, spawning and joining the second) is counted.",
    "scaling: on 2 workers the first worker still reads the source and writes the sink, and sends the records of half the slots to the second over gRPC; on 2 cores the two workers, the connector and the driver share the machine.",
    `scaling: every run's output was checked per word against the driver's own count of the corpus (counts 1..n in order for each word, n as in the corpus)${errors.some((e) => e.startsWith("OUTPUT MISMATCH")) ? "; SOME DIFFERED (see errors)" : "; all matched"}.`,
  );
  if (committedEarly.length > 0) {
    notes.push(`scaling: in ${committedEarly.length} run(s) the sink file had fewer lines when the connector exited than when the engine stopped (${committedEarly.map((r) => `${r.linesAtConnectorExit}/${r.outputLines}`).join(", ")}): "committed" came before the sink had written everything, so those times are slightly short.`);
  }
  return {
    comparisons,
    details: {
      mode,
      corpus: { ...spec, path: corpus.path, bytes: corpus.bytes, lines: corpus.lines, words, distinct: expected.size },
      connectorProbe: probe.run === null ? { ok: false, error: probe.error } : { ok: probeProblems.length === 0, problems: probeProblems },
      runs,
    },
  };
}

// ---------------------------------------------------------------------------------------------
// 2. Grow 1 -> 2 workers under load

interface GrowProfile {
  keys: number;
  ratePerSec: number;
  /** Steady load before the worker starts; its end is the no-move baseline window. */
  preSec: number;
  /** The start of the steady load that no window may use (the engine settling after the bulk load). */
  settleSec: number;
  /** Steady load after the move completed. */
  postSec: number;
}

const FULL_GROW: GrowProfile = { keys: 1_000_000, ratePerSec: 20_000, preSec: 12, settleSec: 2, postSec: 4 };
const QUICK_GROW: GrowProfile = { keys: 100_000, ratePerSec: 20_000, preSec: 5, settleSec: 1, postSec: 2 };
const GAP_TARGET_MS = 250;
const TICK_MS = 1;
const BULK_LINES_PER_WRITE = 10_000;
const LOAD_TIMEOUT_MS = 5 * 60_000;
const MOVE_TIMEOUT_MS = 5 * 60_000;
const DRAIN_TIMEOUT_MS = 30_000;

/** A growing array of doubles, off the JS heap's object graph so the driver's GCs stay short. */
class F64List {
  data = new Float64Array(1 << 16);
  length = 0;
  push(value: number): void {
    if (this.length === this.data.length) {
      const bigger = new Float64Array(this.data.length * 2);
      bigger.set(this.data);
      this.data = bigger;
    }
    this.data[this.length++] = value;
  }
  at(i: number): number {
    return this.data[i]!;
  }
}

class I32List {
  data = new Int32Array(1 << 16);
  length = 0;
  push(value: number): void {
    if (this.length === this.data.length) {
      const bigger = new Int32Array(this.data.length * 2);
      bigger.set(this.data);
      this.data = bigger;
    }
    this.data[this.length++] = value;
  }
  at(i: number): number {
    return this.data[i]!;
  }
}

const NL = 0x0a;
const SPACE = 0x20;
const COMMA = 0x2c;
const ZERO = 0x30;
const NINE = 0x39;

/**
 * Every output line the sink delivers ("k<key> <n-3>,...,<n>"), with the arrival time of each
 * chunk, on one clock. Lines are parsed from the bytes as they come (no string per line) and the
 * raw chunks kept for the checker, so the driver itself stays light while it measures gaps.
 */
class SinkCollector {
  lines = 0;
  malformed = 0;
  connections = 0;
  /** Arrival time of each chunk that completed at least one line. */
  readonly arrivalMs = new F64List();
  private readonly chunks: Buffer[] = [];
  private readonly sockets = new Set<Socket>();
  // Parser state, kept across chunks: 0 expects "k", 1 in the key's digits, 2 in the window.
  private phase = 0;
  private key = 0;
  private last = 0;
  private bad = false;

  constructor(private readonly onOutput: (key: number, n: number, nowMs: number) => void) {}

  attach(socket: Socket): void {
    this.connections++;
    this.sockets.add(socket);
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => {
      const nowMs = performance.now();
      this.chunks.push(chunk);
      const before = this.lines;
      for (let i = 0; i < chunk.length; i++) this.byte(chunk[i]!, nowMs);
      if (this.lines > before) this.arrivalMs.push(nowMs);
    });
    socket.on("error", () => socket.destroy());
    socket.on("close", () => this.sockets.delete(socket));
  }

  private byte(c: number, nowMs: number): void {
    if (c === NL) {
      if (this.bad || this.phase !== 2) this.malformed++;
      else this.onOutput(this.key, this.last, nowMs);
      this.lines++;
      this.phase = 0;
      this.key = 0;
      this.last = 0;
      this.bad = false;
      return;
    }
    if (this.phase === 0) {
      if (c === 0x6b /* k */) this.phase = 1;
      else this.bad = true;
    } else if (this.phase === 1) {
      if (c >= ZERO && c <= NINE) this.key = this.key * 10 + (c - ZERO);
      else if (c === SPACE) this.phase = 2;
      else this.bad = true;
    } else if (c === COMMA) {
      this.last = 0;
    } else if (c >= ZERO && c <= NINE) {
      this.last = this.last * 10 + (c - ZERO);
    } else {
      this.bad = true;
    }
  }

  text(): string {
    return Buffer.concat(this.chunks).toString("latin1");
  }

  closeAll(): void {
    for (const socket of this.sockets) socket.destroy();
  }
}

/**
 * The longest time between consecutive instants that overlaps [fromMs, toMs]: the later one
 * after fromMs and the earlier one before toMs (a stall that starts before the window and ends
 * in it counts whole). Only instants at or after sinceMs are considered.
 */
function longestGapMs(instants: F64List, sinceMs: number, fromMs: number, toMs: number): { gapMs: number; atMs: number } {
  let gapMs = 0;
  let atMs = Number.NaN;
  for (let i = 1; i < instants.length; i++) {
    const a = instants.at(i - 1);
    const b = instants.at(i);
    if (a < sinceMs || b <= fromMs || a >= toMs) continue;
    if (b - a > gapMs) {
      gapMs = b - a;
      atMs = a;
    }
  }
  return { gapMs, atMs };
}

interface GrowResult {
  profile: GrowProfile;
  bulkLoadMs: number;
  bulkLoadPerSec: number;
  steadySent: number;
  received: number;
  workerSpawnToMovedMs: number;
  joiningToMovedMs: number | null;
  coordinator: { slotsMoved: number; elapsedMs: number; longestPauseMs: number; epoch: number } | null;
  moveWindowMs: number;
  baselineWindowMs: number;
  gapDuringMoveMs: number;
  gapDuringMoveAtSec: number;
  gapBaselineMs: number;
  latencyMaxDuringMoveMs: number;
  latencyP99DuringMoveMs: number;
  latencyMaxBaselineMs: number;
  latencyP99BaselineMs: number;
  /** The driver's own longest stall (between its ~1 ms timer ticks) in each window: a floor under the gaps it can see. */
  driverStallDuringMoveMs: number;
  driverStallBaselineMs: number;
  pacingLagMsMax: number;
  driverBacklogBytesMax: number;
  sinkConnections: number;
  statusAfter: unknown;
  verdict: { ok: boolean; keys: number; outputs: number; problems: string[] };
  engineCpuSec: number | null;
  engineMaxRssKiB: number | null;
  workerCpuSec: number | null;
  workerMaxRssKiB: number | null;
  /** Coordinator log lines about the move, verbatim. */
  coordinatorLog: string[];
}

/** The steady load: a fixed rate whatever the engine does, over random keys, each key's n rising by one. */
class SteadyLoad {
  sent = 0;
  pacingLagMsMax = 0;
  backlogBytesMax = 0;
  /** When each timer tick ran: the longest interval in a window is the driver's own stall there. */
  readonly tickMs = new F64List();
  /** Per steady record, by its index: send time, key, n, the key's previous steady record, latency. */
  private readonly sendMs = new F64List();
  private readonly nOf = new I32List();
  private readonly previousOfKey = new I32List();
  private readonly latencyMs = new F64List();
  private readonly lastOfKey: Int32Array;
  private stopped = false;
  private done: Promise<void> | undefined;

  constructor(
    private readonly socket: Socket,
    private readonly counts: Uint32Array,
    private readonly ratePerSec: number,
    private readonly random: () => number,
  ) {
    this.lastOfKey = new Int32Array(counts.length).fill(-1);
  }

  start(): void {
    this.done = new Promise((resolve) => {
      const startMs = performance.now();
      const msPerRecord = 1000 / this.ratePerSec;
      const tick = () => {
        const nowMs = performance.now();
        this.tickMs.push(nowMs);
        const due = Math.floor((nowMs - startMs) / msPerRecord);
        if (due > this.sent) {
          this.pacingLagMsMax = Math.max(this.pacingLagMsMax, nowMs - (startMs + this.sent * msPerRecord));
          let text = "";
          for (; this.sent < due; this.sent++) {
            const key = Math.floor(this.random() * this.counts.length);
            const n = ++this.counts[key]!;
            const index = this.sendMs.length;
            this.sendMs.push(nowMs);
            this.nOf.push(n);
            this.previousOfKey.push(this.lastOfKey[key]!);
            this.latencyMs.push(Number.NaN);
            this.lastOfKey[key] = index;
            text += `k${key} ${n}\n`;
          }
          // Offered load stays fixed; a backlog here is the engine not reading as fast as offered.
          this.socket.write(text);
          this.backlogBytesMax = Math.max(this.backlogBytesMax, this.socket.writableLength);
        }
        if (this.stopped) resolve();
        else setTimeout(tick, TICK_MS);
      };
      tick();
    });
  }

  /** The output for (key, n) arrived at nowMs. Bulk-load outputs have no steady record and are skipped. */
  received(key: number, n: number, nowMs: number): void {
    if (key >= this.lastOfKey.length) return;
    let index = this.lastOfKey[key]!;
    while (index >= 0 && this.nOf.at(index) !== n) index = this.previousOfKey.at(index);
    if (index >= 0) this.latencyMs.data[index] = nowMs - this.sendMs.at(index);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }

  /** Max and p99 latency of the records sent in [fromMs, toMs); records never answered are left out (the check reports them). */
  latencyIn(fromMs: number, toMs: number): { maxMs: number; p99Ms: number } {
    const values: number[] = [];
    for (let i = 0; i < this.sendMs.length; i++) {
      const at = this.sendMs.at(i);
      const latency = this.latencyMs.at(i);
      if (at >= fromMs && at < toMs && !Number.isNaN(latency)) values.push(latency);
    }
    values.sort((a, b) => a - b);
    return { maxMs: values.length > 0 ? values[values.length - 1]! : Number.NaN, p99Ms: percentileSorted(values, 99) };
  }
}

async function measureGrow(ctx: BenchContext, errors: string[]): Promise<GrowResult | null> {
  const profile = ctx.quick ? QUICK_GROW : FULL_GROW;
  const counts = new Uint32Array(profile.keys);
  let steady: SteadyLoad | undefined;
  const collector = new SinkCollector((key, n, nowMs) => steady?.received(key, n, nowMs));
  const sinkServer = createServer({ noDelay: true }, (socket) => collector.attach(socket));
  const sinkPort = await listen(sinkServer, 0);
  const sourcePort = await freePort();
  const clusterPort = await freePort();
  const clusterAddress = `127.0.0.1:${clusterPort}`;

  let joiningAt: number | null = null;
  let movedAt: number | null = null;
  let moved: GrowResult["coordinator"] = null;
  const coordinatorLog: string[] = [];
  const engine = spawnNode(
    [
      "bin/keyway.js", "run", "bench/apps/sequence-window.ts",
      "--source", `in=tcp://127.0.0.1:${sourcePort}`,
      "--sink", `out=tcp://127.0.0.1:${sinkPort}`,
      "--cluster-listen", clusterAddress,
      "--no-progress", "--log-level", "info",
    ],
    {
      cwd: ctx.root,
      onStderrLine(line) {
        const entry = parseLogLine(line);
        if (entry === null) return;
        if (entry.msg === "worker joining") {
          joiningAt ??= performance.now();
          coordinatorLog.push(line);
        }
        if (entry.msg === "slots moved") {
          movedAt ??= performance.now();
          moved ??= { slotsMoved: Number(entry.slotsMoved), elapsedMs: Number(entry.elapsedMs), longestPauseMs: Number(entry.longestPauseMs), epoch: Number(entry.epoch) };
          coordinatorLog.push(line);
        }
        if (typeof entry.level === "number" && entry.level >= 40) coordinatorLog.push(line);
      },
    },
  );
  let worker: MeasuredChild | undefined;
  let sender: Socket | undefined;
  try {
    sender = await connectWhenListening(sourcePort, engine, READY_TIMEOUT_MS);
    sender.on("error", (err) => errors.push(`grow: driver connection failed: ${err.message}`));

    // Bulk load: every key once, as fast as the engine takes it.
    ctx.log(`cluster: grow: loading ${profile.keys} keys into one worker`);
    const loadStartedAt = performance.now();
    for (let first = 0; first < profile.keys; first += BULK_LINES_PER_WRITE) {
      let text = "";
      for (let k = first; k < Math.min(profile.keys, first + BULK_LINES_PER_WRITE); k++) {
        counts[k] = 1;
        text += `k${k} 1\n`;
      }
      await writeWithBackpressure(sender, text);
    }
    await waitUntil(() => collector.lines >= profile.keys, engine, LOAD_TIMEOUT_MS, `done with the bulk load (${collector.lines}/${profile.keys} outputs)`);
    const bulkLoadMs = performance.now() - loadStartedAt;
    ctx.log(`cluster: grow: ${profile.keys} keys loaded in ${(bulkLoadMs / 1000).toFixed(1)} s; steady load ${profile.ratePerSec}/s for ${profile.preSec} s before the join`);

    steady = new SteadyLoad(sender, counts, profile.ratePerSec, createRandom(7));
    const steadyStartedAt = performance.now();
    steady.start();
    await sleep(profile.preSec * 1000);

    const workerSpawnedAt = performance.now();
    ctx.log("cluster: grow: starting `keyway worker` to join");
    worker = spawnNode(["bin/keyway.js", "worker", "bench/apps/sequence-window.ts", "--join", clusterAddress, "--log-level", "info"], { cwd: ctx.root });
    const deadline = performance.now() + MOVE_TIMEOUT_MS;
    while (movedAt === null) {
      if (worker.exited()) throw new Error("the joining worker exited before the slots moved");
      if (engine.exited()) throw new Error("the engine exited while slots moved");
      if (performance.now() > deadline) throw new Error(`slots did not move within ${MOVE_TIMEOUT_MS / 1000} s`);
      await sleep(5);
    }
    const movedSeenAt: number = movedAt;
    ctx.log(`cluster: grow: slots moved ${((movedSeenAt - workerSpawnedAt) / 1000).toFixed(2)} s after the worker started (${JSON.stringify(moved)}); ${profile.postSec} s more load`);
    await sleep(profile.postSec * 1000);
    await steady.stop();

    const total = profile.keys + steady.sent;
    const drainDeadline = performance.now() + DRAIN_TIMEOUT_MS;
    while (collector.lines < total && performance.now() < drainDeadline && !engine.exited()) await sleep(20);

    // Where the keys are now, from the cluster's own report.
    let statusAfter: unknown = null;
    const status = await waitOrKill(spawnNode(["bin/keyway.js", "cluster", "status", "--address", clusterAddress, "--json"], { cwd: ctx.root }), 60_000);
    if (status.result.exitCode === 0) statusAfter = JSON.parse(status.result.stdoutTail);
    else errors.push(`grow: keyway cluster status failed: ${describeExit(status.result)}`);

    sender.end();
    const eng = await stopChild(engine, "grow: engine", errors);
    const { result: wrk, timedOut: workerTimedOut } = await waitOrKill(worker, STOP_TIMEOUT_MS);
    if (workerTimedOut) errors.push(`grow: the joined worker did not exit within ${STOP_TIMEOUT_MS / 1000} s of the engine stopping; killed`);
    else if (wrk.exitCode !== 0) errors.push(`grow: the joined worker ended with ${describeExit(wrk)}`);

    if (collector.malformed > 0) errors.push(`grow: ${collector.malformed} malformed output lines`);
    if (collector.lines !== total) errors.push(`grow: received ${collector.lines} outputs for ${total} records sent (${profile.keys} bulk + ${steady.sent} steady)`);
    // Every key must end at the count the driver sent it, with every window in between right.
    const expected = new Map<string, number>();
    for (let k = 0; k < profile.keys; k++) expected.set(`k${k}`, counts[k]!);
    const verdict = checkSequenceWindows(collector.text(), expected);
    if (!verdict.ok) errors.push(`grow: OUTPUT WRONG (sequence-window check): ${verdict.problems.slice(0, 5).join("; ")}`);

    // The move window: from starting the worker to the coordinator's "slots moved" line. The
    // baseline: an equally long window of the same steady load just before it, with no move.
    const moveWindowMs = movedSeenAt - workerSpawnedAt;
    const baselineFrom = Math.max(steadyStartedAt + profile.settleSec * 1000, workerSpawnedAt - moveWindowMs);
    const baselineWindowMs = workerSpawnedAt - baselineFrom;
    const during = longestGapMs(collector.arrivalMs, steadyStartedAt, workerSpawnedAt, movedSeenAt);
    const before = longestGapMs(collector.arrivalMs, steadyStartedAt, baselineFrom, workerSpawnedAt);
    const latencyDuring = steady.latencyIn(workerSpawnedAt, movedSeenAt);
    const latencyBefore = steady.latencyIn(baselineFrom, workerSpawnedAt);
    const stallDuring = longestGapMs(steady.tickMs, steadyStartedAt, workerSpawnedAt, movedSeenAt);
    const stallBefore = longestGapMs(steady.tickMs, steadyStartedAt, baselineFrom, workerSpawnedAt);
    return {
      profile,
      bulkLoadMs,
      bulkLoadPerSec: profile.keys / (bulkLoadMs / 1000),
      steadySent: steady.sent,
      received: collector.lines,
      workerSpawnToMovedMs: moveWindowMs,
      joiningToMovedMs: joiningAt === null ? null : movedSeenAt - joiningAt,
      coordinator: moved,
      moveWindowMs,
      baselineWindowMs,
      gapDuringMoveMs: during.gapMs,
      gapDuringMoveAtSec: (during.atMs - workerSpawnedAt) / 1000,
      gapBaselineMs: before.gapMs,
      latencyMaxDuringMoveMs: latencyDuring.maxMs,
      latencyP99DuringMoveMs: latencyDuring.p99Ms,
      latencyMaxBaselineMs: latencyBefore.maxMs,
      latencyP99BaselineMs: latencyBefore.p99Ms,
      driverStallDuringMoveMs: stallDuring.gapMs,
      driverStallBaselineMs: stallBefore.gapMs,
      pacingLagMsMax: steady.pacingLagMsMax,
      driverBacklogBytesMax: steady.backlogBytesMax,
      sinkConnections: collector.connections,
      statusAfter,
      verdict: { ...verdict, problems: verdict.problems.slice(0, 20) },
      engineCpuSec: eng.cpuSec,
      engineMaxRssKiB: eng.maxRssKiB,
      workerCpuSec: wrk.cpuSec,
      workerMaxRssKiB: wrk.maxRssKiB,
      coordinatorLog,
    };
  } catch (err) {
    await steady?.stop();
    engine.kill("SIGKILL");
    worker?.kill("SIGKILL");
    const { result } = await waitOrKill(engine, STOP_TIMEOUT_MS);
    const workerResult = worker === undefined ? undefined : (await waitOrKill(worker, STOP_TIMEOUT_MS)).result;
    errors.push(`grow: ${(err as Error).message} (engine: ${describeExit(result)}${workerResult === undefined ? "" : `; worker: ${describeExit(workerResult)}`})`);
    return null;
  } finally {
    sender?.destroy();
    collector.closeAll();
    await closeServer(sinkServer);
  }
}

// ---------------------------------------------------------------------------------------------

export async function runCluster(ctx: BenchContext): Promise<BenchResult> {
  const startedAt = performance.now();
  const errors: string[] = [];
  const notes: string[] = [];

  const scaling = await measureScaling(ctx, errors, notes);
  const grow = await measureGrow(ctx, errors);

  const comparisons: Comparison[] = [...scaling.comparisons];
  if (grow !== null) {
    const single = (metric: string, unit: string, value: number | null, better: Comparison["better"]): Comparison => ({ metric, unit, engine: value, baseline: null, ratio: null, better });
    const gap: Comparison = {
      metric: "grow: longest output gap, move window vs same-length window without a move",
      unit: "ms",
      engine: grow.gapDuringMoveMs,
      baseline: grow.gapBaselineMs,
      ratio: ratio(grow.gapDuringMoveMs, grow.gapBaselineMs),
      better: "lower",
      target: `keyway <= ${GAP_TARGET_MS} ms`,
      targetMet: grow.gapDuringMoveMs <= GAP_TARGET_MS,
    };
    comparisons.push(
      gap,
      { metric: "grow: latency max, records sent in those windows", unit: "ms", engine: grow.latencyMaxDuringMoveMs, baseline: grow.latencyMaxBaselineMs, ratio: ratio(grow.latencyMaxDuringMoveMs, grow.latencyMaxBaselineMs), better: "lower" },
      { metric: "grow: latency p99, records sent in those windows", unit: "ms", engine: grow.latencyP99DuringMoveMs, baseline: grow.latencyP99BaselineMs, ratio: ratio(grow.latencyP99DuringMoveMs, grow.latencyP99BaselineMs), better: "lower" },
      { metric: "grow: the driver's own longest stall in those windows", unit: "ms", engine: grow.driverStallDuringMoveMs, baseline: grow.driverStallBaselineMs, ratio: ratio(grow.driverStallDuringMoveMs, grow.driverStallBaselineMs), better: "lower" },
      single("grow: worker start -> slots moved", "s", grow.workerSpawnToMovedMs / 1000, "lower"),
      single("grow: coordinator elapsedMs (join -> slots moved)", "s", grow.coordinator === null ? null : grow.coordinator.elapsedMs / 1000, "lower"),
      single("grow: coordinator longestPauseMs", "ms", grow.coordinator?.longestPauseMs ?? null, "lower"),
      single(`grow: bulk load of ${formatCount(grow.profile.keys)} keys, one worker`, "records/s", grow.bulkLoadPerSec, "higher"),
    );
    const workers = (grow.statusAfter as { workers?: Array<{ id: string; slots: number; keys: number }> } | null)?.workers ?? [];
    notes.push(
      `grow: bench/apps/sequence-window.ts (examples/validation/sequence-window.ts) on one worker (\`--cluster-listen\`), tcp source and sink; ${formatCount(grow.profile.keys)} distinct keys loaded first (${(grow.bulkLoadMs / 1000).toFixed(1)} s), then ${formatCount(grow.profile.ratePerSec)} records/s over random keys of them; after ${grow.profile.preSec} s of that, \`keyway worker\` is started to join, and the load goes on ${grow.profile.postSec} s after the coordinator logged "slots moved".`,
      `grow: the move window runs from starting the worker to the coordinator's "slots moved" line (${(grow.moveWindowMs / 1000).toFixed(2)} s; ${grow.joiningToMovedMs === null ? "?" : (grow.joiningToMovedMs / 1000).toFixed(2)} s of it from "worker joining"; worker start-up is in it); the baseline window is the ${(grow.baselineWindowMs / 1000).toFixed(2)} s of the same load just before the worker started${grow.baselineWindowMs + 1 < grow.moveWindowMs ? ` (shorter than the move window: only ${grow.profile.preSec - grow.profile.settleSec} s of settled load came before it)` : ""}. A gap is the time between consecutive arrivals of output at the sink peer (the driver); a stall of the driver itself (its ~1 ms timer ticks late, given in its own row) shows up as a gap too, so read the gaps against it. The longest gap in the move window began ${grow.gapDuringMoveAtSec.toFixed(2)} s after the worker started.`,
      `grow: coordinator: ${grow.coordinator === null ? "n/a" : `${grow.coordinator.slotsMoved} slots moved, elapsedMs ${grow.coordinator.elapsedMs}, longestPauseMs ${grow.coordinator.longestPauseMs}, epoch ${grow.coordinator.epoch}`}; after the move: ${workers.map((w) => `${w.id} ${w.slots} slots ${w.keys} keys`).join(", ") || "status n/a"}.`,
      `grow: ${grow.received} outputs for ${grow.profile.keys + grow.steadySent} records; sequence-window check ${grow.verdict.ok ? `ok (${grow.verdict.outputs} outputs over ${grow.verdict.keys} keys, none lost, duplicated or reordered)` : "FAILED"}. Driver pacing lag at worst ${grow.pacingLagMsMax.toFixed(1)} ms, its socket backlog at worst ${grow.driverBacklogBytesMax} B; the sink connected ${grow.sinkConnections} time(s).`,
    );
  }

  return {
    name: "cluster",
    title: "Cluster: word count on 2 workers vs 1, and growing 1 -> 2 under load",
    ok: errors.length === 0,
    errors,
    notes,
    comparisons,
    details: { scaling: scaling.details, grow },
    durationMs: performance.now() - startedAt,
  };
}

function formatRate(perSec: number): string {
  return perSec >= 1e6 ? `${(perSec / 1e6).toFixed(2)}M` : `${(perSec / 1e3).toFixed(0)}k`;
}

function formatCount(n: number): string {
  return n >= 1e6 ? `${n / 1e6}M` : n >= 1e3 ? `${n / 1e3}k` : String(n);
}
