/**
 * TCP end-to-end latency at a fixed offered load. This process is both ends: it listens as the
 * sink's peer, sends timestamped lines into the system under test and times each line back on
 * one clock (performance.now()). The system under test is first a plain Node line relay
 * (bench/baselines/tcp-relay.mjs), then the engine running bench/apps/passthrough.ts, with the
 * same driver, rate and durations, so the ratio isolates what the engine adds.
 */
import { createServer, type Socket } from "node:net";
import type { BenchContext } from "./lib/context.ts";
import { describeExit, spawnNode, waitOrKill } from "./lib/child.ts";
import type { BenchResult, Comparison } from "./lib/report.ts";
import { probeSchedulerJitter } from "./lib/jitter.ts";
import { connectWhenListening, freePort, listen, sleep } from "./lib/net.ts";
import { median, percentileSorted, ratio } from "./lib/stats.ts";

interface LoadProfile {
  ratePerSec: number;
  warmupSec: number;
  measureSec: number;
}

const FULL_LOAD: LoadProfile = { ratePerSec: 50_000, warmupSec: 1, measureSec: 10 };
const QUICK_LOAD: LoadProfile = { ratePerSec: 50_000, warmupSec: 1, measureSec: 2 };
/** Distinct keys in the stream: enough to spread over many slots, few enough to stay in cache. */
const KEY_COUNT = 1000;
/** Node's timers fire no faster than every ~1 ms; each tick sends every record due by then. */
const TICK_MS = 1;
const READY_TIMEOUT_MS = 30_000;
/** How long after the last send to wait for stragglers before counting them lost. */
const DRAIN_TIMEOUT_MS = 5_000;
const STOP_TIMEOUT_MS = 15_000;
const P99_TARGET_MS = 2;
const ROUNDS_FULL = 3;
const ROUNDS_QUICK = 1;
const JITTER_PROBE_MS = 1000;

type Side = "baseline" | "engine";

interface SideResult {
  side: Side;
  sentTotal: number;
  receivedTotal: number;
  sentMeasured: number;
  receivedMeasured: number;
  duplicates: number;
  malformed: number;
  latencyMsP50: number;
  latencyMsP99: number;
  latencyMsP999: number;
  latencyMsMax: number;
  latencyMsMean: number;
  /** How far the driver's sends fell behind schedule at worst; large values mean the driver, not the system, limited the rate. */
  pacingLagMsMax: number;
  /** Bytes the driver's socket held unsent at worst: the system under test was not reading fast enough. */
  driverBacklogBytesMax: number;
  sinkConnections: number;
  readyMs: number;
  maxRssKiB: number | null;
  cpuSec: number | null;
  exitCode: number | null;
}

/** Collects every line the system under test delivers, on any of its (re)connections. */
class Receiver {
  receivedTotal = 0;
  receivedMeasured = 0;
  duplicates = 0;
  malformed = 0;
  connections = 0;
  private readonly seen: Uint8Array;
  private readonly latenciesMs: Float64Array;
  private readonly sockets = new Set<Socket>();

  constructor(
    private readonly total: number,
    private readonly firstMeasured: number,
  ) {
    this.seen = new Uint8Array(total);
    this.latenciesMs = new Float64Array(total - firstMeasured);
  }

  attach(socket: Socket): void {
    this.connections++;
    this.sockets.add(socket);
    socket.setNoDelay(true);
    let carry = "";
    socket.on("data", (chunk: Buffer) => {
      // One arrival time per chunk: every line in it reached us at the same moment.
      const nowMs = performance.now();
      const lines = (carry + chunk.toString("latin1")).split("\n");
      carry = lines.pop()!;
      for (const line of lines) this.record(line, nowMs);
    });
    socket.on("error", () => socket.destroy());
    socket.on("close", () => this.sockets.delete(socket));
  }

  private record(line: string, nowMs: number): void {
    const first = line.indexOf(",");
    const second = line.indexOf(",", first + 1);
    const seq = Number(line.slice(first + 1, second));
    const sentAtMs = Number(line.slice(second + 1));
    if (first < 0 || second < 0 || !Number.isInteger(seq) || seq < 0 || seq >= this.total || !Number.isFinite(sentAtMs)) {
      this.malformed++;
      return;
    }
    if (this.seen[seq] !== 0) {
      this.duplicates++;
      return;
    }
    this.seen[seq] = 1;
    this.receivedTotal++;
    if (seq >= this.firstMeasured) this.latenciesMs[this.receivedMeasured++] = nowMs - sentAtMs;
  }

  sortedLatenciesMs(): Float64Array {
    return this.latenciesMs.subarray(0, this.receivedMeasured).sort();
  }

  closeAll(): void {
    for (const socket of this.sockets) socket.destroy();
  }
}

interface DriveOutcome {
  pacingLagMsMax: number;
  driverBacklogBytesMax: number;
}

/** Sends `total` records at the profile's rate, each tick's records in one write stamped with the tick's time. */
function drive(socket: Socket, total: number, load: LoadProfile): Promise<DriveOutcome> {
  return new Promise((resolve) => {
    const startMs = performance.now();
    const msPerRecord = 1000 / load.ratePerSec;
    let sent = 0;
    let pacingLagMsMax = 0;
    let driverBacklogBytesMax = 0;
    const tick = () => {
      const nowMs = performance.now();
      const due = Math.min(total, Math.floor((nowMs - startMs) / msPerRecord));
      if (due > sent) {
        pacingLagMsMax = Math.max(pacingLagMsMax, nowMs - (startMs + sent * msPerRecord));
        // The send time is when the bytes are handed to the socket, not when they were scheduled:
        // the figures then describe the system under test, not the granularity of Node's timers.
        const stamp = nowMs.toFixed(3);
        let text = "";
        for (; sent < due; sent++) text += `k${sent % KEY_COUNT},${sent},${stamp}\n`;
        // Offered load stays fixed whatever the peer does; a backlog here is the peer falling behind.
        socket.write(text);
        driverBacklogBytesMax = Math.max(driverBacklogBytesMax, socket.writableLength);
      }
      if (sent < total) setTimeout(tick, TICK_MS);
      else resolve({ pacingLagMsMax, driverBacklogBytesMax });
    };
    tick();
  });
}

async function runSide(ctx: BenchContext, side: Side, load: LoadProfile, errors: string[]): Promise<SideResult | null> {
  const total = load.ratePerSec * (load.warmupSec + load.measureSec);
  const firstMeasured = load.ratePerSec * load.warmupSec;
  const receiver = new Receiver(total, firstMeasured);
  const sinkServer = createServer({ noDelay: true }, (socket) => receiver.attach(socket));
  const sinkPort = await listen(sinkServer, 0);
  const sourcePort = await freePort();
  const args = side === "baseline"
    ? ["bench/baselines/tcp-relay.mjs", String(sourcePort), `127.0.0.1:${sinkPort}`]
    : [
        "bin/keyway.js", "run", "bench/apps/passthrough.ts",
        "--source", `in=tcp://127.0.0.1:${sourcePort}`,
        "--sink", `out=tcp://127.0.0.1:${sinkPort}`,
        "--no-progress", "--log-level", "warn",
      ];
  const startedAt = performance.now();
  const child = spawnNode(args, { cwd: ctx.root });
  let sender: Socket | undefined;
  try {
    sender = await connectWhenListening(sourcePort, child, READY_TIMEOUT_MS);
    sender.on("error", (err) => errors.push(`${side}: driver connection failed: ${err.message}`));
    const readyMs = performance.now() - startedAt;
    ctx.log(`tcp-latency: ${side} ready after ${readyMs.toFixed(0)} ms; ${load.warmupSec} s warm-up + ${load.measureSec} s at ${load.ratePerSec}/s`);
    const outcome = await drive(sender, total, load);
    const drainDeadline = performance.now() + DRAIN_TIMEOUT_MS;
    while (receiver.receivedTotal < total && performance.now() < drainDeadline && !child.exited()) await sleep(20);
    sender.end();
    child.kill("SIGTERM");
    const { result, timedOut } = await waitOrKill(child, STOP_TIMEOUT_MS);
    if (timedOut) errors.push(`${side}: did not exit within ${STOP_TIMEOUT_MS / 1000} s of SIGTERM; killed`);
    else if (result.exitCode !== 0) errors.push(`${side}: ended with ${describeExit(result)}`);

    const sorted = receiver.sortedLatenciesMs();
    const sentMeasured = total - firstMeasured;
    // What the process said is the first thing to look at when records went missing.
    const said = result.stderrTail.trim() === "" ? "" : `; its stderr ended: ${describeExit(result)}`;
    if (receiver.receivedTotal !== total) errors.push(`${side}: received ${receiver.receivedTotal} of ${total} records sent (${total - receiver.receivedTotal} lost)${said}`);
    if (receiver.duplicates > 0) errors.push(`${side}: ${receiver.duplicates} duplicate records${said}`);
    if (receiver.malformed > 0) errors.push(`${side}: ${receiver.malformed} malformed lines${said}`);
    let sumMs = 0;
    for (const v of sorted) sumMs += v;
    return {
      side,
      sentTotal: total,
      receivedTotal: receiver.receivedTotal,
      sentMeasured,
      receivedMeasured: receiver.receivedMeasured,
      duplicates: receiver.duplicates,
      malformed: receiver.malformed,
      latencyMsP50: percentileSorted(sorted, 50),
      latencyMsP99: percentileSorted(sorted, 99),
      latencyMsP999: percentileSorted(sorted, 99.9),
      latencyMsMax: sorted.length > 0 ? sorted[sorted.length - 1]! : Number.NaN,
      latencyMsMean: sorted.length > 0 ? sumMs / sorted.length : Number.NaN,
      pacingLagMsMax: outcome.pacingLagMsMax,
      driverBacklogBytesMax: outcome.driverBacklogBytesMax,
      sinkConnections: receiver.connections,
      readyMs,
      maxRssKiB: result.maxRssKiB,
      cpuSec: result.cpuSec,
      exitCode: result.exitCode,
    };
  } catch (err) {
    child.kill("SIGKILL");
    const { result } = await waitOrKill(child, STOP_TIMEOUT_MS);
    errors.push(`${side}: ${(err as Error).message} (${describeExit(result)})`);
    return null;
  } finally {
    sender?.destroy();
    receiver.closeAll();
    await new Promise<void>((resolve) => sinkServer.close(() => resolve()));
  }
}

export async function runTcpLatency(ctx: BenchContext): Promise<BenchResult> {
  const startedAt = performance.now();
  const load = ctx.quick ? QUICK_LOAD : FULL_LOAD;
  const rounds = ctx.quick ? ROUNDS_QUICK : ROUNDS_FULL;
  const errors: string[] = [];
  const jitter = probeSchedulerJitter(JITTER_PROBE_MS);
  ctx.log(`tcp-latency: scheduler stalls in ${JITTER_PROBE_MS} ms busy loop: ${jitter.stallsOver100us}, worst ${jitter.stallMsMax.toFixed(2)} ms`);
  const results: SideResult[] = [];
  for (let round = 0; round < rounds; round++) {
    // Alternate who goes first, so neither side always runs on a warmer or quieter machine.
    const order: Side[] = round % 2 === 0 ? ["baseline", "engine"] : ["engine", "baseline"];
    for (const side of order) {
      const result = await runSide(ctx, side, load, errors);
      if (result === null) continue;
      results.push(result);
      ctx.log(`tcp-latency:   ${side} p50 ${fmt(result.latencyMsP50)} p99 ${fmt(result.latencyMsP99)} p99.9 ${fmt(result.latencyMsP999)} max ${fmt(result.latencyMsMax)} ms, ${result.receivedTotal}/${result.sentTotal} received`);
    }
  }

  const medianOf = (side: Side, f: (r: SideResult) => number | null): number | null => {
    const values = results.filter((r) => r.side === side).map(f).filter((v): v is number => v !== null && !Number.isNaN(v));
    return values.length === 0 ? null : median(values);
  };
  const row = (metric: string, unit: string, f: (r: SideResult) => number | null, better: Comparison["better"]): Comparison => {
    const e = medianOf("engine", f);
    const b = medianOf("baseline", f);
    return { metric, unit, engine: e, baseline: b, ratio: ratio(e, b), better };
  };
  const p99 = row("latency p99", "ms", (r) => r.latencyMsP99, "lower");
  if (p99.engine !== null) {
    p99.target = `keyway <= ${P99_TARGET_MS} ms`;
    p99.targetMet = p99.engine <= P99_TARGET_MS;
  }
  const comparisons: Comparison[] = [
    row("latency p50", "ms", (r) => r.latencyMsP50, "lower"),
    p99,
    row("latency p99.9", "ms", (r) => r.latencyMsP999, "lower"),
    row("latency max", "ms", (r) => r.latencyMsMax, "lower"),
    row("latency mean", "ms", (r) => r.latencyMsMean, "lower"),
    row("records sent (measured window)", "", (r) => r.sentMeasured, "higher"),
    row("records received (measured window)", "", (r) => r.receivedMeasured, "higher"),
    row("CPU time, whole process life", "s", (r) => r.cpuSec, "lower"),
    row("peak RSS", "MiB", (r) => (r.maxRssKiB === null ? null : r.maxRssKiB / 1024), "lower"),
    row("ready after spawn", "ms", (r) => r.readyMs, "lower"),
  ];
  const worst = (side: Side, f: (r: SideResult) => number, digits: number): string => {
    const values = results.filter((r) => r.side === side).map(f);
    return values.length === 0 ? "n/a" : Math.max(...values).toFixed(digits);
  };
  const notes = [
    `offered load ${load.ratePerSec} records/s, ${KEY_COUNT} keys, ~30-byte lines; per run ${load.warmupSec} s warm-up (not counted), then ${load.measureSec} s measured; ${rounds} run(s) per side, alternating; each figure is the median over runs. Latency is from the driver's socket write to its read of the same line, on one clock (the driver stamps each ~${TICK_MS} ms tick's records with the write time).`,
    `machine: a ${JITTER_PROBE_MS} ms busy loop in the driver was descheduled ${jitter.stallsOver100us} times for more than 0.1 ms, at worst ${jitter.stallMsMax.toFixed(2)} ms. Stalls like these (of the driver or the system under test) set the tail (p99.9, max) for both sides.`,
    `driver pacing lag at worst: baseline ${worst("baseline", (r) => r.pacingLagMsMax, 2)} ms, keyway ${worst("engine", (r) => r.pacingLagMsMax, 2)} ms; driver socket backlog at worst: baseline ${worst("baseline", (r) => r.driverBacklogBytesMax, 0)} B, keyway ${worst("engine", (r) => r.driverBacklogBytesMax, 0)} B (a backlog means the system under test was not reading as fast as offered).`,
    "baseline: bench/baselines/tcp-relay.mjs, a Node process forwarding complete lines, Nagle off. Both are stopped with SIGTERM and must exit 0.",
  ];
  return {
    name: "tcp-latency",
    title: `TCP end-to-end latency at ${load.ratePerSec / 1000}k records/s (tcp source -> keyed state -> tcp sink)`,
    ok: errors.length === 0,
    errors,
    notes,
    comparisons,
    details: { load, keyCount: KEY_COUNT, rounds, schedulerJitter: jitter, runs: results },
    durationMs: performance.now() - startedAt,
  };
}

function fmt(value: number): string {
  return value.toFixed(2);
}
