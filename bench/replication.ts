/**
 * The replication benchmark: what keeping two copies of every slot costs and what it buys, each
 * figure beside a baseline from the same run.
 *
 * 1. Throughput: word count (examples/word-count/app.ts) on 2 workers reading a directory of two
 *    files, `--replicas 2` against `--replicas 1`; alternating, median of rounds. Every run's
 *    output is checked per word against the driver's own count of the corpus.
 * 2. Failover: bench/apps/sequence-window.ts on 3 workers with `--replicas 2` holding 1M keys fed
 *    over tcp://, a trickle of records to probe keys whose slots one worker leads, and that worker
 *    SIGKILLed: the time from the kill to the first new output of a probe key. Baseline: the same
 *    app and keys in one process with `--data-dir`, SIGKILLed and restarted from its checkpoint.
 *    The cluster's whole output is then proven free of loss, duplication and reordering per key.
 * 3. Copies restored: from that kill until every slot has two copies again, against the same
 *    cluster growing from 2 to 3 workers earlier in the run (the same amount of state moving live).
 * 4. Replica payload (lib/replica-payload.ts, in-process): what a primary ships its backups per
 *    applied batch, the inputs (today, and from packed arrays) against the state changes, for
 *    word count and the sequence-window app: bytes and encode + apply CPU per record, backups
 *    checked equal to the primary.
 */
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Socket } from "node:net";
import { dirname, join } from "node:path";
import { latestCheckpointSeq } from "../src/durability/checkpoint-chain.ts";
import { equalRanges, rangesOf } from "../src/routing/partition-map.ts";
import type { BenchContext } from "./lib/context.ts";
import { describeExit, spawnNode, waitOrKill, type ChildResult, type MeasuredChild } from "./lib/child.ts";
import { clusterStatus, parseLogLine, READY_TIMEOUT_MS, STOP_TIMEOUT_MS, stopChild, stopWithJoined, waitUntil, type ClusterStatus } from "./lib/engine-child.ts";
import { closeServer, connectWhenListening, freePort, listen, sleep } from "./lib/net.ts";
import { formatCount, formatRate, medianRow, type BenchResult, type Comparison } from "./lib/report.ts";
import { measureReplicaPayload } from "./lib/replica-payload.ts";
import { bulkLoad, checkSequenceOutput, SinkCollector, SLOT_COUNT, slotsOfKeys } from "./lib/sequence-load.ts";
import { median, ratio } from "./lib/stats.ts";
import { checkWordCountOutput, CLUSTER_CORPUS, CLUSTER_CORPUS_QUICK, prepareDataset, runDirectoryOnce, type DirectoryRun } from "./lib/word-count-dir.ts";

// ---------------------------------------------------------------------------------------------
// 1. Throughput, R=2 against R=1 on 2 workers

const THROUGHPUT_ROUNDS_FULL = 3;
const THROUGHPUT_ROUNDS_QUICK = 1;
const THROUGHPUT_TARGET_RATIO = 0.7;
type Replicas = 1 | 2;

interface ThroughputRun extends DirectoryRun {
  replicas: Replicas;
  round: number;
  wordsPerSec: number;
  cpuUsPerWord: number | null;
}

async function measureThroughput(ctx: BenchContext, errors: string[], notes: string[]): Promise<{ comparisons: Comparison[]; details: Record<string, unknown> }> {
  // The cluster benchmark's corpus and files, so a run of both generates them once.
  const spec = ctx.quick ? CLUSTER_CORPUS_QUICK : CLUSTER_CORPUS;
  ctx.log(`replication: preparing a ${(spec.minBytes / 2 ** 20).toFixed(0)} MiB corpus in two files`);
  const data = prepareDataset(ctx, spec);
  const outDir = join(ctx.dataDir, "out");
  mkdirSync(outDir, { recursive: true });
  const rounds = ctx.quick ? THROUGHPUT_ROUNDS_QUICK : THROUGHPUT_ROUNDS_FULL;
  const runs: ThroughputRun[] = [];
  for (let round = 0; round < rounds; round++) {
    // Alternate who goes first, so neither side always gets the warmer or quieter machine.
    const order: Replicas[] = round % 2 === 0 ? [1, 2] : [2, 1];
    const linesOf = new Map<Replicas, number>();
    for (const replicas of order) {
      ctx.log(`replication: word count on 2 workers, round ${round + 1}/${rounds}, --replicas ${replicas}`);
      const output = join(outDir, `replication-wc-r${replicas}.txt`);
      const outcome = await runDirectoryOnce(ctx, 2, data, output, ["--replicas", String(replicas)]);
      if (outcome.run === null) {
        rmSync(output, { force: true });
        errors.push(`word count on 2 workers with --replicas ${replicas}, round ${round + 1} failed: ${outcome.error}`);
        continue;
      }
      const problems = checkWordCountOutput(output, data.expected);
      rmSync(output, { force: true });
      if (problems.length > 0) errors.push(`OUTPUT MISMATCH: word count with --replicas ${replicas}, round ${round + 1}: ${problems.join("; ")}`);
      linesOf.set(replicas, outcome.run.outputLines);
      const run: ThroughputRun = {
        ...outcome.run,
        replicas,
        round,
        wordsPerSec: data.words / (outcome.run.processMs / 1000),
        cpuUsPerWord: outcome.run.activeCpuSec === null ? null : (outcome.run.activeCpuSec * 1e6) / data.words,
      };
      runs.push(run);
      ctx.log(
        `replication:   ${(run.processMs / 1000).toFixed(2)} s, ${formatRate(run.wordsPerSec)} words/s, CPU ${run.activeCpuSec?.toFixed(2) ?? "?"} s over it (${run.cpuUsPerWord?.toFixed(2) ?? "?"} us/word), ` +
          `whole life ${(run.engineWallMs / 1000).toFixed(2)} s, ${run.outputLines} lines${problems.length > 0 ? " (WRONG OUTPUT)" : ""}`,
      );
    }
    const [one, two] = [linesOf.get(1), linesOf.get(2)];
    if (one !== undefined && two !== undefined && one !== two) errors.push(`OUTPUT MISMATCH: round ${round + 1}: ${two} output lines with --replicas 2, ${one} with --replicas 1`);
  }

  const row = (metric: string, unit: string, pick: (r: ThroughputRun) => number | null, better: Comparison["better"]): Comparison => medianRow(runs, (r) => r.replicas === 2, metric, unit, pick, better);
  const what = "word count on 2 workers, file:DIR of 2 files";
  const throughput = row(`${what}: throughput, --replicas 2 vs --replicas 1 (median)`, "words/s", (r) => r.wordsPerSec, "higher");
  throughput.target = `ratio >= ${THROUGHPUT_TARGET_RATIO}`;
  if (throughput.ratio !== null) throughput.targetMet = throughput.ratio >= THROUGHPUT_TARGET_RATIO;
  const comparisons = [
    throughput,
    row(`${what}: CPU per word, all engine processes (median)`, "us", (r) => r.cpuUsPerWord, "lower"),
    row(`${what}: time, first output to last (median)`, "s", (r) => r.processMs / 1000, "lower"),
    row(`${what}: spawn to first output (start-up, joining) (median)`, "s", (r) => r.spawnToFirstOutputMs / 1000, "lower"),
    row(`${what}: CPU, whole life of all engine processes (median)`, "s", (r) => r.engineCpuSec, "lower"),
    row(`${what}: peak RSS of the first process (median)`, "MiB", (r) => (r.engineMaxRssKiB === null ? null : r.engineMaxRssKiB / 1024), "lower"),
  ];
  const mismatched = errors.some((e) => e.startsWith("OUTPUT MISMATCH"));
  notes.push(
    `throughput: the keyway column is \`--workers 2 --replicas 2\` (every slot's state on both workers: each applied record is sent to the slot's backup, and its output leaves once the backup has it), the baseline column \`--workers 2 --replicas 1\` (no copies); otherwise as the cluster benchmark's 2-worker run: examples/word-count/app.ts, \`--source lines=file:DIR\` over ${data.files.length} files (one per worker) of the same corpus (${(data.bytes / 2 ** 20).toFixed(1)} MiB, ${data.words} words, ${data.expected.size} distinct), file sink on the first worker; ${rounds} round(s), alternating which side goes first; medians.`,
    `throughput: timed from the first byte in the sink file to the file reaching the complete output's size (${data.expectedBytes} B, from the driver's own count); CPU per word from /proc of every engine process at those two instants. Every run's output was checked per word against the corpus (counts 1..n in order, n as in the corpus), and each round's two runs must have as many lines${mismatched ? "; SOME DIFFERED (see errors)" : "; all matched"}.`,
  );
  return { comparisons, details: { corpus: { ...spec, path: data.corpusPath, bytes: data.bytes, words: data.words, distinct: data.expected.size }, runs } };
}

// ---------------------------------------------------------------------------------------------
// 2 and 3. Failover and copies restored, 1M keys

interface FailoverProfile {
  keys: number;
  /** Trickle before the kill, so the probe keys are answered steadily when it comes. */
  beforeKillMs: number;
  /** Trickle after the copies are restored, before the driver stops it and drains. */
  afterMs: number;
}

const FULL_PROFILE: FailoverProfile = { keys: 1_000_000, beforeKillMs: 2000, afterMs: 1000 };
const QUICK_PROFILE: FailoverProfile = { keys: 100_000, beforeKillMs: 1000, afterMs: 500 };
const RECOVERY_TARGET_MS = 1000;
/** The cluster grows from these workers to three; the victim is the second, a local worker of `keyway run`. */
const WORKERS_BEFORE = ["w0", "w1"];
const WORKERS_AFTER = ["w0", "w1", "w2"];
const VICTIM = "w1";
const PROBE_KEYS = 4;
/** Keys of slots the victim does not lead, per surviving worker: do they stall while it is replaced? */
const CONTROL_KEYS_PER_WORKER = 2;
/** Every tick the trickle sends one record to each probe and control key. */
const TRICKLE_TICK_MS = 5;
/** With --data-dir; the engine's default interval, said here so the notes can name it. */
const CHECKPOINT_INTERVAL_MS = 1000;
const CHECKPOINTS_BEFORE_KILL = 2;
const LOAD_TIMEOUT_MS = 5 * 60_000;
const CHANGE_TIMEOUT_MS = 5 * 60_000;
const RECOVERY_TIMEOUT_MS = 60_000;
const DRAIN_TIMEOUT_MS = 30_000;
/** The coordinator's lines the driver times, by their message. */
const MSG = {
  joining: "worker joining",
  moved: "slots moved",
  restored: "copies restored: every slot has its replicas",
  dead: "workers declared dead and fenced",
  failover: "failover done: backups lead the dead workers' slots",
  tookOver: "took over from dead workers",
  checkpointRestored: "restored checkpoint",
} as const;
const WARNINGS_KEPT = 40;

interface LogEvent {
  msg: string;
  atMs: number;
  entry: Record<string, unknown>;
}

/** The engine's log lines the driver times, on its own clock, as they arrive. */
class EngineLog {
  readonly events: LogEvent[] = [];
  /** Warnings and errors, verbatim (the first few), for the JSON details. */
  readonly warnings: string[] = [];
  /** Every line, to keep beside a wrong output for whoever looks into it. */
  readonly lines: string[] = [];
  private readonly watched = new Set<string>(Object.values(MSG));

  readonly onLine = (line: string): void => {
    this.lines.push(line);
    const entry = parseLogLine(line);
    if (entry === null) return;
    const msg = String(entry.msg ?? "");
    if (this.watched.has(msg)) this.events.push({ msg, atMs: performance.now(), entry });
    if (typeof entry.level === "number" && entry.level >= 40 && this.warnings.length < WARNINGS_KEPT) this.warnings.push(line);
  };

  /** The first line with this message at or after sinceMs that `where` accepts. */
  first(msg: string, sinceMs: number, where: (entry: Record<string, unknown>) => boolean = () => true): LogEvent | undefined {
    return this.events.find((e) => e.msg === msg && e.atMs >= sinceMs && where(e.entry));
  }
}

/** What the driver knows of one probe or control key's outputs. */
interface KeyTrack {
  key: number;
  lastN: number;
  /** The n last sent to it before the kill; outputs above it are new. */
  nAtKill: number | null;
  firstNewAtMs: number | null;
  /**
   * Breaks in the key's sequence: an output that skipped ahead of the last one (records never
   * answered), or a window whose previous n is not n - 1 (state that lost records: a restart from
   * an older checkpoint). `lost` is how many records each break dropped.
   */
  breaks: Array<{ atN: number; lost: number }>;
  /** Outputs that did not advance, or windows ahead of their own n: duplicated or reordered. */
  regressions: number;
}

/** Follows the outputs of the probe and control keys: when each answers again after the kill, and whether any skipped. */
class KeyWatch {
  private readonly tracks = new Map<number, KeyTrack>();

  constructor(keys: readonly number[], counts: Uint32Array) {
    for (const key of keys) this.tracks.set(key, { key, lastN: counts[key]!, nAtKill: null, firstNewAtMs: null, breaks: [], regressions: 0 });
  }

  output(key: number, n: number, nowMs: number, previous: number): void {
    const t = this.tracks.get(key);
    if (t === undefined) return;
    if (n <= t.lastN || previous >= n) t.regressions++;
    else if (n > t.lastN + 1) t.breaks.push({ atN: n, lost: n - t.lastN - 1 });
    else if (previous >= 0 && previous < n - 1) t.breaks.push({ atN: n, lost: n - 1 - previous });
    t.lastN = Math.max(t.lastN, n);
    if (t.nAtKill !== null && t.firstNewAtMs === null && n > t.nAtKill) t.firstNewAtMs = nowMs;
  }

  markKill(counts: Uint32Array): void {
    for (const t of this.tracks.values()) t.nAtKill = counts[t.key]!;
  }

  /** The first (or, with `all`, the last) instant one of `keys` answered a record sent after the kill; null while one has not. */
  answeredAt(keys: readonly number[], all: boolean): number | null {
    const times = keys.map((k) => this.tracks.get(k)!.firstNewAtMs);
    if (all) return times.some((t) => t === null) ? null : Math.max(...(times as number[]));
    const seen = times.filter((t): t is number => t !== null);
    return seen.length === 0 ? null : Math.min(...seen);
  }

  /** Every record sent to these keys has its output. */
  caughtUp(counts: Uint32Array): boolean {
    for (const t of this.tracks.values()) if (t.lastN !== counts[t.key]) return false;
    return true;
  }

  get(key: number): KeyTrack {
    return this.tracks.get(key)!;
  }
}

/** A steady trickle to a few keys, each key's n rising by one; it skips its ticks while it has no connection. */
class Trickle {
  sent = 0;
  private socket: Socket | null = null;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly keys: readonly number[],
    private readonly counts: Uint32Array,
  ) {}

  attach(socket: Socket | null): void {
    this.socket = socket;
  }

  start(): void {
    this.timer = setInterval(() => {
      if (this.socket === null || this.socket.destroyed) return;
      let text = "";
      for (const key of this.keys) text += `k${key} ${++this.counts[key]!}\n`;
      this.sent += this.keys.length;
      this.socket.write(text);
    }, TRICKLE_TICK_MS);
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

/** The keys the trickle feeds: probes on slots the victim leads once the cluster has 3 workers, controls on the others'. */
interface KeyPlan {
  victimSlots: [number, number];
  probes: number[];
  controls: number[];
  /** How many of the loaded keys the victim leads. */
  victimKeys: number;
}

/** Slots are split in equal contiguous ranges in worker order (equalRanges, as the coordinator does), so the driver knows the victim's. */
function planKeys(slotOfKey: Uint16Array): KeyPlan {
  const map = equalRanges(SLOT_COUNT, WORKERS_AFTER, 0);
  const [from, to] = rangesOf(map, VICTIM)[0]!;
  const probes: number[] = [];
  const controls: number[] = [];
  let victimKeys = 0;
  // Per other worker, how many control keys it still wants: the map says whose slot a key is on.
  const wanted = new Map(WORKERS_AFTER.filter((id) => id !== VICTIM).map((id) => [map.workers.indexOf(id), CONTROL_KEYS_PER_WORKER]));
  for (let k = 0; k < slotOfKey.length; k++) {
    const slot = slotOfKey[k]!;
    if (slot >= from && slot < to) {
      victimKeys++;
      if (probes.length < PROBE_KEYS) probes.push(k);
      continue;
    }
    const owner = map.owners[slot]!;
    const left = wanted.get(owner) ?? 0;
    if (left > 0) {
      controls.push(k);
      wanted.set(owner, left - 1);
    }
  }
  return { victimSlots: [from, to], probes, controls, victimKeys };
}

/** Polls `keyway cluster status --json` until `workers` data workers hold every slot's copies. */
async function untilReplicated(ctx: BenchContext, address: string, engine: MeasuredChild, workers: number, timeoutMs: number): Promise<ClusterStatus> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const status = await clusterStatus(ctx.root, address);
    if (status.underReplicated === 0 && status.workers.filter((w) => w.data).length === workers) return status;
    if (engine.exited()) throw new Error("the engine exited while waiting for every slot's copies");
    if (performance.now() > deadline) throw new Error(`${status.underReplicated} slots still short of a copy on ${status.workers.length} workers after ${timeoutMs / 1000} s`);
    await sleep(250);
  }
}

/** A sink peer for the engine's tcp sink; the collector sees every output line. */
async function startSink(collector: SinkCollector): Promise<{ port: number; close: () => Promise<void> }> {
  const server = createServer({ noDelay: true }, (socket) => collector.attach(socket));
  const port = await listen(server, 0);
  return {
    port,
    close: async () => {
      collector.closeAll();
      await closeServer(server);
    },
  };
}

const at = (event: LogEvent | undefined): number | null => event?.atMs ?? null;
const since = (from: number | null, to: number | null): number | null => (from === null || to === null ? null : to - from);

interface FailoverResult {
  profile: FailoverProfile;
  bulkLoadMs: number;
  /** The grow 2 -> 3 workers, the restore's baseline: from the worker's spawn to "worker joining", then from that line. */
  grow: { spawnToJoiningMs: number | null; joiningToMovedMs: number | null; joiningToRestoredMs: number | null; slotsMoved: number; moveElapsedMs: number; slotsCopied: number; copyElapsedMs: number | null };
  victim: { id: string; pid: number; slots: [number, number]; keys: number; keysHeld: number };
  probes: number[];
  controls: number[];
  /** From the SIGKILL, on the driver's clock. */
  killToDeclaredMs: number | null;
  killToFailoverMs: number | null;
  killToFirstProbeMs: number | null;
  killToAllProbesMs: number | null;
  killToAllControlsMs: number | null;
  killToRestoredMs: number;
  restore: { slotsCopied: number; elapsedMs: number } | null;
  declaredReason: string | null;
  promotedInMs: number | null;
  tookOver: Array<Record<string, unknown>>;
  statusBefore: ClusterStatus;
  statusAfter: ClusterStatus | null;
  trickleSent: number;
  received: number;
  verdict: { ok: boolean; keys: number; outputs: number; problems: string[] };
  engine: ChildResult | null;
  warnings: string[];
}

/**
 * The cluster side of figures 2 and 3: 2 workers (`--workers 2`, R=2) load the keys, a third joins
 * (the grow, figure 3's baseline), then the second is SIGKILLed under the trickle.
 */
async function runFailover(ctx: BenchContext, profile: FailoverProfile, plan: KeyPlan, errors: string[]): Promise<FailoverResult | null> {
  const counts = new Uint32Array(profile.keys);
  let watch: KeyWatch | undefined;
  const collector = new SinkCollector((key, n, nowMs, previous) => watch?.output(key, n, nowMs, previous));
  const sink = await startSink(collector);
  const sourcePort = await freePort();
  const address = `127.0.0.1:${await freePort()}`;
  const log = new EngineLog();
  const engine = spawnNode(
    [
      "bin/keyway.js", "run", "bench/apps/sequence-window.ts",
      "--source", `in=tcp://127.0.0.1:${sourcePort}`, "--sink", `out=tcp://127.0.0.1:${sink.port}`,
      "--cluster-listen", address, "--workers", String(WORKERS_BEFORE.length), "--replicas", "2",
      // info: the coordinator's lines the driver times are logged at info.
      "--no-progress", "--log-level", "info",
    ],
    { cwd: ctx.root, onStderrLine: log.onLine },
  );
  let joiner: MeasuredChild | undefined;
  let sender: Socket | undefined;
  let trickle: Trickle | undefined;
  try {
    sender = await connectWhenListening(sourcePort, engine, READY_TIMEOUT_MS);
    sender.on("error", (err) => errors.push(`failover: driver connection failed: ${err.message}`));
    ctx.log(`replication: failover: loading ${formatCount(profile.keys)} keys into ${WORKERS_BEFORE.length} workers, --replicas 2`);
    const bulkLoadMs = await bulkLoad(sender, counts, collector, engine, LOAD_TIMEOUT_MS);
    await untilReplicated(ctx, address, engine, WORKERS_BEFORE.length, CHANGE_TIMEOUT_MS);

    ctx.log(`replication: failover: ${formatCount(profile.keys)} keys loaded in ${(bulkLoadMs / 1000).toFixed(1)} s; a third worker joins (the grow)`);
    const spawnedAt = performance.now();
    // Its log joins the first worker's (which carries the local workers'), for its "took over" line.
    joiner = spawnNode(["bin/keyway.js", "worker", "bench/apps/sequence-window.ts", "--join", address, "--log-level", "info"], { cwd: ctx.root, onStderrLine: log.onLine });
    const grown = (e: Record<string, unknown>) => Array.isArray(e.workers) && e.workers.length === WORKERS_AFTER.length;
    await waitUntil(() => log.first(MSG.moved, spawnedAt, grown) !== undefined, engine, CHANGE_TIMEOUT_MS, "done moving slots to the third worker");
    const statusBefore = await untilReplicated(ctx, address, engine, WORKERS_AFTER.length, CHANGE_TIMEOUT_MS);
    const joining = log.first(MSG.joining, spawnedAt);
    const moved = log.first(MSG.moved, spawnedAt, grown)!;
    // The copies the grow needs (slots whose backup became their primary) are made after the move.
    const growCopies = log.first(MSG.restored, moved.atMs);
    const growEnd = growCopies ?? moved;

    // The driver picked its keys by the layout it expects; status must agree, or the probes may not be the victim's.
    const dataIds = statusBefore.workers.filter((w) => w.data).map((w) => w.id);
    const victim = statusBefore.workers.find((w) => w.id === VICTIM);
    if (dataIds.join() !== WORKERS_AFTER.join() || victim === undefined || victim.slots !== plan.victimSlots[1] - plan.victimSlots[0] || victim.pid <= 0) {
      throw new Error(`the cluster is not laid out as the driver expects (workers ${WORKERS_AFTER.join(", ")} in that order, ${VICTIM} leading slots ${plan.victimSlots[0]}..${plan.victimSlots[1] - 1}): status says ${statusBefore.workers.map((w) => `${w.id} leads ${w.slots}, pid ${w.pid}`).join("; ")}`);
    }

    watch = new KeyWatch([...plan.probes, ...plan.controls], counts);
    trickle = new Trickle([...plan.probes, ...plan.controls], counts);
    trickle.attach(sender);
    trickle.start();
    await sleep(profile.beforeKillMs);
    const quiet = plan.probes.filter((k) => watch!.get(k).lastN <= 1);
    if (quiet.length > 0) throw new Error(`probe keys ${quiet.map((k) => `k${k}`).join(", ")} had no output in ${profile.beforeKillMs} ms of trickle before the kill`);

    ctx.log(`replication: failover: SIGKILL ${VICTIM} (pid ${victim.pid}, leading slots ${plan.victimSlots[0]}..${plan.victimSlots[1] - 1})`);
    watch.markKill(counts);
    const killedAt = performance.now();
    process.kill(victim.pid, "SIGKILL");
    const probesBack = () => watch!.answeredAt(plan.probes, true) !== null;
    await waitUntil(probesBack, engine, RECOVERY_TIMEOUT_MS, "answering the probe keys after the kill");
    await waitUntil(() => log.first(MSG.restored, killedAt) !== undefined, engine, CHANGE_TIMEOUT_MS, "done restoring every slot's copies after the kill");
    const restored = log.first(MSG.restored, killedAt)!;
    ctx.log(`replication: failover: probe keys answered ${(watch.answeredAt(plan.probes, false)! - killedAt).toFixed(0)} ms after the kill; copies restored after ${((restored.atMs - killedAt) / 1000).toFixed(2)} s`);
    let statusAfter: ClusterStatus | null = null;
    try {
      statusAfter = await clusterStatus(ctx.root, address);
      if (statusAfter.underReplicated !== 0 || !statusAfter.fenced.includes(VICTIM)) {
        errors.push(`failover: after "copies restored" status says ${statusAfter.underReplicated} slots short of a copy, fenced: ${statusAfter.fenced.join(", ") || "none"}`);
      }
    } catch (err) {
      errors.push(`failover: ${(err as Error).message}`);
    }

    await sleep(profile.afterMs);
    trickle.stop();
    const total = profile.keys + trickle.sent;
    const drainDeadline = performance.now() + DRAIN_TIMEOUT_MS;
    while (collector.lines < total && performance.now() < drainDeadline && !engine.exited()) await sleep(20);
    sender.end();
    const stopped = await stopWithJoined(engine, joiner, "failover", errors);
    // The probe keys' windows across the kill above all: no gap, no duplicate.
    const verdict = checkSequenceOutput(collector, counts, { records: trickle.sent, what: "trickle" }, "failover", errors);
    if (!verdict.ok || collector.lines !== total) {
      const kept = join(ctx.dataDir, "out", "replication-failover");
      mkdirSync(dirname(kept), { recursive: true });
      writeFileSync(`${kept}.out`, collector.text());
      writeFileSync(`${kept}.log`, `${log.lines.join("\n")}\n`);
      errors.push(`failover: the output and the workers' log are kept in ${kept}.{out,log} (kill at n ${plan.probes.map((k) => `k${k}=${watch!.get(k).nAtKill}`).join(", ")})`);
    }

    const declared = log.first(MSG.dead, killedAt);
    const failover = log.first(MSG.failover, killedAt);
    return {
      profile,
      bulkLoadMs,
      grow: {
        spawnToJoiningMs: since(spawnedAt, at(joining)),
        joiningToMovedMs: since(at(joining), moved.atMs),
        joiningToRestoredMs: since(at(joining), growEnd.atMs),
        slotsMoved: Number(moved.entry.slotsMoved),
        moveElapsedMs: Number(moved.entry.elapsedMs),
        slotsCopied: growCopies === undefined ? 0 : Number(growCopies.entry.slotsCopied),
        copyElapsedMs: growCopies === undefined ? null : Number(growCopies.entry.elapsedMs),
      },
      victim: { id: VICTIM, pid: victim.pid, slots: plan.victimSlots, keys: plan.victimKeys, keysHeld: victim.keys },
      probes: plan.probes,
      controls: plan.controls,
      killToDeclaredMs: since(killedAt, at(declared)),
      killToFailoverMs: since(killedAt, at(failover)),
      killToFirstProbeMs: since(killedAt, watch.answeredAt(plan.probes, false)),
      killToAllProbesMs: since(killedAt, watch.answeredAt(plan.probes, true)),
      killToAllControlsMs: since(killedAt, watch.answeredAt(plan.controls, true)),
      killToRestoredMs: restored.atMs - killedAt,
      restore: { slotsCopied: Number(restored.entry.slotsCopied), elapsedMs: Number(restored.entry.elapsedMs) },
      declaredReason: declared === undefined ? null : String(declared.entry.reason ?? ""),
      promotedInMs: failover === undefined ? null : Number(failover.entry.promotedIn),
      tookOver: log.events.filter((e) => e.msg === MSG.tookOver && e.atMs >= killedAt).map((e) => e.entry),
      statusBefore,
      statusAfter,
      trickleSent: trickle.sent,
      received: collector.lines,
      verdict,
      engine: stopped.engine,
      warnings: log.warnings,
    };
  } catch (err) {
    trickle?.stop();
    engine.kill("SIGKILL");
    joiner?.kill("SIGKILL");
    const { result } = await waitOrKill(engine, STOP_TIMEOUT_MS);
    const joinerResult = joiner === undefined ? undefined : (await waitOrKill(joiner, STOP_TIMEOUT_MS)).result;
    errors.push(`failover: ${(err as Error).message} (engine: ${describeExit(result)}${joinerResult === undefined ? "" : `; joined worker: ${describeExit(joinerResult)}`})`);
    return null;
  } finally {
    sender?.destroy();
    await sink.close();
  }
}

interface RestartResult {
  bulkLoadMs: number;
  /** Between the checkpoints the driver saw written while the trickle ran. */
  checkpointEveryMs: number | null;
  killToExitMs: number;
  /** From the SIGKILL, on the driver's clock. */
  killToRestoredCheckpointMs: number | null;
  killToReconnectedMs: number;
  killToFirstProbeMs: number | null;
  killToAllProbesMs: number | null;
  killToAllControlsMs: number | null;
  keysRestored: number | null;
  /** Records of the probe keys the restarted state lacks (applied after its checkpoint) or never answered. */
  probeRecordsLost: number;
  trickleSent: number;
  engine: ChildResult | null;
  warnings: string[];
}

/**
 * The baseline of figure 2: the same app and keys in one process with `--data-dir`, SIGKILLed and
 * started again as soon as it is gone; it resumes from its last checkpoint.
 */
async function runRestart(ctx: BenchContext, profile: FailoverProfile, plan: KeyPlan, errors: string[]): Promise<RestartResult | null> {
  const counts = new Uint32Array(profile.keys);
  const tracked = [...plan.probes, ...plan.controls];
  let watch: KeyWatch | undefined;
  const collector = new SinkCollector((key, n, nowMs, previous) => watch?.output(key, n, nowMs, previous));
  const sink = await startSink(collector);
  const sourcePort = await freePort();
  const dataDir = join(ctx.dataDir, "replication-restart");
  rmSync(dataDir, { recursive: true, force: true });
  const args = [
    "bin/keyway.js", "run", "bench/apps/sequence-window.ts",
    "--source", `in=tcp://127.0.0.1:${sourcePort}`, "--sink", `out=tcp://127.0.0.1:${sink.port}`,
    "--data-dir", dataDir, "--checkpoint-interval-ms", String(CHECKPOINT_INTERVAL_MS),
    "--no-progress", "--log-level", "info",
  ];
  const log = new EngineLog();
  let engine = spawnNode(args, { cwd: ctx.root, onStderrLine: log.onLine });
  let sender: Socket | undefined;
  const trickle = new Trickle(tracked, counts);
  try {
    sender = await connectWhenListening(sourcePort, engine, READY_TIMEOUT_MS);
    sender.on("error", () => undefined);
    ctx.log(`replication: restart baseline: loading ${formatCount(profile.keys)} keys into one process with --data-dir`);
    const bulkLoadMs = await bulkLoad(sender, counts, collector, engine, LOAD_TIMEOUT_MS);

    watch = new KeyWatch(tracked, counts);
    trickle.attach(sender);
    trickle.start();
    // Kill once the checkpoints hold the loaded keys and the trickle, half an interval after one was written.
    // Each checkpoint is a new file of the chain (src/durability/checkpoint-chain.ts), numbered one higher.
    const written: number[] = [];
    let lastSeq = latestCheckpointSeq(dataDir);
    await waitUntil(
      () => {
        const seq = latestCheckpointSeq(dataDir);
        if (seq !== undefined && seq !== lastSeq) written.push(performance.now());
        lastSeq = seq;
        return written.length >= CHECKPOINTS_BEFORE_KILL;
      },
      engine,
      CHANGE_TIMEOUT_MS,
      `done writing ${CHECKPOINTS_BEFORE_KILL} checkpoints under the trickle`,
    );
    await sleep(CHECKPOINT_INTERVAL_MS / 2);

    ctx.log("replication: restart baseline: SIGKILL the process, then start it again");
    watch.markKill(counts);
    const killedAt = performance.now();
    trickle.attach(null);
    engine.kill("SIGKILL");
    await engine.done;
    const exitedAt = performance.now();
    engine = spawnNode(args, { cwd: ctx.root, onStderrLine: log.onLine });
    sender.destroy();
    sender = await connectWhenListening(sourcePort, engine, READY_TIMEOUT_MS, 2);
    sender.on("error", () => undefined);
    const reconnectedAt = performance.now();
    trickle.attach(sender);
    await waitUntil(() => watch!.answeredAt(plan.probes, true) !== null, engine, RECOVERY_TIMEOUT_MS, "answering the probe keys after the restart");
    ctx.log(`replication: restart baseline: probe keys answered ${(watch.answeredAt(plan.probes, false)! - killedAt).toFixed(0)} ms after the kill`);

    await sleep(profile.afterMs);
    trickle.stop();
    const drainDeadline = performance.now() + DRAIN_TIMEOUT_MS;
    while (!watch.caughtUp(counts) && performance.now() < drainDeadline && !engine.exited()) await sleep(20);
    sender.end();
    const engineResult = await stopChild(engine, "restart baseline: engine", errors);

    // The restarted process holds the state of its last checkpoint, so each key's first window
    // after it lacks the records applied since (TCP cannot replay them): that one break per key is
    // the baseline's nature; any other is wrong.
    if (collector.malformed > 0) errors.push(`restart baseline: ${collector.malformed} malformed output lines`);
    if (!watch.caughtUp(counts)) errors.push("restart baseline: not every record sent after the restart was answered");
    let probeRecordsLost = 0;
    for (const key of tracked) {
      const t = watch.get(key);
      if (t.regressions > 0) errors.push(`restart baseline: OUTPUT WRONG: key k${key} had ${t.regressions} outputs that did not advance (duplicated or reordered)`);
      if (t.breaks.length > 1) errors.push(`restart baseline: OUTPUT WRONG: key k${key}'s sequence broke ${t.breaks.length} times (at n ${t.breaks.map((b) => b.atN).join(", ")}); only the restart may break it`);
      if (plan.probes.includes(key)) for (const b of t.breaks) probeRecordsLost += b.lost;
    }
    const restoredLine = log.first(MSG.checkpointRestored, exitedAt);
    const keysRestored = restoredLine === undefined ? null : Number(restoredLine.entry.keys);
    if (keysRestored !== profile.keys) errors.push(`restart baseline: the restarted process restored ${keysRestored ?? "no"} keys from its checkpoint, ${profile.keys} were loaded`);
    const intervals = written.slice(1).map((t, i) => t - written[i]!);
    return {
      bulkLoadMs,
      checkpointEveryMs: intervals.length === 0 ? null : median(intervals),
      killToExitMs: exitedAt - killedAt,
      killToRestoredCheckpointMs: since(killedAt, at(restoredLine)),
      killToReconnectedMs: reconnectedAt - killedAt,
      killToFirstProbeMs: since(killedAt, watch.answeredAt(plan.probes, false)),
      killToAllProbesMs: since(killedAt, watch.answeredAt(plan.probes, true)),
      killToAllControlsMs: since(killedAt, watch.answeredAt(plan.controls, true)),
      keysRestored,
      probeRecordsLost,
      trickleSent: trickle.sent,
      engine: engineResult,
      warnings: log.warnings,
    };
  } catch (err) {
    trickle.stop();
    engine.kill("SIGKILL");
    const { result } = await waitOrKill(engine, STOP_TIMEOUT_MS);
    errors.push(`restart baseline: ${(err as Error).message} (engine: ${describeExit(result)})`);
    return null;
  } finally {
    sender?.destroy();
    await sink.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

function failoverRows(f: FailoverResult | null, r: RestartResult | null): Comparison[] {
  const ms = (metric: string, cluster: number | null, restart: number | null): Comparison => ({ metric, unit: "ms", engine: cluster, baseline: restart, ratio: ratio(cluster, restart), better: "lower" });
  const first = ms("failover: SIGKILL -> first new output of a probe key (3 workers R=2, a worker killed vs one process killed and restarted from its checkpoint)", f?.killToFirstProbeMs ?? null, r?.killToFirstProbeMs ?? null);
  first.target = `keyway <= ${RECOVERY_TARGET_MS / 1000} s`;
  if (f?.killToFirstProbeMs != null) first.targetMet = f.killToFirstProbeMs <= RECOVERY_TARGET_MS;
  const restore: Comparison = {
    metric: "copies: SIGKILL -> every slot has 2 copies again vs growing 2 -> 3 workers (\"worker joining\" -> every slot has 2 copies), same cluster and keys",
    unit: "s",
    engine: f === null ? null : f.killToRestoredMs / 1000,
    baseline: f?.grow.joiningToRestoredMs == null ? null : f.grow.joiningToRestoredMs / 1000,
    ratio: f === null ? null : ratio(f.killToRestoredMs, f.grow.joiningToRestoredMs),
    better: "lower",
  };
  return [
    first,
    ms("failover: SIGKILL -> every probe key answered again", f?.killToAllProbesMs ?? null, r?.killToAllProbesMs ?? null),
    ms("failover: SIGKILL -> every control key (slots the killed worker did not lead) answered again", f?.killToAllControlsMs ?? null, r?.killToAllControlsMs ?? null),
    restore,
  ];
}

function failoverNotes(profile: FailoverProfile, plan: KeyPlan, f: FailoverResult | null, r: RestartResult | null): string[] {
  const keys = formatCount(profile.keys);
  const notes = [
    `failover: bench/apps/sequence-window.ts (examples/validation/sequence-window.ts), \`--source in=tcp://\` (read on w0) and \`--sink out=tcp://\` (on w0), driven by the bench process on one clock. Cluster: \`--workers 2 --replicas 2 --cluster-listen\` (default --failure-timeout-ms 2000; a worker whose heartbeat is 750 ms late and whose address refuses connections is declared dead at once), ${keys} keys \`k<i> 1\` loaded, then \`keyway worker --join\` makes it 3 workers. Three, not two: with two, losing one leaves a single worker, where one copy is all R=2 asks, so there would be no copies to restore.`,
    `failover: probe keys ${plan.probes.map((k) => `k${k}`).join(", ")} are on slots ${plan.victimSlots[0]}..${plan.victimSlots[1] - 1}, which ${VICTIM} leads on 3 workers (equal contiguous ranges in worker order; the driver classes keys with createSlotOf(4096) and checks ${VICTIM}'s slot count in status); control keys ${plan.controls.map((k) => `k${k}`).join(", ")} on the other two workers' slots. Every ${TRICKLE_TICK_MS} ms the driver sends one record to each (n rising by one); ${profile.beforeKillMs} ms of it, then SIGKILL of ${VICTIM}'s pid from status. A new output is one for a record sent after the kill. ${VICTIM} led ${plan.victimKeys} of the keys${f === null ? "" : ` and held ${f.victim.keysHeld} with its backups`}.`,
    `failover baseline: \`keyway run ... --data-dir DIR\` (one process, checkpoint every ${CHECKPOINT_INTERVAL_MS} ms) with the same ${keys} keys and trickle; SIGKILLed ${CHECKPOINT_INTERVAL_MS / 2} ms after the trickle saw ${CHECKPOINTS_BEFORE_KILL} checkpoints written, started again as soon as it exited (no supervisor delay), the driver reconnecting every 2 ms until it listens. It resumes from its last checkpoint; TCP cannot replay, so the records applied after it are missing from the restored state (${r === null ? "n/a" : `${r.probeRecordsLost} of the probe keys' records`}, seen as a gap in each key's first window after the restart): not an error, the price of that baseline, which is checked to break each key's sequence once and only there.`,
  ];
  if (f !== null) {
    const g = f.grow;
    notes.push(
      `failover: ${VICTIM} declared dead ${f.killToDeclaredMs?.toFixed(0) ?? "?"} ms after the kill (${f.declaredReason ?? "no line"}); backups promoted in ${f.promotedInMs ?? "?"} ms; "took over from dead workers" ${f.tookOver.map((e) => `slotsLed ${String(e.slotsLed)} outputsResent ${String(e.outputsResent)}`).join("; ") || "not logged"}. Probe keys: first new output ${f.killToFirstProbeMs?.toFixed(0) ?? "?"} ms, all ${f.killToAllProbesMs?.toFixed(0) ?? "?"} ms after the kill; control keys all ${f.killToAllControlsMs?.toFixed(0) ?? "?"} ms after it (a control key answered at about the same time as the probes means the live workers' slots waited for the failover too).`,
      `failover: ${f.received} outputs for ${f.profile.keys + f.trickleSent} records (${f.trickleSent} trickle); sequence-window check over the whole output ${f.verdict.ok ? `ok (${f.verdict.outputs} outputs over ${f.verdict.keys} keys: none lost, duplicated or reordered, the probe keys across the kill included)` : "FAILED"}. Bulk load ${(f.bulkLoadMs / 1000).toFixed(1)} s on 2 workers.`,
      `copies: the keyway column runs from the SIGKILL to the coordinator's "copies restored" line (status then shows underReplicated ${f.statusAfter?.underReplicated ?? "?"}, fenced ${f.statusAfter?.fenced.join(", ") || "?"}): detection, promotion and ${f.restore?.slotsCopied ?? "?"} slot copies (coordinator elapsedMs ${f.restore?.elapsedMs ?? "?"}). The baseline is the same cluster growing 2 -> 3 earlier in the run, from "worker joining" to its "copies restored" (the worker's own start-up, ${g.spawnToJoiningMs?.toFixed(0) ?? "?"} ms, left out): ${g.slotsMoved} slots moved live (elapsedMs ${g.moveElapsedMs}) and ${g.slotsCopied} copied (elapsedMs ${g.copyElapsedMs ?? "-"}), so about as many slot states cross the cluster as the restore copies (its slots and the ones ${VICTIM} backed up). Both move the same keys' state between the same processes; the grow freezes the slots it moves chunk by chunk, a copy freezes nothing.`,
    );
  }
  if (r !== null) {
    notes.push(
      `failover baseline: exited ${r.killToExitMs.toFixed(0)} ms after SIGKILL; "restored checkpoint" (${r.keysRestored ?? "?"} keys) ${r.killToRestoredCheckpointMs?.toFixed(0) ?? "?"} ms, the driver reconnected ${r.killToReconnectedMs.toFixed(0)} ms, first new probe output ${r.killToFirstProbeMs?.toFixed(0) ?? "?"} ms after the kill. Checkpoints came every ${r.checkpointEveryMs?.toFixed(0) ?? "?"} ms with ${keys} keys. Bulk load ${(r.bulkLoadMs / 1000).toFixed(1)} s.`,
    );
  }
  return notes;
}

// ---------------------------------------------------------------------------------------------

export async function runReplication(ctx: BenchContext): Promise<BenchResult> {
  const startedAt = performance.now();
  const errors: string[] = [];
  const notes: string[] = [];

  const throughput = await measureThroughput(ctx, errors, notes);

  const profile = ctx.quick ? QUICK_PROFILE : FULL_PROFILE;
  const plan = planKeys(await slotsOfKeys(profile.keys));
  const failover = await runFailover(ctx, profile, plan, errors);
  const restart = await runRestart(ctx, profile, plan, errors);
  notes.push(...failoverNotes(profile, plan, failover, restart));

  // Last: it runs in the driver, whose heap would otherwise hold its corpus and stores while the
  // runs above time the driver's own ticks and stalls.
  const payload = await measureReplicaPayload(ctx, errors, notes);

  return {
    name: "replication",
    title: "Replication: word count with 2 copies vs 1, failover vs a restart from a checkpoint, restoring copies vs a live grow, replica payload inputs vs state changes",
    ok: errors.length === 0,
    errors,
    notes,
    comparisons: [...throughput.comparisons, ...failoverRows(failover, restart), ...payload.comparisons],
    details: { throughput: throughput.details, keyPlan: plan, failover, restart, replicaPayload: payload.details },
    durationMs: performance.now() - startedAt,
  };
}
