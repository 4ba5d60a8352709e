/**
 * The control-plane benchmark: the cluster's control plane on etcd (`--coordinator etcd://...`)
 * against the coordinator embedded in the first worker, each figure beside its baseline in the
 * same run. Both sides run bench/apps/sequence-window.ts with `--replicas 2`, fed by a
 * `keyway connector tcp-source` and written by a `keyway connector file-sink` (exactly once), as
 * etcd requires; the driver offers a steady load to the tcp source and follows the sink's file.
 *
 * 1. Failover: 3 workers. On etcd the coordinator's worker is SIGKILLed (any worker may die, the
 *    coordinator's above all: the role is elected again and the sinks move to the new holder);
 *    embedded, a worker that does not hold the coordinator (the embedded coordinator cannot die).
 *    The time from the kill to the coordinator's "failover done", and to the first new output of
 *    a key on the dead worker's slots. Every window is then proven right, once.
 * 2. Grow 2 -> 3: a worker started with `keyway worker --coordinator etcd://...` against one
 *    started with `--join ADDRESS`, under the same load: from its spawn to the coordinator's
 *    "slots moved", and that line's own elapsedMs.
 *
 * A fresh private etcd (lib/etcd.ts) serves each etcd run, so no run finds an earlier one's record.
 */
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import type { Socket } from "node:net";
import { join } from "node:path";
import { checkSequenceWindows } from "../examples/validation/check.ts";
import { equalRanges, rangesOf } from "../src/routing/partition-map.ts";
import type { BenchContext } from "./lib/context.ts";
import { describeExit, spawnNode, waitOrKill, type MeasuredChild } from "./lib/child.ts";
import { clusterStatus, parseLogLine, READY_TIMEOUT_MS, STOP_TIMEOUT_MS, stopChild, stopWithJoined, type ClusterStatus } from "./lib/engine-child.ts";
import { startEtcd, type Etcd } from "./lib/etcd.ts";
import { connectWhenListening, freePort, sleep } from "./lib/net.ts";
import { medianRow, type BenchResult, type Comparison } from "./lib/report.ts";
import { SequenceFileTail } from "./lib/sequence-file-tail.ts";
import { F64List, SLOT_COUNT, slotsOfKeys } from "./lib/sequence-load.ts";
import { percentileSorted } from "./lib/stats.ts";

type Plane = "etcd" | "embedded";

/** Keys k0..k(KEYS-1), each key's n rising by one; the load visits them in turn. */
const KEYS = 2000;
/** Offered whatever the cluster does, so a stall builds a backlog as it would in production. */
const RATE_PER_SEC = 5000;
const LOAD_TICK_MS = 5;
/** How often the driver reads what the file sink appended: the resolution of the output times. */
const TAIL_POLL_MS = 5;
const FAILOVER_ROUNDS_FULL = 3;
const FAILOVER_ROUNDS_QUICK = 1;
const GROW_ROUNDS_FULL = 3;
const GROW_ROUNDS_QUICK = 1;

interface Profile {
  /** Load before the kill or the new worker, so the cluster is in its steady state when it comes. */
  warmupMs: number;
  /** Load after the cluster recovered (or grew), before the driver stops it and drains. */
  afterMs: number;
}
const FULL_PROFILE: Profile = { warmupMs: 3000, afterMs: 1500 };
const QUICK_PROFILE: Profile = { warmupMs: 2000, afterMs: 1000 };

const SETTLE_TIMEOUT_MS = 60_000;
const RECOVERY_TIMEOUT_MS = 60_000;
const DRAIN_TIMEOUT_MS = 60_000;
/** The sink's id window: larger than any run's output, so every resent output is recognised. */
const DEDUP_WINDOW = 1_000_000;
const WARNINGS_KEPT = 40;

/** The log lines the driver times, by their message. */
const MSG = {
  elected: "elected coordinator",
  dead: "workers declared dead and fenced",
  failover: "failover done: backups lead the dead workers' slots",
  tookOver: "took over from dead workers",
  joining: "worker joining",
  moved: "slots moved",
  restored: "copies restored: every slot has its replicas",
  leaving: "leaving the cluster",
  sessionOpened: "connector session opened",
  sessionRedirected: "connector session redirected",
} as const;

// ---------------------------------------------------------------------------------------------
// Shared: the log, the load, a cluster with its connectors

interface LogEvent {
  msg: string;
  /** The line's own `time` (Date.now() in the process that logged it), comparable with the driver's Date.now(). */
  time: number;
  entry: Record<string, unknown>;
}

/** The JSON log of every process of a cluster (the run's stderr carries its local workers'). */
class ClusterLog {
  readonly events: LogEvent[] = [];
  readonly warnings: string[] = [];
  readonly lines: string[] = [];
  errorLines = 0;
  private readonly watched = new Set<string>(Object.values(MSG));

  readonly onLine = (line: string): void => {
    this.lines.push(line);
    const entry = parseLogLine(line);
    if (entry === null) return;
    const msg = String(entry.msg ?? "");
    if (this.watched.has(msg)) this.events.push({ msg, time: Number(entry.time), entry });
    if (typeof entry.level === "number" && entry.level >= 50) this.errorLines++;
    if (typeof entry.level === "number" && entry.level >= 40 && this.warnings.length < WARNINGS_KEPT) this.warnings.push(line);
  };

  first(msg: string, sinceWallMs: number, where: (entry: Record<string, unknown>) => boolean = () => true): LogEvent | undefined {
    return this.events.find((e) => e.msg === msg && e.time >= sinceWallMs && where(e.entry));
  }

  count(msg: string, sinceWallMs: number): number {
    return this.events.filter((e) => e.msg === msg && e.time >= sinceWallMs).length;
  }
}

/**
 * The steady load: RATE_PER_SEC records over KEYS keys in turn, each key's n rising by one,
 * written every ~LOAD_TICK_MS (the records due by then, in one write) whatever the cluster does.
 */
class SteadyLoad {
  readonly counts = new Uint32Array(KEYS);
  /** Each record's send time, by its index: the load visits the keys in turn, so k<key>'s n-th record is index (n - 1) * KEYS + key. */
  readonly sentAtMs = new F64List();
  sent = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly socket: Socket) {}

  start(): void {
    const startedAt = performance.now();
    this.timer = setInterval(() => {
      // Stamped with the time of the write that carries them, so timer granularity is not latency.
      const nowMs = performance.now();
      const due = Math.floor(((nowMs - startedAt) * RATE_PER_SEC) / 1000);
      let text = "";
      for (; this.sent < due; this.sent++) {
        const key = this.sent % KEYS;
        text += `k${key} ${++this.counts[key]!}\n`;
        this.sentAtMs.push(nowMs);
      }
      if (text !== "") this.socket.write(text);
    }, LOAD_TICK_MS);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  expected(): Map<string, number> {
    return new Map(Array.from(this.counts, (n, k) => [`k${k}`, n] as [string, number]));
  }
}

/**
 * What the driver knows of the outputs: each key's last n, every record's latency (send -> seen in
 * the sink's file), and after markKill, when the first output of a record sent after the kill came
 * for a key on the killed worker's slots and for one on the others'.
 */
class OutputWatch {
  private readonly last = new Uint32Array(KEYS);
  private atKill: Uint32Array | null = null;
  /** Latencies before the kill: the steady state the failover interrupts. */
  readonly steadyLatencyMs = new F64List();
  maxVictimLatencyMs = 0;
  maxOthersLatencyMs = 0;
  victimFirstNewAtMs: number | null = null;
  othersFirstNewAtMs: number | null = null;

  constructor(
    private readonly victimKey: Uint8Array,
    private readonly load: SteadyLoad,
  ) {}

  readonly onOutput = (key: number, n: number, nowMs: number): void => {
    if (key >= KEYS || n < 1) return;
    if (n > this.last[key]!) this.last[key] = n;
    const victim = this.victimKey[key] === 1;
    const index = (n - 1) * KEYS + key;
    if (index < this.load.sentAtMs.length) {
      const latency = nowMs - this.load.sentAtMs.at(index);
      if (this.atKill === null) this.steadyLatencyMs.push(latency);
      if (victim) this.maxVictimLatencyMs = Math.max(this.maxVictimLatencyMs, latency);
      else this.maxOthersLatencyMs = Math.max(this.maxOthersLatencyMs, latency);
    }
    if (this.atKill === null || n <= this.atKill[key]!) return;
    if (victim) this.victimFirstNewAtMs ??= nowMs;
    else this.othersFirstNewAtMs ??= nowMs;
  };

  markKill(counts: Uint32Array): void {
    this.atKill = counts.slice();
  }

  /** Keys on the killed worker's slots and on the others' that have had an output at all. */
  answered(): { victim: number; others: number } {
    let victim = 0;
    let others = 0;
    for (let k = 0; k < KEYS; k++) if (this.last[k]! > 0) this.victimKey[k] === 1 ? victim++ : others++;
    return { victim, others };
  }

  /** p50 and p99 of the latencies before the kill. */
  steady(): { p50: number; p99: number } {
    const sorted = this.steadyLatencyMs.data.slice(0, this.steadyLatencyMs.length).sort();
    return { p50: percentileSorted(sorted, 50), p99: percentileSorted(sorted, 99) };
  }
}

/** `keyway cluster status --json` with the fields this benchmark reads beyond the shared ones. */
type Status = Omit<ClusterStatus, "workers"> & { workers: Array<ClusterStatus["workers"][number] & { address: string; connectorAddress: string; coordinator: boolean; connectorSessions: number }> };

interface Cluster {
  plane: Plane;
  etcd: Etcd | null;
  engine: MeasuredChild;
  source: MeasuredChild;
  sink: MeasuredChild;
  log: ClusterLog;
  /** The connectors' warnings and errors. */
  connectorLog: ClusterLog;
  address: string;
  output: string;
  status: Status;
  socket: Socket;
}

/** Polls status until `workers` data workers hold every slot with its copies; status may not answer yet. */
async function settled(ctx: BenchContext, address: string, workers: number, alive: () => boolean): Promise<Status> {
  const deadline = performance.now() + SETTLE_TIMEOUT_MS;
  let last = "no answer";
  for (;;) {
    if (!alive()) throw new Error(`the cluster exited before ${workers} workers held every slot's copies (status: ${last})`);
    const status = (await clusterStatus(ctx.root, address).catch(() => null)) as Status | null;
    if (status !== null) {
      const data = status.workers.filter((w) => w.data);
      if (data.length === workers && status.underReplicated === 0 && data.reduce((n, w) => n + w.slots, 0) === status.slotCount) return status;
      last = `${data.length} data workers, ${status.underReplicated} slots short of a copy`;
    }
    if (performance.now() > deadline) throw new Error(`${workers} workers did not hold every slot's copies within ${SETTLE_TIMEOUT_MS / 1000} s (status: ${last})`);
    await sleep(250);
  }
}

/**
 * `keyway run` with `workers` workers (on etcd or embedded), the connector tcp source and file
 * sink attached to every worker's connector address, and the driver's connection to the tcp
 * source. Throws, having stopped what it started, if any of it does not come up.
 */
async function startCluster(ctx: BenchContext, plane: Plane, workers: number, name: string): Promise<Cluster> {
  const etcd = plane === "etcd" ? await startEtcd(ctx.dataDir, name) : null;
  const [connectorPort, clusterPort, tcpPort] = [await freePort(), await freePort(), await freePort()];
  const address = `127.0.0.1:${clusterPort}`;
  const outDir = join(ctx.dataDir, "out");
  mkdirSync(outDir, { recursive: true });
  const output = join(outDir, `${name}.out`);
  // The sink keeps its ids beside the file; an earlier run's would make it drop this run's output.
  for (const path of [output, `${output}.ids`]) rmSync(path, { force: true });
  const log = new ClusterLog();
  const connectorLog = new ClusterLog();
  const engine = spawnNode(
    [
      "bin/keyway.js", "run", "bench/apps/sequence-window.ts",
      "--source", "in=connector", "--sink", "out=connector", "--listen", `127.0.0.1:${connectorPort}`,
      "--cluster-listen", address, "--workers", String(workers), "--replicas", "2",
      ...(etcd === null ? [] : ["--coordinator", etcd.uri]),
      // info: the coordinator's lines the driver times are logged at info.
      "--no-progress", "--log-level", "info",
    ],
    { cwd: ctx.root, onStderrLine: log.onLine },
  );
  let source: MeasuredChild | undefined;
  let sink: MeasuredChild | undefined;
  try {
    const status = await settled(ctx, address, workers, () => !engine.exited());
    const engines = status.workers.map((w) => w.connectorAddress).join(",");
    const connector = (kind: string, args: string[]) =>
      spawnNode(["bin/keyway.js", "connector", kind, "--engine", engines, ...args], { cwd: ctx.root, onStderrLine: connectorLog.onLine });
    source = connector("tcp-source", ["--target", "in", "--listen", `127.0.0.1:${tcpPort}`, "--instance-id", "load"]);
    sink = connector("file-sink", ["--target", "out", "--path", output, "--instance-id", "sink", "--dedup-window", String(DEDUP_WINDOW)]);
    const socket = await connectWhenListening(tcpPort, source, READY_TIMEOUT_MS);
    // A connection that fails mid-run shows as records without output: the drain reports it.
    socket.on("error", () => undefined);
    return { plane, etcd, engine, source, sink, log, connectorLog, address, output, status, socket };
  } catch (err) {
    // SIGTERM for the run, so it stops the local workers it started rather than orphan them.
    for (const child of [source, sink]) child?.kill("SIGKILL");
    engine.kill("SIGTERM");
    const [{ result }] = await Promise.all([waitOrKill(engine, STOP_TIMEOUT_MS), source && waitOrKill(source, STOP_TIMEOUT_MS), sink && waitOrKill(sink, STOP_TIMEOUT_MS)]);
    await etcd?.stop();
    throw new Error(`${(err as Error).message} (engine: ${describeExit(result)})`);
  }
}

/** Resolves once ready() holds; rejects when failed() names a reason or timeoutMs pass. */
async function waitFor(ready: () => boolean, failed: () => string | null, timeoutMs: number, what: string): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!ready()) {
    const reason = failed();
    if (reason !== null) throw new Error(`${reason} before ${what}`);
    if (performance.now() > deadline) throw new Error(`not ${what} within ${timeoutMs / 1000} s`);
    await sleep(10);
  }
}

const connectorsDown = (c: Cluster): string | null => (c.source.exited() ? "the tcp-source connector exited" : c.sink.exited() ? "the file-sink connector exited" : null);

/** Stops the load and waits until the sink's file holds an output for every record sent. */
async function drain(c: Cluster, load: SteadyLoad, tail: SequenceFileTail): Promise<void> {
  load.stop();
  await waitFor(() => tail.lines >= load.sent, () => connectorsDown(c), DRAIN_TIMEOUT_MS, "done writing every record's output").catch((err: Error) => {
    throw new Error(`${err.message} (${tail.lines}/${load.sent} outputs)`);
  });
}

/**
 * Every record's output once, every window right (examples/validation/check.ts), each key ending
 * at the n the driver sent it. A wrong output is kept.
 */
function checkOutput(c: Cluster, load: SteadyLoad, tail: SequenceFileTail, who: string, errors: string[]): { ok: boolean; outputs: number; keys: number; problems: string[] } {
  tail.stop();
  const verdict = checkSequenceWindows(tail.text(), load.expected());
  const wrong: string[] = [];
  if (tail.malformed > 0) wrong.push(`${tail.malformed} malformed output lines`);
  if (verdict.outputs !== load.sent) wrong.push(`${verdict.outputs} outputs for ${load.sent} records sent`);
  if (!verdict.ok) wrong.push(`sequence-window check: ${verdict.problems.slice(0, 5).join("; ")}`);
  if (wrong.length > 0) {
    errors.push(`${who}: OUTPUT WRONG: ${wrong.join("; ")} (output kept in ${c.output})`);
  } else {
    rmSync(c.output, { force: true });
    rmSync(`${c.output}.ids`, { force: true });
  }
  return { ok: wrong.length === 0, outputs: verdict.outputs, keys: verdict.keys, problems: verdict.problems.slice(0, 20) };
}

/** Writes every log line of the run (the cluster's, then the connectors') beside its output, for whoever looks into a failure; returns the path. */
function keepLog(c: Cluster): string {
  const kept = c.output.replace(/\.out$/, ".log");
  writeFileSync(kept, `${c.log.lines.join("\n")}\n${c.connectorLog.lines.join("\n")}\n`);
  return kept;
}

/** Kills whatever of a failed run is still up, so the next run starts on a quiet machine. */
async function abandon(c: Cluster, extraPids: number[], others: MeasuredChild[] = []): Promise<void> {
  c.socket.destroy();
  for (const child of [c.source, c.sink, c.engine, ...others]) child.kill("SIGKILL");
  for (const pid of extraPids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
  await Promise.all([c.source, c.sink, c.engine, ...others].map((child) => waitOrKill(child, STOP_TIMEOUT_MS)));
}

const isSink = (entry: Record<string, unknown>): boolean => entry.role === "sink";
const since = (fromWallMs: number, event: LogEvent | undefined): number | null => (event === undefined ? null : event.time - fromWallMs);
const sinceMs = (from: number, to: number | null): number | null => (to === null ? null : to - from);

// ---------------------------------------------------------------------------------------------
// 1. Failover

const FAILOVER_WORKERS = 3;
/** Into the warm-up, when the connectors' sessions are open: where they are served is read then. */
const SESSIONS_AFTER_MS = 1000;
/** Embedded: the worker killed, one of the local workers of `keyway run` (w0 holds the coordinator). */
const EMBEDDED_VICTIM = "w1";

interface FailoverRun {
  plane: Plane;
  round: number;
  victim: { id: string; pid: number; slots: [number, number]; keys: number; coordinator: boolean };
  /** From the SIGKILL to the line's own time. */
  killToElectedMs: number | null;
  killToDeclaredMs: number | null;
  killToFailoverDoneMs: number | null;
  /** The file sink's session open again (on etcd, on the new coordinator's worker), and how often a worker redirected it on the way. */
  killToSinkSessionMs: number | null;
  sinkRedirects: number;
  /** From the SIGKILL to the driver seeing the output in the sink's file, on its own clock. */
  killToVictimOutputMs: number | null;
  killToOthersOutputMs: number | null;
  /** The longest send -> output of any record of the run, on the killed worker's slots and on the others'. */
  maxVictimLatencyMs: number;
  maxOthersLatencyMs: number;
  /** Before the kill. */
  steadyLatencyMs: { p50: number; p99: number };
  newCoordinator: string | null;
  promotedInMs: number | null;
  outputsResent: number;
  declaredReason: string | null;
  /** Where the connector sessions were served before the kill, per worker. */
  sessionsBefore: Record<string, number>;
  sent: number;
  verdict: { ok: boolean; outputs: number; keys: number; problems: string[] };
  warnings: string[];
  errorLines: number;
}

/**
 * Equal contiguous slot ranges in the order of status's workers (the coordinator's layout after
 * the workers joined); status's slot counts must agree, or the driver cannot tell the keys' owners.
 */
function victimKeys(status: Status, victimId: string, slotOfKey: Uint16Array): { slots: [number, number]; victimKey: Uint8Array; keys: number } {
  const ids = status.workers.filter((w) => w.data).map((w) => w.id);
  const map = equalRanges(SLOT_COUNT, ids, 0);
  for (const w of status.workers.filter((x) => x.data)) {
    const ranges = rangesOf(map, w.id);
    const expected = ranges.reduce((n, [from, to]) => n + to - from, 0);
    if (ranges.length !== 1 || w.slots !== expected) {
      throw new Error(`the cluster is not laid out in equal contiguous ranges in worker order (${w.id} leads ${w.slots} slots, expected ${expected}), so the driver cannot tell which keys the killed worker led`);
    }
  }
  const [from, to] = rangesOf(map, victimId)[0]!;
  const victimKey = new Uint8Array(KEYS);
  let keys = 0;
  for (let k = 0; k < KEYS; k++) {
    if (slotOfKey[k]! >= from && slotOfKey[k]! < to) {
      victimKey[k] = 1;
      keys++;
    }
  }
  return { slots: [from, to], victimKey, keys };
}

async function runFailover(ctx: BenchContext, plane: Plane, round: number, profile: Profile, slotOfKey: Uint16Array, errors: string[]): Promise<FailoverRun | null> {
  const who = `failover ${plane} round ${round + 1}`;
  const errorsAtStart = errors.length;
  let c: Cluster;
  try {
    c = await startCluster(ctx, plane, FAILOVER_WORKERS, `control-plane-failover-${plane}-${round + 1}`);
  } catch (err) {
    errors.push(`${who}: ${(err as Error).message}`);
    return null;
  }
  const pids = c.status.workers.map((w) => w.pid);
  const load = new SteadyLoad(c.socket);
  let tail: SequenceFileTail | undefined;
  try {
    const coordinator = c.status.workers.find((w) => w.coordinator);
    const victim = plane === "etcd" ? coordinator : c.status.workers.find((w) => w.id === EMBEDDED_VICTIM);
    if (victim === undefined || victim.pid <= 0) throw new Error(`no ${plane === "etcd" ? "coordinator" : EMBEDDED_VICTIM} with a pid in status`);
    if (plane === "embedded" && victim.coordinator) throw new Error(`${EMBEDDED_VICTIM} holds the embedded coordinator, which cannot die`);
    const plan = victimKeys(c.status, victim.id, slotOfKey);
    const watch = new OutputWatch(plan.victimKey, load);
    tail = new SequenceFileTail(c.output, watch.onOutput);
    tail.start(TAIL_POLL_MS);
    load.start();
    // Where the sessions are, early in the warm-up (a status call costs a Node start-up of CPU):
    // a session on the killed worker has to move too (on etcd the sink's always does).
    await sleep(SESSIONS_AFTER_MS);
    const sessions = await clusterStatus(ctx.root, c.address).then((s) => Object.fromEntries((s as Status).workers.map((w) => [w.id, w.connectorSessions])), () => ({}));
    await sleep(Math.max(0, profile.warmupMs - SESSIONS_AFTER_MS));
    const answered = watch.answered();
    if (answered.victim === 0 || answered.others === 0) throw new Error(`no output for the killed worker's keys (${answered.victim}) or the others' (${answered.others}) after ${profile.warmupMs} ms of load`);

    ctx.log(`control-plane: failover (${plane}, round ${round + 1}): SIGKILL ${victim.id} (pid ${victim.pid}${victim.coordinator ? ", the coordinator's worker" : ""}, leading slots ${plan.slots[0]}..${plan.slots[1] - 1})`);
    const steady = watch.steady();
    watch.markKill(load.counts);
    const killedAt = performance.now();
    const killedAtWall = Date.now();
    process.kill(victim.pid, "SIGKILL");
    const failoverDone = () => c.log.first(MSG.failover, killedAtWall);
    await waitFor(
      () => watch.victimFirstNewAtMs !== null && watch.othersFirstNewAtMs !== null && failoverDone() !== undefined,
      () => connectorsDown(c) ?? (plane === "embedded" && c.engine.exited() ? "the run's process exited" : null),
      RECOVERY_TIMEOUT_MS,
      "back to answering every key after the kill",
    );
    const elected = c.log.first(MSG.elected, killedAtWall);
    const declared = c.log.first(MSG.dead, killedAtWall);
    const done = failoverDone()!;
    const newCoordinator = plane === "etcd" ? (elected === undefined ? null : String(elected.entry.worker)) : (coordinator?.id ?? null);
    ctx.log(
      `control-plane:   failover done ${since(killedAtWall, done)} ms after the kill${elected === undefined ? "" : ` (${newCoordinator} elected at ${since(killedAtWall, elected)} ms)`}; ` +
        `the dead worker's keys answered again at ${sinceMs(killedAt, watch.victimFirstNewAtMs)!.toFixed(0)} ms, the others' at ${sinceMs(killedAt, watch.othersFirstNewAtMs)!.toFixed(0)} ms`,
    );
    // The survivors must agree: the victim fenced and, on etcd, another worker holding the role.
    const survivor = c.status.workers.find((w) => w.id !== victim.id)!;
    const after = (await clusterStatus(ctx.root, survivor.address)) as Status;
    const holder = after.workers.find((w) => w.coordinator)?.id;
    if (!after.fenced.includes(victim.id) || holder === undefined || holder === victim.id) {
      errors.push(`${who}: after the failover status says fenced [${after.fenced.join(", ")}], coordinator ${holder ?? "none"}; expected ${victim.id} fenced and another worker coordinating`);
    }

    await sleep(profile.afterMs);
    await drain(c, load, tail);
    c.socket.end();
    await stopChild(c.source, `${who}: tcp-source connector`, errors);
    if (plane === "embedded") {
      await stopChild(c.engine, `${who}: engine`, errors);
    } else {
      // The run's own process was the victim; the new coordinator ends the run on SIGTERM, as
      // `keyway run` does, and the others leave. The run's stderr closes once every worker is gone.
      const holderPid = after.workers.find((w) => w.id === holder)?.pid;
      if (holderPid !== undefined && holderPid > 0) process.kill(holderPid, "SIGTERM");
      const { timedOut } = await waitOrKill(c.engine, STOP_TIMEOUT_MS);
      if (timedOut) errors.push(`${who}: the surviving workers did not exit within ${STOP_TIMEOUT_MS / 1000} s of SIGTERM to the new coordinator (${holder})`);
      const leaving = c.log.count(MSG.leaving, killedAtWall);
      if (leaving < FAILOVER_WORKERS - 1) errors.push(`${who}: ${leaving} of the ${FAILOVER_WORKERS - 1} surviving workers logged "${MSG.leaving}"`);
    }
    await stopChild(c.sink, `${who}: file-sink connector`, errors);
    const verdict = checkOutput(c, load, tail, who, errors);
    if (errors.length > errorsAtStart) errors.push(`${who}: the cluster's and connectors' log is kept in ${keepLog(c)}`);

    return {
      plane,
      round,
      victim: { id: victim.id, pid: victim.pid, slots: plan.slots, keys: plan.keys, coordinator: victim.coordinator },
      killToElectedMs: since(killedAtWall, elected),
      killToDeclaredMs: since(killedAtWall, declared),
      killToFailoverDoneMs: since(killedAtWall, done),
      killToSinkSessionMs: since(killedAtWall, c.log.first(MSG.sessionOpened, killedAtWall, isSink)),
      sinkRedirects: c.log.events.filter((e) => e.msg === MSG.sessionRedirected && e.time >= killedAtWall && isSink(e.entry)).length,
      killToVictimOutputMs: sinceMs(killedAt, watch.victimFirstNewAtMs),
      killToOthersOutputMs: sinceMs(killedAt, watch.othersFirstNewAtMs),
      maxVictimLatencyMs: watch.maxVictimLatencyMs,
      maxOthersLatencyMs: watch.maxOthersLatencyMs,
      steadyLatencyMs: steady,
      newCoordinator,
      promotedInMs: Number(done.entry.promotedIn),
      outputsResent: c.log.events.filter((e) => e.msg === MSG.tookOver && e.time >= killedAtWall).reduce((n, e) => n + Number(e.entry.outputsResent ?? 0), 0),
      declaredReason: declared === undefined ? null : String(declared.entry.reason ?? ""),
      sessionsBefore: sessions,
      sent: load.sent,
      verdict,
      warnings: [...c.log.warnings, ...c.connectorLog.warnings],
      errorLines: c.log.errorLines + c.connectorLog.errorLines,
    };
  } catch (err) {
    load.stop();
    tail?.stop();
    errors.push(`${who}: ${(err as Error).message}; the cluster's and connectors' log is kept in ${keepLog(c)}`);
    await abandon(c, pids);
    return null;
  } finally {
    await c.etcd?.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// 2. Grow 2 -> 3

interface GrowRun {
  plane: Plane;
  round: number;
  /** From the new worker's spawn (the driver's Date.now()) to the coordinator's lines' own times. */
  spawnToJoiningMs: number | null;
  spawnToMovedMs: number;
  joiningToMovedMs: number | null;
  moveElapsedMs: number;
  slotsMoved: number;
  longestPauseMs: number;
  spawnToRestoredMs: number | null;
  sent: number;
  verdict: { ok: boolean; outputs: number; keys: number; problems: string[] };
  warnings: string[];
  errorLines: number;
}

async function runGrow(ctx: BenchContext, plane: Plane, round: number, profile: Profile, errors: string[]): Promise<GrowRun | null> {
  const who = `grow ${plane} round ${round + 1}`;
  const errorsAtStart = errors.length;
  let c: Cluster;
  try {
    c = await startCluster(ctx, plane, 2, `control-plane-grow-${plane}-${round + 1}`);
  } catch (err) {
    errors.push(`${who}: ${(err as Error).message}`);
    return null;
  }
  const load = new SteadyLoad(c.socket);
  const tail = new SequenceFileTail(c.output, () => undefined);
  let joiner: MeasuredChild | undefined;
  try {
    tail.start(TAIL_POLL_MS);
    load.start();
    await sleep(profile.warmupMs);
    if (tail.lines === 0) throw new Error(`no output after ${profile.warmupMs} ms of load`);

    ctx.log(`control-plane: grow (${plane}, round ${round + 1}): a third worker joins ${plane === "etcd" ? "through etcd" : `at ${c.address}`}`);
    const spawnedAtWall = Date.now();
    // Its log joins the cluster's, so a line it writes is seen the same way.
    joiner = spawnNode(
      ["bin/keyway.js", "worker", "bench/apps/sequence-window.ts", ...(plane === "etcd" ? ["--coordinator", c.etcd!.uri] : ["--join", c.address]), "--listen", "127.0.0.1:0", "--log-level", "info"],
      { cwd: ctx.root, onStderrLine: c.log.onLine },
    );
    const grown = (e: Record<string, unknown>) => Array.isArray(e.workers) && e.workers.length === 3;
    const moved = () => c.log.first(MSG.moved, spawnedAtWall, grown);
    await waitFor(
      () => moved() !== undefined,
      () => connectorsDown(c) ?? (c.engine.exited() ? "the run's process exited" : joiner!.exited() ? "the new worker exited" : null),
      RECOVERY_TIMEOUT_MS,
      "done moving slots to the third worker",
    );
    const movedLine = moved()!;
    const joining = c.log.first(MSG.joining, spawnedAtWall);
    ctx.log(`control-plane:   slots moved ${since(spawnedAtWall, movedLine)} ms after the spawn (the move itself ${String(movedLine.entry.elapsedMs)} ms)`);
    await settled(ctx, c.address, 3, () => !c.engine.exited());
    const restored = c.log.first(MSG.restored, movedLine.time);

    await sleep(profile.afterMs);
    await drain(c, load, tail);
    c.socket.end();
    await stopChild(c.source, `${who}: tcp-source connector`, errors);
    await stopWithJoined(c.engine, joiner, who, errors);
    await stopChild(c.sink, `${who}: file-sink connector`, errors);
    const verdict = checkOutput(c, load, tail, who, errors);
    if (errors.length > errorsAtStart) errors.push(`${who}: the cluster's and connectors' log is kept in ${keepLog(c)}`);
    return {
      plane,
      round,
      spawnToJoiningMs: since(spawnedAtWall, joining),
      spawnToMovedMs: since(spawnedAtWall, movedLine)!,
      joiningToMovedMs: joining === undefined ? null : movedLine.time - joining.time,
      moveElapsedMs: Number(movedLine.entry.elapsedMs),
      slotsMoved: Number(movedLine.entry.slotsMoved),
      longestPauseMs: Number(movedLine.entry.longestPauseMs),
      spawnToRestoredMs: since(spawnedAtWall, restored),
      sent: load.sent,
      verdict,
      warnings: [...c.log.warnings, ...c.connectorLog.warnings],
      errorLines: c.log.errorLines + c.connectorLog.errorLines,
    };
  } catch (err) {
    load.stop();
    tail.stop();
    errors.push(`${who}: ${(err as Error).message}; the cluster's and connectors' log is kept in ${keepLog(c)}`);
    await abandon(c, c.status.workers.map((w) => w.pid), joiner === undefined ? [] : [joiner]);
    return null;
  } finally {
    await c.etcd?.stop();
  }
}

// ---------------------------------------------------------------------------------------------

export async function runControlPlane(ctx: BenchContext): Promise<BenchResult> {
  const startedAt = performance.now();
  const errors: string[] = [];
  const notes: string[] = [];
  const profile = ctx.quick ? QUICK_PROFILE : FULL_PROFILE;
  const slotOfKey = await slotsOfKeys(KEYS);

  const failovers: FailoverRun[] = [];
  const failoverRounds = ctx.quick ? FAILOVER_ROUNDS_QUICK : FAILOVER_ROUNDS_FULL;
  for (let round = 0; round < failoverRounds; round++) {
    // Alternate who goes first, so neither side always gets the warmer or quieter machine.
    for (const plane of round % 2 === 0 ? (["etcd", "embedded"] as const) : (["embedded", "etcd"] as const)) {
      ctx.log(`control-plane: failover, ${plane}, round ${round + 1}/${failoverRounds}`);
      const run = await runFailover(ctx, plane, round, profile, slotOfKey, errors);
      if (run !== null) failovers.push(run);
    }
  }

  const grows: GrowRun[] = [];
  const growRounds = ctx.quick ? GROW_ROUNDS_QUICK : GROW_ROUNDS_FULL;
  for (let round = 0; round < growRounds; round++) {
    for (const plane of round % 2 === 0 ? (["etcd", "embedded"] as const) : (["embedded", "etcd"] as const)) {
      ctx.log(`control-plane: grow 2 -> 3, ${plane}, round ${round + 1}/${growRounds}`);
      const run = await runGrow(ctx, plane, round, profile, errors);
      if (run !== null) grows.push(run);
    }
  }

  const isEtcd = (r: { plane: Plane }) => r.plane === "etcd";
  const fo = (metric: string, pick: (r: FailoverRun) => number | null) => medianRow(failovers, isEtcd, `failover: ${metric} (median)`, "ms", pick, "lower");
  const gr = (metric: string, pick: (r: GrowRun) => number | null) => medianRow(grows, isEtcd, `grow 2 -> 3: ${metric} (median)`, "ms", pick, "lower");
  const comparisons: Comparison[] = [
    fo("SIGKILL -> \"failover done\" (etcd: the coordinator's worker killed, another elected; embedded: a non-coordinator worker killed)", (r) => r.killToFailoverDoneMs),
    fo("SIGKILL -> first new output of a key on the killed worker's slots", (r) => r.killToVictimOutputMs),
    fo("SIGKILL -> first new output of a key on the other workers' slots", (r) => r.killToOthersOutputMs),
    fo("the longest send -> output of a record on the killed worker's slots", (r) => r.maxVictimLatencyMs),
    gr("new worker's spawn -> \"slots moved\" (etcd: `keyway worker --coordinator etcd://` vs `--join ADDRESS`)", (r) => r.spawnToMovedMs),
    gr("the move itself, the coordinator's elapsedMs", (r) => r.moveElapsedMs),
    gr("new worker's spawn -> \"worker joining\"", (r) => r.spawnToJoiningMs),
  ];

  const fmt = (values: Array<number | null>) => values.map((v) => (v === null ? "?" : v.toFixed(0))).join(", ");
  const etcdFailovers = failovers.filter(isEtcd);
  const embeddedFailovers = failovers.filter((r) => !isEtcd(r));
  const wrong = errors.some((e) => e.includes("OUTPUT WRONG"));
  notes.push(
    `setup: bench/apps/sequence-window.ts (examples/validation/sequence-window.ts) with \`--source in=connector --sink out=connector --replicas 2\`, on etcd \`--coordinator etcd://\` (a fresh private etcd 3.4, /usr/bin/etcd, one member, per run) or embedded (no --coordinator). Fed by \`keyway connector tcp-source --engine <every worker> --instance-id load\` and written by \`keyway connector file-sink --engine <every worker> --instance-id sink --dedup-window ${DEDUP_WINDOW}\` on both sides. The driver offers ${RATE_PER_SEC} records/s over ${KEYS} keys (each key's n rising by one) to the tcp source, every ~${LOAD_TICK_MS} ms whatever the cluster does, and reads what the sink appends to its file every ${TAIL_POLL_MS} ms: output times are when the driver saw a line, so they include the sink's write and up to ${TAIL_POLL_MS} ms of polling on both sides. State is small (${KEYS} keys): the figures are the control plane's, not state transfer's.`,
    `failover: 3 workers; ${profile.warmupMs} ms of load, then SIGKILL. etcd: the coordinator's worker (the run's own process, w0, which also holds the sinks: the file sink's session moves to the new coordinator's worker); embedded: ${EMBEDDED_VICTIM}, a local worker without the coordinator (the embedded coordinator cannot die; its sinks stay put). "failover done" is the (new) coordinator's line, timed by its own \`time\` against the driver's Date.now() at the kill. Which keys the killed worker led: slots are equal contiguous ranges in worker order (checked against status's slot counts), each key classed with createSlotOf(4096) from src/routing/hash.ts. A new output is one for a record sent after the kill. A record's latency runs from the driver's write that carried it to the driver seeing its output in the sink's file; the longest of the run is what the outage costs the records that waited it out (those sent just before the kill and during it).`,
    `failover, per run (ms after the kill): etcd elected ${fmt(etcdFailovers.map((r) => r.killToElectedMs))}, declared dead ${fmt(etcdFailovers.map((r) => r.killToDeclaredMs))}, failover done ${fmt(etcdFailovers.map((r) => r.killToFailoverDoneMs))}, the sink's session open again ${fmt(etcdFailovers.map((r) => r.killToSinkSessionMs))} (redirected ${fmt(etcdFailovers.map((r) => r.sinkRedirects))} times on the way), killed worker's keys answered ${fmt(etcdFailovers.map((r) => r.killToVictimOutputMs))}, others' ${fmt(etcdFailovers.map((r) => r.killToOthersOutputMs))}; embedded declared dead ${fmt(embeddedFailovers.map((r) => r.killToDeclaredMs))}, failover done ${fmt(embeddedFailovers.map((r) => r.killToFailoverDoneMs))}, killed worker's keys answered ${fmt(embeddedFailovers.map((r) => r.killToVictimOutputMs))}, others' ${fmt(embeddedFailovers.map((r) => r.killToOthersOutputMs))}. promotedIn (the coordinator's own): etcd ${fmt(etcdFailovers.map((r) => r.promotedInMs))}, embedded ${fmt(embeddedFailovers.map((r) => r.promotedInMs))}. Longest latency, killed worker's slots / others': etcd ${etcdFailovers.map((r) => `${r.maxVictimLatencyMs.toFixed(0)}/${r.maxOthersLatencyMs.toFixed(0)}`).join(", ")}, embedded ${embeddedFailovers.map((r) => `${r.maxVictimLatencyMs.toFixed(0)}/${r.maxOthersLatencyMs.toFixed(0)}`).join(", ")}; before the kill p50/p99: etcd ${etcdFailovers.map((r) => `${r.steadyLatencyMs.p50.toFixed(1)}/${r.steadyLatencyMs.p99.toFixed(1)}`).join(", ")}, embedded ${embeddedFailovers.map((r) => `${r.steadyLatencyMs.p50.toFixed(1)}/${r.steadyLatencyMs.p99.toFixed(1)}`).join(", ")}. Outputs resent by the promoted backups: etcd ${fmt(etcdFailovers.map((r) => r.outputsResent))}, embedded ${fmt(embeddedFailovers.map((r) => r.outputsResent))}. Why declared dead: ${[...new Set(failovers.map((r) => `${r.plane}: ${r.declaredReason?.replace(/\d+\.\d+\.\d+\.\d+:\d+/g, "ADDRESS") ?? "no line"}`))].join("; ")}.`,
    `correctness: after each run the load stops, the driver waits for every record's output, stops the connectors and the cluster (SIGTERM; on etcd to the new coordinator, which ends the run), and checks the sink's whole file with checkSequenceWindows (examples/validation/check.ts) against every key's final n, and that it has exactly one output per record sent: ${wrong ? "SOME RUNS WERE WRONG (see errors)" : `every run ok (${failovers.length + grows.length} runs)`}.`,
  );
  if (grows.length > 0) {
    const etcdGrows = grows.filter(isEtcd);
    const embeddedGrows = grows.filter((r) => !isEtcd(r));
    notes.push(
      `grow 2 -> 3: the same cluster on 2 workers, ${profile.warmupMs} ms of load, then \`keyway worker bench/apps/sequence-window.ts --coordinator etcd://...\` (it reads the cluster's config and leader from etcd, takes a lease, joins the leader) or \`--join ADDRESS\`; timed from its spawn (Node start-up and loading the app through tsx included, the same on both sides) to the coordinator's "slots moved" for 3 workers, by that line's own time. Per run: etcd spawn -> joining ${fmt(etcdGrows.map((r) => r.spawnToJoiningMs))}, joining -> moved ${fmt(etcdGrows.map((r) => r.joiningToMovedMs))}, elapsedMs ${fmt(etcdGrows.map((r) => r.moveElapsedMs))}, longest pause ${fmt(etcdGrows.map((r) => r.longestPauseMs))}, spawn -> copies restored ${fmt(etcdGrows.map((r) => r.spawnToRestoredMs))}; embedded ${fmt(embeddedGrows.map((r) => r.spawnToJoiningMs))}, ${fmt(embeddedGrows.map((r) => r.joiningToMovedMs))}, ${fmt(embeddedGrows.map((r) => r.moveElapsedMs))}, ${fmt(embeddedGrows.map((r) => r.longestPauseMs))}, ${fmt(embeddedGrows.map((r) => r.spawnToRestoredMs))}. Slots moved: ${fmt(grows.map((r) => r.slotsMoved))}.`,
    );
  }
  const errorLines = [...failovers, ...grows].reduce((n, r) => n + r.errorLines, 0);
  if (errorLines > 0) notes.push(`logs: ${errorLines} error-level lines in the clusters' and connectors' logs over the runs (the first warnings and errors of each run are in latest.json).`);

  return {
    name: "control-plane",
    title: "Control plane (etcd): failover of the coordinator's worker and a grow 2 -> 3, on etcd vs the embedded coordinator",
    ok: errors.length === 0,
    errors,
    notes,
    comparisons,
    details: { keys: KEYS, ratePerSec: RATE_PER_SEC, profile, failovers, grows },
    durationMs: performance.now() - startedAt,
  };
}
