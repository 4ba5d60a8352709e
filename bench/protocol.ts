/**
 * The connector protocol's cost (issue 3): an external TypeScript source process -> the engine
 * (bench/apps/protocol-passthrough.ts: keyBy the record's key field -> a state stage returning the
 * record unchanged) -> an external TypeScript sink process, all on the SDK (bench/apps/
 * protocol-source.ts, protocol-sink.ts), beside a bare grpc-js bidirectional call carrying the same
 * RecordBatch messages between two processes (bench/baselines/grpc-raw-client.ts ->
 * grpc-raw-server.ts), in the same run:
 *
 * 1. Throughput: a fixed number of small records (~25 bytes) sent as fast as each path takes them,
 *    at 1, 10, 100 and 1000 records per message (the SDK source's batchRecords; the raw client's
 *    message size). records/s is taken at the receiving process, from the arrival that completes
 *    10% of the records to the last one (start-up and warm-up left out), on the machine-wide
 *    monotonic clock.
 * 2. Latency at a fixed offered rate of 50k records/s: the sender stamps each 1 ms tick's records
 *    with the time it hands them over; the receiving process subtracts the stamp on arrival.
 *
 * Every run must deliver every record exactly once: the receiver keeps a bitmap of record indexes
 * and a checksum of the bytes it received, which must equal the sender's. Anything else fails the
 * benchmark.
 */
import type { BenchContext } from "./lib/context.ts";
import { describeExit, spawnNode, waitOrKill, type ChildResult, type MeasuredChild } from "./lib/child.ts";
import { probeSchedulerJitter } from "./lib/jitter.ts";
import { connectWhenListening, freePort, sleep } from "./lib/net.ts";
import { procCpuSec } from "./lib/proc-cpu.ts";
import { readResult, type LatencySummary, type ReceiverReport, type SenderReport, type SendPlan } from "./lib/protocol-records.ts";
import type { BenchResult, Comparison } from "./lib/report.ts";
import { median, ratio } from "./lib/stats.ts";

const BATCH_SIZES = [1, 10, 100, 1000] as const;
type BatchSize = (typeof BATCH_SIZES)[number];

interface Profile {
  /** Records per throughput run, per records-per-message size: a few seconds at the engine's pace. */
  records: Record<BatchSize, number>;
  rounds: number;
  ratePerSec: number;
  warmupSec: number;
  measureSec: number;
  latencyRounds: number;
}

const FULL: Profile = {
  records: { 1: 30_000, 10: 150_000, 100: 500_000, 1000: 800_000 },
  rounds: 3,
  ratePerSec: 50_000,
  // The keyway path starts cold (three processes, V8 not yet optimised): at this rate its first
  // ~1.5 s build a backlog of up to ~0.4 s that then drains. Warm-up covers it, for both sides.
  warmupSec: 3,
  measureSec: 6,
  latencyRounds: 3,
};
const QUICK: Profile = {
  records: { 1: 5_000, 10: 20_000, 100: 100_000, 1000: 200_000 },
  rounds: 1,
  ratePerSec: 50_000,
  warmupSec: 1,
  measureSec: 2,
  latencyRounds: 1,
};

/** The latency runs' records per message (SDK batchRecords, raw client's message cap). */
const LATENCY_BATCH = 100;
const RATIO_TARGET_AT_100 = 0.7;
const APP = "bench/apps/protocol-passthrough.ts";
const PID_PRELOAD = "./bench/lib/report-pid.mjs";
const READY_TIMEOUT_MS = 60_000;
/** A run far slower than any seen: something is stuck (lost records make the source wait forever). */
const SEND_TIMEOUT_MS = 5 * 60_000;
/** After the sender is done, how long the receiver may take to report everything. */
const RECEIVE_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 20_000;
const JITTER_PROBE_MS = 1000;

type Side = "engine" | "raw";
const SIDE_NAME: Record<Side, string> = { engine: "keyway", raw: "raw grpc-js" };

/** CPU seconds each process spent while records flowed. */
interface CpuSplit {
  sender: number | null;
  engine: number | null;
  receiver: number | null;
}

interface RunOutcome {
  side: Side;
  sender: SenderReport & { cpuSec: number };
  receiver: ReceiverReport & { recordsPerMessageMax: number; cpuSec: number | null };
  cpu: CpuSplit;
}

interface ThroughputRun {
  side: Side;
  batch: BatchSize;
  round: number;
  records: number;
  /** From the arrival completing 10% of the records to the last arrival. */
  recordsPerSec: number;
  /** From the sender's first send to the last arrival. */
  recordsPerSecFromFirstSend: number;
  receiverMessages: number;
  receiverRecordsPerMessageMax: number;
  cpu: CpuSplit;
  cpuUsPerRecord: number | null;
}

interface LatencyRun {
  side: Side;
  round: number;
  sent: number;
  received: number;
  latency: LatencySummary | null;
  pacingLagMsMax: number;
  /** The highest latency among the warm-up records: the cost of starting cold. */
  warmupLatencyMaxMs: number;
  receiverMessages: number;
  cpu: CpuSplit;
}

/** Resolves once `ready()` holds; rejects if the child exits first or timeoutMs pass. */
async function waitUntil(ready: () => boolean, child: MeasuredChild, timeoutMs: number, what: string): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!ready()) {
    if (child.exited()) throw new Error(`exited before ${what} (${describeExit(await child.done)})`);
    if (performance.now() > deadline) throw new Error(`not ${what} within ${timeoutMs / 1000} s`);
    await sleep(10);
  }
}

/** Waits for a child that ends by itself; a child still running after timeoutMs is asked to report and stop. */
async function awaitExit(child: MeasuredChild, timeoutMs: number, who: string, problems: string[]): Promise<ChildResult> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), timeoutMs)));
  const first = await Promise.race([child.done, timeout]);
  clearTimeout(timer);
  if (first !== "timeout") {
    if (first.exitCode !== 0) problems.push(`${who} ended with ${describeExit(first)}`);
    return first;
  }
  problems.push(`${who} was still running after ${timeoutMs / 1000} s; stopped`);
  child.kill("SIGTERM");
  return (await waitOrKill(child, STOP_TIMEOUT_MS)).result;
}

async function stopChild(child: MeasuredChild, who: string, problems: string[]): Promise<void> {
  child.kill("SIGTERM");
  const { result, timedOut } = await waitOrKill(child, STOP_TIMEOUT_MS);
  if (timedOut) problems.push(`${who} did not exit within ${STOP_TIMEOUT_MS / 1000} s of SIGTERM; killed (${describeExit(result)})`);
  else if (result.exitCode !== 0) problems.push(`${who} ended with ${describeExit(result)}`);
}

interface ReceiverOptions {
  records: number;
  firstMeasured: number;
  latency: boolean;
}

/** The engine's TLS (PEM paths) and what its connectors present; none: plaintext. */
interface EngineTls {
  server: { cert: string; key: string; clientCa?: string };
  client: { ca: string; cert?: string; key?: string };
}

/** Source process -> engine -> sink process; resolves with both ends' reports. */
async function runEngine(ctx: BenchContext, plan: SendPlan, receive: ReceiverOptions, problems: string[], tls?: EngineTls): Promise<RunOutcome | null> {
  const port = await freePort();
  const tlsArgs =
    tls === undefined
      ? []
      : ["--tls-cert", tls.server.cert, "--tls-key", tls.server.key, ...(tls.server.clientCa === undefined ? [] : ["--tls-client-ca", tls.server.clientCa])];
  const connectorTls = tls === undefined ? {} : { tls: tls.client };
  let enginePid: number | undefined;
  const engine = spawnNode(
    [
      "--import", PID_PRELOAD, "bin/keyway.js", "run", APP,
      "--source", "in=connector", "--sink", "out=connector", "--listen", `127.0.0.1:${port}`,
      "--no-progress", "--log-level", "warn", ...tlsArgs,
    ],
    {
      cwd: ctx.root,
      onStderrLine: (line) => {
        const m = /^bench-pid (\d+)$/.exec(line);
        if (m !== null) enginePid = Number(m[1]);
      },
    },
  );
  let sink: MeasuredChild | undefined;
  let source: MeasuredChild | undefined;
  try {
    const probe = await connectWhenListening(port, engine, READY_TIMEOUT_MS);
    probe.destroy();
    let sinkReady = false;
    sink = spawnNode(["--import", "tsx", "bench/apps/protocol-sink.ts", JSON.stringify({ engine: `127.0.0.1:${port}`, ...receive, ...connectorTls })], {
      cwd: ctx.root,
      onStderrLine: (line) => {
        if (line === "ready") sinkReady = true;
      },
    });
    await waitUntil(() => sinkReady, sink, READY_TIMEOUT_MS, "welcomed by the engine");
    const engineCpuStart = enginePid === undefined ? null : procCpuSec(enginePid);
    source = spawnNode(["--import", "tsx", "bench/apps/protocol-source.ts", JSON.stringify({ engine: `127.0.0.1:${port}`, ...plan, ...connectorTls })], { cwd: ctx.root });
    const sourceResult = await awaitExit(source, SEND_TIMEOUT_MS, "source process", problems);
    const sinkResult = await awaitExit(sink, RECEIVE_TIMEOUT_MS, "sink process", problems);
    const engineCpuEnd = enginePid === undefined ? null : procCpuSec(enginePid);
    await stopChild(engine, "engine", problems);
    const sender = readResult<RunOutcome["sender"]>(sourceResult.stdoutTail);
    const receiver = readResult<RunOutcome["receiver"]>(sinkResult.stdoutTail);
    if (sender === null) problems.push(`source process reported nothing (${describeExit(sourceResult)})`);
    if (receiver === null) problems.push(`sink process reported nothing (${describeExit(sinkResult)})`);
    if (sender === null || receiver === null) return null;
    const engineCpu = engineCpuStart !== null && engineCpuEnd !== null ? engineCpuEnd - engineCpuStart : null;
    return { side: "engine", sender, receiver, cpu: { sender: sender.cpuSec, engine: engineCpu, receiver: receiver.cpuSec } };
  } catch (err) {
    problems.push((err as Error).message);
    for (const child of [source, sink, engine]) child?.kill("SIGKILL");
    for (const child of [source, sink, engine]) if (child !== undefined) await waitOrKill(child, STOP_TIMEOUT_MS);
    return null;
  }
}

/** Raw grpc-js client process -> raw grpc-js server process. */
async function runRaw(ctx: BenchContext, plan: SendPlan, receive: ReceiverOptions, problems: string[]): Promise<RunOutcome | null> {
  let port: number | undefined;
  const server = spawnNode(["--import", "tsx", "bench/baselines/grpc-raw-server.ts", JSON.stringify(receive)], {
    cwd: ctx.root,
    onStderrLine: (line) => {
      const m = /^listening (\d+)$/.exec(line);
      if (m !== null) port = Number(m[1]);
    },
  });
  let client: MeasuredChild | undefined;
  try {
    await waitUntil(() => port !== undefined, server, READY_TIMEOUT_MS, "listening");
    client = spawnNode(["--import", "tsx", "bench/baselines/grpc-raw-client.ts", JSON.stringify({ address: `127.0.0.1:${port}`, ...plan })], { cwd: ctx.root });
    const clientResult = await awaitExit(client, SEND_TIMEOUT_MS, "raw client", problems);
    const serverResult = await awaitExit(server, RECEIVE_TIMEOUT_MS, "raw server", problems);
    const sender = readResult<RunOutcome["sender"]>(clientResult.stdoutTail);
    const receiver = readResult<RunOutcome["receiver"]>(serverResult.stdoutTail);
    if (sender === null) problems.push(`raw client reported nothing (${describeExit(clientResult)})`);
    if (receiver === null) problems.push(`raw server reported nothing (${describeExit(serverResult)})`);
    if (sender === null || receiver === null) return null;
    return { side: "raw", sender, receiver, cpu: { sender: sender.cpuSec, engine: null, receiver: receiver.cpuSec } };
  } catch (err) {
    problems.push((err as Error).message);
    for (const child of [client, server]) child?.kill("SIGKILL");
    for (const child of [client, server]) if (child !== undefined) await waitOrKill(child, STOP_TIMEOUT_MS);
    return null;
  }
}

/** Exactly once: every record index once, nothing else, and the bytes the sender sent. */
function verify(outcome: RunOutcome, expected: number, problems: string[]): boolean {
  const { sender, receiver } = outcome;
  const before = problems.length;
  if (sender.sent !== expected) problems.push(`the sender sent ${sender.sent} records, not ${expected}`);
  if (receiver.received !== expected) problems.push(`received ${receiver.received} of ${expected} records (${expected - receiver.received} lost)`);
  if (receiver.duplicates > 0) problems.push(`${receiver.duplicates} duplicate records`);
  if (receiver.malformed > 0) problems.push(`${receiver.malformed} malformed or out-of-range records`);
  if (receiver.received === expected && receiver.checksum !== sender.checksum) {
    problems.push(`checksum of the records received ${receiver.checksum} differs from the sender's ${sender.checksum}: records were altered`);
  }
  return problems.length === before;
}

function sumCpu(cpu: CpuSplit): number | null {
  if (cpu.sender === null || cpu.receiver === null) return null;
  return cpu.sender + cpu.receiver + (cpu.engine ?? 0);
}

export async function runProtocol(ctx: BenchContext): Promise<BenchResult> {
  const startedAt = performance.now();
  const profile = ctx.quick ? QUICK : FULL;
  const errors: string[] = [];
  const jitter = probeSchedulerJitter(JITTER_PROBE_MS);
  ctx.log(`protocol: scheduler stalls in ${JITTER_PROBE_MS} ms busy loop: ${jitter.stallsOver100us}, worst ${jitter.stallMsMax.toFixed(2)} ms`);

  const run = async (side: Side, plan: SendPlan, receive: ReceiverOptions, label: string): Promise<RunOutcome | null> => {
    const problems: string[] = [];
    const outcome = side === "engine" ? await runEngine(ctx, plan, receive, problems) : await runRaw(ctx, plan, receive, problems);
    const delivered = outcome !== null && verify(outcome, plan.records, problems);
    for (const p of problems) errors.push(`${SIDE_NAME[side]}, ${label}: ${p}`);
    // Figures from a run that lost, duplicated or altered records mean nothing: left out.
    return delivered ? outcome : null;
  };

  // 1. Throughput at each message size; the order of the sides alternates by round.
  const throughput: ThroughputRun[] = [];
  for (let round = 0; round < profile.rounds; round++) {
    const order: Side[] = round % 2 === 0 ? ["raw", "engine"] : ["engine", "raw"];
    for (const batch of BATCH_SIZES) {
      const records = profile.records[batch];
      for (const side of order) {
        const outcome = await run(side, { mode: "throughput", records, batch }, { records, firstMeasured: records, latency: false }, `${batch} records/message`);
        if (outcome === null) continue;
        const r = outcome.receiver;
        const cpuTotal = sumCpu(outcome.cpu);
        const result: ThroughputRun = {
          side,
          batch,
          round,
          records,
          recordsPerSec: (records - r.windowStartCount) / ((r.lastNs - r.windowStartNs) / 1e9),
          recordsPerSecFromFirstSend: records / ((r.lastNs - outcome.sender.firstSendNs) / 1e9),
          receiverMessages: r.messages,
          receiverRecordsPerMessageMax: r.recordsPerMessageMax,
          cpu: outcome.cpu,
          cpuUsPerRecord: cpuTotal === null ? null : (cpuTotal * 1e6) / records,
        };
        throughput.push(result);
        ctx.log(
          `protocol:   ${SIDE_NAME[side]} ${batch}/msg: ${fmtRate(result.recordsPerSec)} records/s (${fmtRate(result.recordsPerSecFromFirstSend)} from first send), ` +
            `CPU s sender ${fmtCpu(outcome.cpu.sender)} engine ${fmtCpu(outcome.cpu.engine)} receiver ${fmtCpu(outcome.cpu.receiver)}, ${r.messages} messages received`,
        );
      }
    }
  }

  // 2. Latency at a fixed offered rate.
  const latency: LatencyRun[] = [];
  const total = profile.ratePerSec * (profile.warmupSec + profile.measureSec);
  const firstMeasured = profile.ratePerSec * profile.warmupSec;
  for (let round = 0; round < profile.latencyRounds; round++) {
    const order: Side[] = round % 2 === 0 ? ["raw", "engine"] : ["engine", "raw"];
    for (const side of order) {
      const plan: SendPlan = { mode: "rate", records: total, batch: LATENCY_BATCH, ratePerSec: profile.ratePerSec };
      const outcome = await run(side, plan, { records: total, firstMeasured, latency: true }, `${profile.ratePerSec / 1000}k records/s`);
      if (outcome === null) continue;
      const l = outcome.receiver.latency;
      latency.push({
        side,
        round,
        sent: outcome.sender.sent,
        received: outcome.receiver.received,
        latency: l,
        pacingLagMsMax: outcome.sender.pacingLagMsMax,
        warmupLatencyMaxMs: outcome.receiver.warmupLatencyMaxMs,
        receiverMessages: outcome.receiver.messages,
        cpu: outcome.cpu,
      });
      ctx.log(
        `protocol:   ${SIDE_NAME[side]} at ${profile.ratePerSec / 1000}k/s: p50 ${fmtMs(l?.p50)} p99 ${fmtMs(l?.p99)} p99.9 ${fmtMs(l?.p999)} max ${fmtMs(l?.max)} ms, ` +
          `pacing lag ${outcome.sender.pacingLagMsMax.toFixed(2)} ms, worst warm-up latency ${outcome.receiver.warmupLatencyMaxMs.toFixed(1)} ms`,
      );
    }
  }

  const medianOf = <T extends { side: Side }>(runs: T[], side: Side, f: (r: T) => number | null | undefined): number | null => {
    const values = runs.filter((r) => r.side === side).map(f).filter((v): v is number => v !== null && v !== undefined && Number.isFinite(v));
    return values.length === 0 ? null : median(values);
  };
  const row = <T extends { side: Side }>(runs: T[], metric: string, unit: string, f: (r: T) => number | null | undefined, better: Comparison["better"]): Comparison => {
    const e = medianOf(runs, "engine", f);
    const b = medianOf(runs, "raw", f);
    return { metric, unit, engine: e, baseline: b, ratio: ratio(e, b), better };
  };

  const comparisons: Comparison[] = [];
  for (const batch of BATCH_SIZES) {
    const runs = throughput.filter((r) => r.batch === batch);
    const c = row(runs, `records/s, ${batch} record${batch === 1 ? "" : "s"}/message`, "", (r) => r.recordsPerSec, "higher");
    if (batch === 100 && c.ratio !== null) {
      c.target = `>= ${RATIO_TARGET_AT_100}x raw`;
      c.targetMet = c.ratio >= RATIO_TARGET_AT_100;
    }
    comparisons.push(c);
  }
  for (const batch of BATCH_SIZES) {
    const runs = throughput.filter((r) => r.batch === batch);
    comparisons.push(row(runs, `CPU per record, all processes, ${batch}/message`, "us", (r) => r.cpuUsPerRecord, "lower"));
  }
  const rate = `${profile.ratePerSec / 1000}k/s`;
  comparisons.push(
    row(latency, `latency p50 at ${rate}`, "ms", (r) => r.latency?.p50, "lower"),
    row(latency, `latency p99 at ${rate}`, "ms", (r) => r.latency?.p99, "lower"),
    row(latency, `latency p99.9 at ${rate}`, "ms", (r) => r.latency?.p999, "lower"),
    row(latency, `latency max at ${rate}`, "ms", (r) => r.latency?.max, "lower"),
    row(latency, `latency mean at ${rate}`, "ms", (r) => r.latency?.mean, "lower"),
  );

  const split = (batch: BatchSize): string => {
    const runs = throughput.filter((r) => r.batch === batch);
    const per = (side: Side, f: (c: CpuSplit) => number | null) => {
      const v = medianOf(runs, side, (r) => {
        const cpu = f(r.cpu);
        return cpu === null ? null : (cpu * 1e6) / r.records;
      });
      return v === null ? "n/a" : v.toFixed(1);
    };
    const sinkBatch = medianOf(runs, "engine", (r) => r.records / r.receiverMessages);
    return (
      `${batch}/msg: keyway source ${per("engine", (c) => c.sender)} + engine ${per("engine", (c) => c.engine)} + sink ${per("engine", (c) => c.receiver)}, ` +
      `raw client ${per("raw", (c) => c.sender)} + server ${per("raw", (c) => c.receiver)} (sink got ${sinkBatch === null ? "n/a" : sinkBatch.toFixed(0)} records/SinkBatch on average)`
    );
  };
  const worst = (side: Side, f: (r: LatencyRun) => number, digits: number) => {
    const values = latency.filter((r) => r.side === side).map(f);
    return values.length === 0 ? "n/a" : Math.max(...values).toFixed(digits);
  };
  const notes = [
    `throughput: ${BATCH_SIZES.map((b) => `${profile.records[b]} records at ${b}/message`).join(", ")}; ~25-byte records "k<seq % 1000>,<seq>,<stamp>"; ${profile.rounds} round(s) per side, alternating; figures are medians over rounds. records/s is timed at the receiving process from the arrival completing 10% of the records to the last (the records/s from the sender's first send are in latest.json).`,
    "keyway: SDK source process (connectSource, batchRecords = records/message) -> engine (keyBy key field -> state returning the record -> connector sink) -> SDK sink process (runSink, credit window 20000); the engine's default limits (max_batch_records 10000). raw: grpc-js client -> grpc-js server, one bidirectional call of the protocol's Source method carrying the same SourceRequest{RecordBatch} messages (protobuf-es), client option grpc.per_rpc_retry_buffer_size 0, flow control by the call's write backpressure only; one hop where keyway has two.",
    `CPU per record, microseconds, by process (while records flowed): ${BATCH_SIZES.map(split).join("; ")}. The keyway path runs three busy processes on the machine's cores, raw two.`,
    `latency: ${profile.ratePerSec} records/s offered, ${LATENCY_BATCH} records/message at most; each ~1 ms tick's records are stamped with the time they are handed to the SDK (send) or grpc-js (write) and timed on arrival in the receiving process on the same monotonic clock; ${profile.warmupSec} s warm-up not counted, ${profile.measureSec} s measured; ${profile.latencyRounds} round(s) per side; medians over rounds. The SDK source runs with lingerMs 0: a partial batch leaves once the tick's turn of the event loop is over (setImmediate), where the raw client writes each message at once. Worst pacing lag: keyway ${worst("engine", (r) => r.pacingLagMsMax, 2)} ms, raw ${worst("raw", (r) => r.pacingLagMsMax, 2)} ms. Worst latency during the warm-up (starting cold): keyway ${worst("engine", (r) => r.warmupLatencyMaxMs, 0)} ms, raw ${worst("raw", (r) => r.warmupLatencyMaxMs, 0)} ms.`,
    `machine: a ${JITTER_PROBE_MS} ms busy loop in the driver was descheduled ${jitter.stallsOver100us} times for more than 0.1 ms, at worst ${jitter.stallMsMax.toFixed(2)} ms.`,
  ];
  return {
    name: "protocol",
    title: "Connector protocol: SDK source process -> engine -> SDK sink process vs raw grpc-js stream",
    ok: errors.length === 0,
    errors,
    notes,
    comparisons,
    details: { profile, latencyBatch: LATENCY_BATCH, schedulerJitter: jitter, throughput, latency },
    durationMs: performance.now() - startedAt,
  };
}

function fmtRate(value: number): string {
  return Number.isFinite(value) ? `${(value / 1000).toFixed(1)}k` : "n/a";
}

function fmtCpu(value: number | null): string {
  return value === null ? "n/a" : value.toFixed(2);
}

function fmtMs(value: number | undefined): string {
  return value === undefined ? "n/a" : value.toFixed(2);
}

/**
 * TLS on the connector protocol (issue 15): the same source process -> engine -> sink process path
 * at 100 records per message, in plaintext, over TLS, and over mutual TLS, in the same run, the
 * order rotating by round. Certificates (EC P-256) are made by openssl for the run. Every run must
 * deliver every record exactly once, as in runProtocol.
 */
type Transport = "plaintext" | "tls" | "mtls";
const TRANSPORTS: readonly Transport[] = ["plaintext", "tls", "mtls"];
const TLS_BATCH = 100;
const TLS_RATIO_TARGET = 0.8;

export async function runProtocolTls(ctx: BenchContext): Promise<BenchResult> {
  const startedAt = performance.now();
  const profile = ctx.quick ? QUICK : FULL;
  const records = profile.records[TLS_BATCH];
  const errors: string[] = [];
  const { makeCerts } = await import("../test/helpers/certs.ts");
  const certs = makeCerts();
  const client = certs.signed("bench-connector");
  const tlsOf = (t: Transport): EngineTls | undefined =>
    t === "plaintext"
      ? undefined
      : t === "tls"
        ? { server: certs.server, client: { ca: certs.ca } }
        : { server: { ...certs.server, clientCa: certs.ca }, client: { ca: certs.ca, cert: client.cert, key: client.key } };
  const runs: Array<{ transport: Transport; round: number; recordsPerSec: number; cpuUsPerRecord: number | null; cpu: CpuSplit }> = [];
  for (let round = 0; round < profile.rounds; round++) {
    // Rotate the order so that no transport always runs first (cold page cache, a busy neighbour).
    const order = TRANSPORTS.map((_, i) => TRANSPORTS[(i + round) % TRANSPORTS.length]!);
    for (const transport of order) {
      const problems: string[] = [];
      const plan: SendPlan = { mode: "throughput", records, batch: TLS_BATCH };
      const outcome = await runEngine(ctx, plan, { records, firstMeasured: records, latency: false }, problems, tlsOf(transport));
      const delivered = outcome !== null && verify(outcome, records, problems);
      for (const p of problems) errors.push(`${transport}: ${p}`);
      if (!delivered) continue;
      const r = outcome.receiver;
      const cpuTotal = sumCpu(outcome.cpu);
      const run = {
        transport,
        round,
        recordsPerSec: (records - r.windowStartCount) / ((r.lastNs - r.windowStartNs) / 1e9),
        cpuUsPerRecord: cpuTotal === null ? null : (cpuTotal * 1e6) / records,
        cpu: outcome.cpu,
      };
      runs.push(run);
      ctx.log(`protocol-tls: ${transport} ${TLS_BATCH}/msg round ${round}: ${fmtRate(run.recordsPerSec)} records/s, CPU s source ${fmtCpu(run.cpu.sender)} engine ${fmtCpu(run.cpu.engine)} sink ${fmtCpu(run.cpu.receiver)}`);
    }
  }
  const medianOf = (transport: Transport, f: (r: (typeof runs)[number]) => number | null): number | null => {
    const values = runs.filter((r) => r.transport === transport).map(f).filter((v): v is number => v !== null && Number.isFinite(v));
    return values.length === 0 ? null : median(values);
  };
  const comparisons: Comparison[] = [];
  for (const transport of ["tls", "mtls"] as const) {
    const name = transport === "tls" ? "TLS" : "mutual TLS";
    const e = medianOf(transport, (r) => r.recordsPerSec);
    const b = medianOf("plaintext", (r) => r.recordsPerSec);
    const c: Comparison = { metric: `records/s, ${TLS_BATCH}/message, ${name} (baseline: plaintext)`, unit: "", engine: e, baseline: b, ratio: ratio(e, b), better: "higher" };
    if (c.ratio !== null) {
      c.target = `>= ${TLS_RATIO_TARGET}x plaintext`;
      c.targetMet = c.ratio >= TLS_RATIO_TARGET;
    }
    comparisons.push(c);
  }
  for (const transport of ["tls", "mtls"] as const) {
    const e = medianOf(transport, (r) => r.cpuUsPerRecord);
    const b = medianOf("plaintext", (r) => r.cpuUsPerRecord);
    comparisons.push({ metric: `CPU per record, all processes, ${transport === "tls" ? "TLS" : "mutual TLS"} (baseline: plaintext)`, unit: "us", engine: e, baseline: b, ratio: ratio(e, b), better: "lower" });
  }
  const perProcess = (transport: Transport) => {
    const f = (pick: (c: CpuSplit) => number | null) => {
      const v = medianOf(transport, (r) => {
        const cpu = pick(r.cpu);
        return cpu === null ? null : (cpu * 1e6) / records;
      });
      return v === null ? "n/a" : v.toFixed(1);
    };
    return `${transport}: source ${f((c) => c.sender)} + engine ${f((c) => c.engine)} + sink ${f((c) => c.receiver)}`;
  };
  return {
    name: "protocol-tls",
    title: "Connector protocol over TLS: SDK source process -> engine -> SDK sink process, TLS and mutual TLS vs plaintext",
    ok: errors.length === 0,
    errors,
    notes: [
      `${records} records (~25 bytes) at ${TLS_BATCH} records/message per run, ${profile.rounds} round(s) per transport, the order rotating by round; figures are medians over rounds, records/s timed at the sink process from the arrival completing 10% of the records to the last. The "keyway" column is the TLS (or mutual TLS) run, "baseline" the plaintext run of the same path.`,
      "TLS: --tls-cert/--tls-key on the engine, tlsCa on both SDK processes (source and sink each hold one TLS connection to the engine). Mutual TLS: --tls-client-ca too, and a client certificate on each. EC P-256 certificates made by openssl for the run; Node's default TLS 1.3 cipher (AES-GCM with the CPU's AES instructions when it has them).",
      `CPU per record, microseconds, by process: ${TRANSPORTS.map(perProcess).join("; ")}.`,
    ],
    comparisons,
    details: { records, batch: TLS_BATCH, rounds: profile.rounds, runs },
    durationMs: performance.now() - startedAt,
  };
}
