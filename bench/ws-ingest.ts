/**
 * WebSocket source ingest (issue 13): records/s through `--source in=ws://127.0.0.1:P/in` into
 * bench/apps/ws-count.ts (a stateless count that emits the running total once every 10,000
 * records to a tcp sink whose peer is this process), against a bare `ws` WebSocketServer in its
 * own process that counts the same messages (bench/baselines/ws-raw-server.ts), in the same run.
 *
 * Both receivers get the same traffic from the same sender process (bench/lib/ws-sender.ts): N
 * 20-byte text messages over 4 connections, as fast as the receiver takes them, each connection
 * waiting while its bufferedAmount is over 4 MiB (the sender builds its frames itself, many to a
 * write: through ws.send it would cost as much per message as the raw receiver, and both sides
 * would measure the sender). records/s is timed from the moment the receiver has
 * counted 10% of the messages to the moment it has counted them all (start-up, the connections
 * and JIT warm-up left out), on the machine-wide monotonic clock: for the engine, when this
 * process reads the app's count on the sink connection; for the baseline, in the server itself.
 *
 * Nothing may be lost: the engine's count must reach N and its closing summary must say N records
 * in, the baseline must count N; anything else fails the benchmark.
 */
import { createServer, type Socket } from "node:net";
import { COUNT_EVERY } from "./apps/ws-count.ts";
import type { WsRawServerReport } from "./baselines/ws-raw-server.ts";
import type { BenchContext } from "./lib/context.ts";
import { describeExit, spawnNode, waitOrKill, type ChildResult, type MeasuredChild } from "./lib/child.ts";
import { connectWhenListening, freePort, listen, sleep } from "./lib/net.ts";
import { procCpuSec } from "./lib/proc-cpu.ts";
import { readResult } from "./lib/protocol-records.ts";
import { formatRate, medianRow, type BenchResult, type Comparison } from "./lib/report.ts";
import type { WsSenderOptions, WsSenderReport } from "./lib/ws-sender.ts";

const FULL = { messages: 2_000_000, rounds: 3 };
const QUICK = { messages: 200_000, rounds: 1 };
const CONNECTIONS = 4;
const HIGH_WATER_BYTES = 4 * 2 ** 20;
const MESSAGE_BYTES = 20;
/** The window starts once this share of the messages has been counted. */
const WINDOW_START_SHARE = 0.1;
const RATIO_TARGET = 0.7;
const APP = "bench/apps/ws-count.ts";
const PID_PRELOAD = "./bench/lib/report-pid.mjs";
const READY_TIMEOUT_MS = 60_000;
/** Far beyond any sane run: lost messages would leave the count short forever. */
const RUN_TIMEOUT_MS = 5 * 60_000;
const STOP_TIMEOUT_MS = 20_000;
/** Once the sender has closed every connection, the receiver has read every message: it has this long to count them. */
const AFTER_SENDER_MS = 20_000;

type Side = "engine" | "raw";
const SIDE_NAME: Record<Side, string> = { engine: "keyway", raw: "raw ws" };

interface Run {
  side: Side;
  round: number;
  messages: number;
  /** From the count reaching 10% of the messages to the last. */
  recordsPerSec: number;
  /** From the sender's first send to the last count. */
  recordsPerSecFromFirstSend: number;
  /** CPU seconds of the receiving process (engine or raw server), from the sender's spawn to the last count, read from /proc. */
  receiverCpuSec: number | null;
  receiverCpuUsPerRecord: number | null;
  senderCpuSec: number;
  senderCpuUsPerRecord: number;
  /** Times a sender connection waited for its send buffer to drain. */
  senderWaits: number;
  /** The raw server's own CPU from its first message to its last (process.cpuUsage()). */
  rawSelfCpuSec?: number | null;
  /** The engine's closing summary. */
  engineSummary?: string;
}

/** Resolves once `ready()` holds; rejects if the child exits first or timeoutMs pass. */
async function waitUntil(ready: () => boolean, child: MeasuredChild, timeoutMs: number, what: string): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!ready()) {
    if (child.exited()) throw new Error(`exited before ${what} (${describeExit(await child.done)})`);
    if (performance.now() > deadline) throw new Error(`not ${what} within ${timeoutMs / 1000} s`);
    await sleep(5);
  }
}

/**
 * Waits for the receiver to have counted everything. The sender's close handshakes end only once
 * the receiver has read every message, so once the sender is gone the count is due soon.
 */
async function waitForCount(counted: () => boolean, receiver: MeasuredChild, sender: MeasuredChild, what: string): Promise<void> {
  const deadline = performance.now() + RUN_TIMEOUT_MS;
  let senderGoneAt: number | undefined;
  while (!counted()) {
    if (receiver.exited()) throw new Error(`the receiver exited before it ${what} (${describeExit(await receiver.done)})`);
    if (senderGoneAt === undefined && sender.exited()) senderGoneAt = performance.now();
    if (senderGoneAt !== undefined && performance.now() > senderGoneAt + AFTER_SENDER_MS) throw new Error(`not ${what} ${AFTER_SENDER_MS / 1000} s after the sender ended`);
    if (performance.now() > deadline) throw new Error(`not ${what} within ${RUN_TIMEOUT_MS / 1000} s`);
    await sleep(5);
  }
}

async function stopChild(child: MeasuredChild, who: string, problems: string[]): Promise<ChildResult> {
  child.kill("SIGTERM");
  const { result, timedOut } = await waitOrKill(child, STOP_TIMEOUT_MS);
  if (timedOut) problems.push(`${who} did not exit within ${STOP_TIMEOUT_MS / 1000} s of SIGTERM; killed (${describeExit(result)})`);
  else if (result.exitCode !== 0) problems.push(`${who} ended with ${describeExit(result)}`);
  return result;
}

function spawnSender(ctx: BenchContext, url: string, messages: number): MeasuredChild {
  const options: WsSenderOptions = { url, messages, connections: CONNECTIONS, highWaterBytes: HIGH_WATER_BYTES };
  return spawnNode(["--import", "tsx", "bench/lib/ws-sender.ts", JSON.stringify(options)], { cwd: ctx.root });
}

async function senderReport(sender: MeasuredChild, problems: string[]): Promise<WsSenderReport | null> {
  const { result, timedOut } = await waitOrKill(sender, RUN_TIMEOUT_MS);
  if (timedOut) problems.push(`the sender was still running after ${RUN_TIMEOUT_MS / 1000} s; killed`);
  else if (result.exitCode !== 0) problems.push(`the sender ended with ${describeExit(result)}`);
  const report = readResult<WsSenderReport>(result.stdoutTail);
  if (report === null) problems.push(`the sender reported nothing (${describeExit(result)})`);
  return report;
}

/** The engine behind `ws://`, its count read back on the tcp sink. */
async function runEngine(ctx: BenchContext, round: number, messages: number, problems: string[]): Promise<Run | null> {
  const windowStartAt = Math.ceil((messages * WINDOW_START_SHARE) / COUNT_EVERY) * COUNT_EVERY;
  let windowStartNs = 0;
  let windowStartCount = 0;
  let lastNs = 0;
  let lastCount = 0;
  let badLines = 0;
  let enginePid: number | undefined;
  let cpuAtEnd: number | null = null;
  const sinkSockets = new Set<Socket>();
  const sinkServer = createServer({ noDelay: true }, (socket) => {
    sinkSockets.add(socket);
    socket.on("close", () => sinkSockets.delete(socket));
    socket.setEncoding("utf8");
    let carry = "";
    socket.on("data", (chunk: string) => {
      const lines = (carry + chunk).split("\n");
      carry = lines.pop()!;
      for (const line of lines) {
        const count = Number(line);
        if (!Number.isSafeInteger(count) || count <= lastCount) {
          badLines++;
          continue;
        }
        lastCount = count;
        if (windowStartNs === 0 && count >= windowStartAt) {
          windowStartNs = Number(process.hrtime.bigint());
          windowStartCount = count;
        }
        if (count === messages) {
          lastNs = Number(process.hrtime.bigint());
          cpuAtEnd = enginePid === undefined ? null : procCpuSec(enginePid);
        }
      }
    });
    socket.on("error", () => {});
  });
  const sinkPort = await listen(sinkServer, 0);
  const port = await freePort();
  const engine = spawnNode(
    [
      "--import", PID_PRELOAD, "bin/keyway.js", "run", APP,
      "--source", `in=ws://127.0.0.1:${port}/in`, "--sink", `out=tcp://127.0.0.1:${sinkPort}`,
      "--no-progress", "--log-level", "warn",
    ],
    {
      cwd: ctx.root,
      onStderrLine: (line) => {
        const m = /^bench-pid (\d+)$/.exec(line);
        if (m !== null) enginePid = Number(m[1]);
      },
    },
  );
  let sender: MeasuredChild | undefined;
  try {
    const probe = await connectWhenListening(port, engine, READY_TIMEOUT_MS);
    probe.destroy();
    const cpuAtStart = enginePid === undefined ? null : procCpuSec(enginePid);
    sender = spawnSender(ctx, `ws://127.0.0.1:${port}/in`, messages);
    const senderDone = senderReport(sender, problems);
    try {
      await waitForCount(() => lastNs !== 0, engine, sender, `counted ${messages} records`);
    } catch (err) {
      problems.push(`${(err as Error).message}; the last count was ${lastCount}`);
    }
    const sent = await senderDone;
    const engineResult = await stopChild(engine, "engine", problems);
    const summary = /keyway: (done in .*)$/m.exec(engineResult.stderrTail)?.[1];
    const recordsIn = summary === undefined ? null : Number(/([\d,]+) records in/.exec(summary)?.[1]?.replace(/,/g, ""));
    if (summary === undefined) problems.push("the engine printed no closing summary");
    else if (recordsIn !== messages) problems.push(`the engine's summary says ${recordsIn} records in, not ${messages}: ${summary}`);
    if (badLines > 0) problems.push(`${badLines} malformed or out-of-order counts on the sink`);
    if (sent === null || lastNs === 0 || problems.length > 0) return null;
    const receiverCpuSec = cpuAtStart !== null && cpuAtEnd !== null ? cpuAtEnd - cpuAtStart : null;
    return {
      side: "engine",
      round,
      messages,
      recordsPerSec: (messages - windowStartCount) / ((lastNs - windowStartNs) / 1e9),
      recordsPerSecFromFirstSend: messages / ((lastNs - sent.firstSendNs) / 1e9),
      receiverCpuSec,
      receiverCpuUsPerRecord: receiverCpuSec === null ? null : (receiverCpuSec * 1e6) / messages,
      senderCpuSec: sent.cpuSec,
      senderCpuUsPerRecord: (sent.cpuSec * 1e6) / messages,
      senderWaits: sent.waits,
      engineSummary: summary!,
    };
  } catch (err) {
    problems.push((err as Error).message);
    for (const child of [sender, engine]) child?.kill("SIGKILL");
    for (const child of [sender, engine]) if (child !== undefined) await waitOrKill(child, STOP_TIMEOUT_MS);
    return null;
  } finally {
    for (const socket of sinkSockets) socket.destroy();
    await new Promise<void>((resolve) => sinkServer.close(() => resolve()));
  }
}

/** The bare ws server, counting. */
async function runRaw(ctx: BenchContext, round: number, messages: number, problems: string[]): Promise<Run | null> {
  const firstMeasured = Math.ceil(messages * WINDOW_START_SHARE);
  let port: number | undefined;
  let serverPid: number | undefined;
  let cpuAtEnd: number | null = null;
  let all = false;
  const server = spawnNode(["--import", PID_PRELOAD, "--import", "tsx", "bench/baselines/ws-raw-server.ts", JSON.stringify({ messages, firstMeasured })], {
    cwd: ctx.root,
    onStderrLine: (line) => {
      let m = /^bench-pid (\d+)$/.exec(line);
      if (m !== null) serverPid = Number(m[1]);
      m = /^listening (\d+)$/.exec(line);
      if (m !== null) port = Number(m[1]);
      if (line.startsWith("all ")) {
        cpuAtEnd = serverPid === undefined ? null : procCpuSec(serverPid);
        all = true;
      }
    },
  });
  let sender: MeasuredChild | undefined;
  try {
    await waitUntil(() => port !== undefined, server, READY_TIMEOUT_MS, "listening");
    const cpuAtStart = serverPid === undefined ? null : procCpuSec(serverPid);
    sender = spawnSender(ctx, `ws://127.0.0.1:${port}/in`, messages);
    const senderDone = senderReport(sender, problems);
    try {
      await waitForCount(() => all, server, sender, `counted ${messages} messages`);
    } catch (err) {
      problems.push((err as Error).message);
    }
    const sent = await senderDone;
    const serverResult = await stopChild(server, "raw ws server", problems);
    const received = readResult<WsRawServerReport>(serverResult.stdoutTail);
    if (received === null) problems.push(`the raw ws server reported nothing (${describeExit(serverResult)})`);
    else if (received.received !== messages) problems.push(`the raw ws server counted ${received.received} messages, not ${messages}`);
    if (sent === null || received === null || problems.length > 0) return null;
    const receiverCpuSec = cpuAtStart !== null && cpuAtEnd !== null ? cpuAtEnd - cpuAtStart : null;
    return {
      side: "raw",
      round,
      messages,
      recordsPerSec: (messages - received.windowStartCount) / ((received.lastNs - received.windowStartNs) / 1e9),
      recordsPerSecFromFirstSend: messages / ((received.lastNs - sent.firstSendNs) / 1e9),
      receiverCpuSec,
      receiverCpuUsPerRecord: receiverCpuSec === null ? null : (receiverCpuSec * 1e6) / messages,
      senderCpuSec: sent.cpuSec,
      senderCpuUsPerRecord: (sent.cpuSec * 1e6) / messages,
      senderWaits: sent.waits,
      rawSelfCpuSec: received.cpuSec,
    };
  } catch (err) {
    problems.push((err as Error).message);
    for (const child of [sender, server]) child?.kill("SIGKILL");
    for (const child of [sender, server]) if (child !== undefined) await waitOrKill(child, STOP_TIMEOUT_MS);
    return null;
  }
}

export async function runWsIngest(ctx: BenchContext): Promise<BenchResult> {
  const startedAt = performance.now();
  const profile = ctx.quick ? QUICK : FULL;
  const { messages, rounds } = profile;
  if (messages % COUNT_EVERY !== 0 || messages % CONNECTIONS !== 0) throw new Error(`${messages} messages: not a multiple of ${COUNT_EVERY} and ${CONNECTIONS}`);
  const errors: string[] = [];
  const runs: Run[] = [];
  for (let round = 0; round < rounds; round++) {
    const order: Side[] = round % 2 === 0 ? ["raw", "engine"] : ["engine", "raw"];
    for (const side of order) {
      const problems: string[] = [];
      const run = side === "engine" ? await runEngine(ctx, round, messages, problems) : await runRaw(ctx, round, messages, problems);
      for (const p of problems) errors.push(`${SIDE_NAME[side]}, round ${round + 1}: ${p}`);
      // A run that lost or duplicated messages measures nothing: left out.
      if (run === null) continue;
      runs.push(run);
      ctx.log(
        `ws-ingest: round ${round + 1}/${rounds} ${SIDE_NAME[side]}: ${formatRate(run.recordsPerSec)} records/s (${formatRate(run.recordsPerSecFromFirstSend)} from first send), ` +
          `CPU s receiver ${run.receiverCpuSec?.toFixed(2) ?? "n/a"} sender ${run.senderCpuSec.toFixed(2)}, sender waited ${run.senderWaits} times`,
      );
    }
  }

  const isKeyway = (r: Run) => r.side === "engine";
  const throughput = medianRow(runs, isKeyway, "records/s, 10% -> all counted (median)", "", (r) => r.recordsPerSec, "higher");
  if (throughput.ratio !== null) {
    throughput.target = `>= ${RATIO_TARGET}x raw ws`;
    throughput.targetMet = throughput.ratio >= RATIO_TARGET;
  }
  const comparisons: Comparison[] = [
    throughput,
    medianRow(runs, isKeyway, "records/s, first send -> all counted (median)", "", (r) => r.recordsPerSecFromFirstSend, "higher"),
    medianRow(runs, isKeyway, "CPU per record, receiving process (median)", "us", (r) => r.receiverCpuUsPerRecord, "lower"),
    medianRow(runs, isKeyway, "CPU per record, sender process (median)", "us", (r) => r.senderCpuUsPerRecord, "lower"),
  ];
  const summaries = runs.filter(isKeyway).map((r) => r.engineSummary);
  return {
    name: "ws-ingest",
    title: "WebSocket source ingest: sender process -> ws:// source -> count (keyway) vs raw ws server",
    ok: errors.length === 0,
    errors,
    notes: [
      `${messages} text messages of ${MESSAGE_BYTES} bytes per run, over ${CONNECTIONS} connections opened with ws from one sender process (bench/lib/ws-sender.ts: standard client frames with an all-zero masking key, built by the sender 1000 to a socket.write, as ws.send per message costs the sender about what the raw receiver spends; each connection waits while its bufferedAmount is over ${HIGH_WATER_BYTES / 2 ** 20} MiB); ${rounds} round(s) per side, alternating; medians.`,
      `keyway: \`keyway run ${APP} --source in=ws://127.0.0.1:P/in --sink out=tcp://127.0.0.1:S\`, a stateless flatMap counting records and emitting the count every ${COUNT_EVERY} (so the sink carries ${messages / COUNT_EVERY} lines, not a line per record); timed when this process reads the counts off the sink connection. raw ws: bench/baselines/ws-raw-server.ts, a ws WebSocketServer counting 'message' events, timed in itself.`,
      "CPU per record: the receiving process's CPU read from /proc from the sender's spawn to the last count (the engine's includes its source, batch loop and sink), and the sender's own process.cpuUsage(), divided by the messages. On 2 cores the sender and the receiver share the machine; a receiver that takes more CPU leaves the sender less.",
      ...(summaries.length > 0 ? [`engine summaries: ${summaries.join(" | ")}`] : []),
    ],
    comparisons,
    details: { messages, connections: CONNECTIONS, messageBytes: MESSAGE_BYTES, highWaterBytes: HIGH_WATER_BYTES, countEvery: COUNT_EVERY, rounds, runs },
    durationMs: performance.now() - startedAt,
  };
}
