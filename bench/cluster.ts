/**
 * The cluster benchmark, three measurements, each beside its baseline in the same run:
 *
 * 1. Scaling: word count (examples/word-count/app.ts) on 2 workers (`--workers 2`) against 1,
 *    reading a directory of two files (`--source lines=file:DIR`: on 2 workers each reads one),
 *    file sink; alternating, median of rounds. Throughput and CPU per word, 2 workers / 1 worker.
 *    Every run's output is checked per word against the driver's own count of the corpus. A
 *    secondary mode feeds the same two files through two external connector processes
 *    (`keyway connector file-source` -> `--source lines=connector`).
 * 2. Exchange link: records/s from one process to another through the real exchange
 *    (createExchange, bench/apps/exchange-peer.ts) against a bare grpc-js bidi stream carrying the
 *    same encoded payloads (bench/baselines/raw-stream-peer.ts).
 * 3. Grow under load: bench/apps/sequence-window.ts on one worker holding 1M keys, under a steady
 *    offered load, while a second worker joins and the upper half of the slots move to it. The
 *    driver times every record from send to output, per class of slot (moving or not), during the
 *    move and over an equally long window without a move in the same run. The output is then
 *    proven free of loss, duplication and reordering per key by examples/validation/check.ts.
 */
import { createHash } from "node:crypto";
import { mkdirSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { createServer, type Socket } from "node:net";
import type { BenchContext } from "./lib/context.ts";
import { describeExit, spawnNode, waitOrKill, type MeasuredChild } from "./lib/child.ts";
import { clusterStatus, CpuSampler, parseLogLine, pidPreloadEnv, READY_TIMEOUT_MS, STOP_TIMEOUT_MS, stopChild, stopWithJoined, takePid, waitUntil, type ClusterStatus } from "./lib/engine-child.ts";
import type { LinkPlan, LinkReceiverReport, LinkSenderReport } from "./lib/exchange-records.ts";
import { digestFile } from "./lib/file-digest.ts";
import { closeServer, connectWhenListening, freePort, listen, sleep } from "./lib/net.ts";
import { readResult } from "./lib/protocol-records.ts";
import { formatCount, formatRate, medianRow, type BenchResult, type Comparison } from "./lib/report.ts";
import { bulkLoad, checkSequenceOutput, F64List, I32List, SinkCollector, SLOT_COUNT, slotsOfKeys } from "./lib/sequence-load.ts";
import { median, percentileSorted, ratio } from "./lib/stats.ts";
import { createRandom } from "./lib/text-gen.ts";
import { CHILD_TIMEOUT_MS, CLUSTER_CORPUS, CLUSTER_CORPUS_QUICK, checkWordCountOutput, DIRECTORY_FILES, OUTPUT_POLL_MS, prepareDataset, runDirectoryOnce, type Dataset, type DirectoryOutcome } from "./lib/word-count-dir.ts";

// ---------------------------------------------------------------------------------------------
// 1. Word count, 1 worker against 2

const ROUNDS_FULL = 3;
const ROUNDS_QUICK = 1;
const CONNECTOR_ROUNDS_FULL = 2;
const CONNECTOR_ROUNDS_QUICK = 1;
const SCALING_TARGET_RATIO = 1.5;
const CPU_PER_WORD_TARGET_RATIO = 1.3;

type Mode = "directory" | "connector";
type Workers = 1 | 2;

interface ScalingRun {
  mode: Mode;
  workers: Workers;
  round: number;
  /** First output byte in the sink file -> the sink file complete (directory); first connector session -> last connector exit (connector). */
  processMs: number;
  wordsPerSec: number;
  /** CPU seconds of every engine process over processMs (from /proc), and per word. */
  activeCpuSec: number | null;
  cpuUsPerWord: number | null;
  /** Engine spawn to the first output byte (start-up, joining, first batch). */
  spawnToFirstOutputMs: number | null;
  /** Engine spawn to the first "reading sources placed here" (2 workers; directory mode). */
  spawnToSourcesMs: number | null;
  engineWallMs: number;
  /** Engine and its local workers over their whole life (GNU time counts reaped children). */
  engineCpuSec: number | null;
  engineMaxRssKiB: number | null;
  connectorsCpuSec: number | null;
  /** Sink file size when processMs ended, against the complete size. */
  bytesAtEnd: number;
  outputLines: number;
  pids: number;
  /** Connector mode: sessions the engine redirected to the worker their instance maps to. */
  sessionsRedirected?: number;
}

type Outcome = { run: Omit<ScalingRun, "round" | "wordsPerSec" | "cpuUsPerWord">; error?: undefined } | { run: null; error: string };

/** A directory run as a scaling run: the sink file was complete when its time ended. */
function directoryOutcome(outcome: DirectoryOutcome, workers: Workers, data: Dataset): Outcome {
  if (outcome.run === null) return outcome;
  return { run: { ...outcome.run, mode: "directory", workers, connectorsCpuSec: null, bytesAtEnd: data.expectedBytes } };
}

/** Instance ids that workerForInstance (sha256, first word mod the data workers) puts on different workers of two. */
function spreadInstanceIds(count: number): string[] {
  const ids: string[] = [];
  for (let i = 0; ids.length < count; i++) {
    const id = `bench-wc-${i}`;
    if (createHash("sha256").update(id).digest().readUInt32BE(0) % count === ids.length) ids.push(id);
  }
  return ids;
}

/**
 * One run fed by one `keyway connector file-source` per file, with instance ids that land on
 * different workers: timed from the first connector session opening to the last connector's exit
 * (each exits once the engine has committed all its lines).
 */
async function runConnectorOnce(ctx: BenchContext, workers: Workers, data: Dataset, output: string): Promise<Outcome> {
  rmSync(output, { force: true });
  const port = await freePort();
  const pids: number[] = [];
  let serving = false;
  let joined = workers === 1;
  let openedAt: number | null = null;
  let redirected = 0;
  const spawnedAt = performance.now();
  const engine = spawnNode(
    [
      "bin/keyway.js", "run", "examples/word-count/app.ts",
      "--source", "lines=connector", "--listen", `127.0.0.1:${port}`,
      "--sink", `counts=file:${output}`,
      "--workers", String(workers),
      // What the exchange costs, apart from replication (the replication benchmark measures that).
      "--replicas", "1",
      // info: the readiness lines below are logged at info.
      "--no-progress", "--log-level", "info",
    ],
    {
      cwd: ctx.root,
      env: pidPreloadEnv(),
      onStderrLine(line) {
        if (takePid(line, pids)) return;
        const entry = parseLogLine(line);
        if (entry === null) return;
        const msg = String(entry.msg ?? "");
        if (msg.startsWith("serving connectors")) serving = true;
        if (msg === "slots moved" && Array.isArray(entry.workers) && entry.workers.length === workers) joined = true;
        if (msg === "connector session opened" && openedAt === null) openedAt = performance.now();
        if (msg === "connector session redirected") redirected++;
      },
    },
  );
  const connectors: MeasuredChild[] = [];
  try {
    // Sources wait for every worker; starting the connectors after that keeps the wait out of the figure.
    await waitUntil(() => serving && joined, engine, READY_TIMEOUT_MS, workers === 1 ? "serving connectors" : `serving connectors with ${workers} workers joined`);
    const ids = spreadInstanceIds(data.files.length);
    data.files.forEach((file, i) => {
      connectors.push(
        spawnNode(
          ["bin/keyway.js", "connector", "file-source", "--engine", `127.0.0.1:${port}`, "--target", "lines", "--path", file, "--instance-id", ids[i]!, "--log-level", "warn"],
          { cwd: ctx.root },
        ),
      );
    });
    const cpu = new CpuSampler(pids);
    let cpuAtOpen: number | null = null;
    const deadline = performance.now() + CHILD_TIMEOUT_MS;
    // The connectors retry a missing engine forever; an engine that died must not hang the bench.
    while (connectors.some((c) => !c.exited())) {
      if (engine.exited()) throw new Error("the engine exited while the connectors were sending");
      if (performance.now() > deadline) throw new Error("the connectors did not finish in time");
      const sampled = openedAt === null ? null : cpu.sample();
      if (cpuAtOpen === null) cpuAtOpen = sampled;
      await sleep(OUTPUT_POLL_MS);
    }
    const endedAt = performance.now();
    const cpuAtEnd = cpu.sample();
    const bytesAtEnd = statSync(output, { throwIfNoEntry: false })?.size ?? 0;
    const results = await Promise.all(connectors.map((c) => c.done));
    const failed = results.find((r) => r.exitCode !== 0);
    const stopErrors: string[] = [];
    const eng = await stopChild(engine, "engine", stopErrors);
    if (failed !== undefined) return { run: null, error: `a connector failed: ${describeExit(failed)}${stopErrors.length > 0 ? `; ${stopErrors.join("; ")}` : ""}` };
    if (stopErrors.length > 0) return { run: null, error: stopErrors.join("; ") };
    if (openedAt === null) return { run: null, error: "the engine never logged a connector session opening" };
    const digest = await digestFile(output);
    const connectorsCpu = results.every((r) => r.cpuSec !== null) ? results.reduce((n, r) => n + r.cpuSec!, 0) : null;
    return {
      run: {
        mode: "connector",
        workers,
        processMs: endedAt - openedAt,
        activeCpuSec: cpuAtOpen === null || cpuAtEnd === null || pids.length !== workers ? null : cpuAtEnd - cpuAtOpen,
        spawnToFirstOutputMs: null,
        spawnToSourcesMs: openedAt - spawnedAt,
        engineWallMs: eng.wallMs,
        engineCpuSec: eng.cpuSec,
        engineMaxRssKiB: eng.maxRssKiB,
        connectorsCpuSec: connectorsCpu,
        bytesAtEnd,
        outputLines: digest.lines,
        pids: pids.length,
        sessionsRedirected: redirected,
      },
    };
  } catch (err) {
    for (const child of [...connectors, engine]) child.kill("SIGKILL");
    const { result } = await waitOrKill(engine, STOP_TIMEOUT_MS);
    for (const c of connectors) await waitOrKill(c, STOP_TIMEOUT_MS);
    return { run: null, error: `${(err as Error).message} (${describeExit(result)})` };
  }
}

async function runScalingRounds(ctx: BenchContext, mode: Mode, rounds: number, data: Dataset, errors: string[]): Promise<ScalingRun[]> {
  const outDir = join(ctx.dataDir, "out");
  mkdirSync(outDir, { recursive: true });
  const runs: ScalingRun[] = [];
  for (let round = 0; round < rounds; round++) {
    // Alternate who goes first, so neither side always gets the warmer or quieter machine.
    const order: Workers[] = round % 2 === 0 ? [1, 2] : [2, 1];
    for (const workers of order) {
      ctx.log(`cluster: word count, ${mode} source, round ${round + 1}/${rounds}, ${workers} worker(s)`);
      const output = join(outDir, `cluster-wc-${mode}-${workers}.txt`);
      const outcome = mode === "directory" ? directoryOutcome(await runDirectoryOnce(ctx, workers, data, output, workers > 1 ? ["--replicas", "1"] : []), workers, data) : await runConnectorOnce(ctx, workers, data, output);
      if (outcome.run === null) {
        rmSync(output, { force: true });
        errors.push(`word count (${mode}) on ${workers} worker(s), round ${round + 1} failed: ${outcome.error}`);
        continue;
      }
      const problems = checkWordCountOutput(output, data.expected);
      rmSync(output, { force: true });
      if (problems.length > 0) errors.push(`OUTPUT MISMATCH: word count (${mode}) on ${workers} worker(s), round ${round + 1}: ${problems.join("; ")}`);
      const r = outcome.run;
      const run: ScalingRun = {
        ...r,
        round,
        wordsPerSec: data.words / (r.processMs / 1000),
        cpuUsPerWord: r.activeCpuSec === null ? null : (r.activeCpuSec * 1e6) / data.words,
      };
      runs.push(run);
      ctx.log(
        `cluster:   ${(run.processMs / 1000).toFixed(2)} s, ${formatRate(run.wordsPerSec)} words/s, CPU ${run.activeCpuSec?.toFixed(2) ?? "?"} s over it (${run.cpuUsPerWord?.toFixed(2) ?? "?"} us/word), ` +
          `whole life ${(run.engineWallMs / 1000).toFixed(2)} s / ${run.engineCpuSec?.toFixed(2) ?? "?"} s CPU, ${run.outputLines} lines${problems.length > 0 ? " (WRONG OUTPUT)" : ""}`,
      );
    }
  }
  return runs;
}

function scalingRows(runs: readonly ScalingRun[], mode: Mode): Comparison[] {
  const row = (metric: string, unit: string, pick: (r: ScalingRun) => number | null, better: Comparison["better"]): Comparison => medianRow(runs, (r) => r.workers === 2, metric, unit, pick, better);
  const what = mode === "directory" ? "word count, file:DIR of 2 files" : "word count, 2 connector processes";
  const throughput = row(`${what}: throughput, 2 workers vs 1 (median)`, "words/s", (r) => r.wordsPerSec, "higher");
  const cpu = row(`${what}: CPU per word, all engine processes (median)`, "us", (r) => r.cpuUsPerWord, "lower");
  if (mode === "directory") {
    throughput.target = `ratio >= ${SCALING_TARGET_RATIO}`;
    if (throughput.ratio !== null) throughput.targetMet = throughput.ratio >= SCALING_TARGET_RATIO;
    cpu.target = `ratio <= ${CPU_PER_WORD_TARGET_RATIO}`;
    if (cpu.ratio !== null) cpu.targetMet = cpu.ratio <= CPU_PER_WORD_TARGET_RATIO;
  }
  const rows = [throughput, cpu];
  if (mode === "directory") {
    rows.push(
      row(`${what}: time, first output to last (median)`, "s", (r) => r.processMs / 1000, "lower"),
      row(`${what}: spawn to first output (start-up, joining) (median)`, "s", (r) => r.spawnToFirstOutputMs === null ? null : r.spawnToFirstOutputMs / 1000, "lower"),
      row(`${what}: wall time, spawn to exit (median)`, "s", (r) => r.engineWallMs / 1000, "lower"),
      row(`${what}: CPU, whole life of all engine processes (median)`, "s", (r) => r.engineCpuSec, "lower"),
      row(`${what}: peak RSS of the first process (median)`, "MiB", (r) => r.engineMaxRssKiB === null ? null : r.engineMaxRssKiB / 1024, "lower"),
    );
  } else {
    rows.push(row(`${what}: connector processes' CPU, whole life (median)`, "s", (r) => r.connectorsCpuSec, "lower"));
  }
  return rows;
}

async function measureScaling(ctx: BenchContext, errors: string[], notes: string[]): Promise<{ comparisons: Comparison[]; details: Record<string, unknown>; corpusPath: string }> {
  const spec = ctx.quick ? CLUSTER_CORPUS_QUICK : CLUSTER_CORPUS;
  ctx.log(`cluster: preparing a ${(spec.minBytes / 2 ** 20).toFixed(0)} MiB corpus in ${DIRECTORY_FILES} files`);
  const data = prepareDataset(ctx, spec);

  const directoryRuns = await runScalingRounds(ctx, "directory", ctx.quick ? ROUNDS_QUICK : ROUNDS_FULL, data, errors);
  const connectorRuns = await runScalingRounds(ctx, "connector", ctx.quick ? CONNECTOR_ROUNDS_QUICK : CONNECTOR_ROUNDS_FULL, data, errors);
  const comparisons = [...scalingRows(directoryRuns, "directory"), ...scalingRows(connectorRuns, "connector")];

  const mismatched = errors.some((e) => e.startsWith("OUTPUT MISMATCH"));
  const early = connectorRuns.filter((r) => r.bytesAtEnd < data.expectedBytes);
  const missingPids = [...directoryRuns, ...connectorRuns].filter((r) => r.pids !== r.workers);
  notes.push(
    `scaling: the keyway column is 2 workers (\`--workers 2\`), the baseline column 1 worker (one process), same app (examples/word-count/app.ts) and corpus (${(data.bytes / 2 ** 20).toFixed(1)} MiB, ${data.lines} lines, ${data.words} words, ${data.expected.size} distinct) cut into ${DIRECTORY_FILES} files at line ends; file sink; alternating which side goes first; medians.`,
    `scaling, file:DIR (the headline): \`--source lines=file:DIR\`; on 2 workers each reads one file, and the first worker also writes the sink (the second sends it its output over the exchange). Timed from the first byte in the sink file to the file reaching the complete output's size (${data.expectedBytes} B, computed from the driver's own count), the driver looking every ${OUTPUT_POLL_MS} ms: start-up, joining and exit are left out (given in their own rows). CPU per word: CPU of every engine process (read from /proc at those two instants; each announces its pid through bench/lib/report-pid.mjs in NODE_OPTIONS) / words.`,
    `scaling, connector (secondary): one \`keyway connector file-source\` process per file, with instance ids that land on different workers, started once every worker has joined; timed from the first "connector session opened" to the last connector's exit (each exits once the engine has committed all its lines). CPU per word counts the engine processes only; the connectors' own is in its row.`,
    `scaling: every run's output was checked per word against the driver's own count of the corpus (counts 1..n in order for each word, n as in the corpus)${mismatched ? "; SOME DIFFERED (see errors)" : "; all matched"}. On 2 cores the two workers (and, in connector mode, two connectors) share the machine with the driver.`,
  );
  if (early.length > 0) {
    notes.push(`scaling, connector: in ${early.length} run(s) the sink file was short when the last connector exited (${early.map((r) => `${r.bytesAtEnd}/${data.expectedBytes} B`).join(", ")}): "committed" came before the sink had written everything, so those times are slightly short.`);
  }
  const unspread = connectorRuns.filter((r) => r.workers === 2 && r.sessionsRedirected === 0);
  if (unspread.length > 0) {
    notes.push(`scaling, connector: in ${unspread.length} run(s) on 2 workers no connector session was redirected, so both connectors were probably served by the first worker.`);
  }
  if (missingPids.length > 0) {
    notes.push(`scaling: in ${missingPids.length} run(s) not every engine process announced its pid, so their CPU per word is left out.`);
  }
  return {
    comparisons,
    corpusPath: data.corpusPath,
    details: {
      corpus: { ...spec, path: data.corpusPath, bytes: data.bytes, lines: data.lines, words: data.words, distinct: data.expected.size, files: data.files, expectedOutputBytes: data.expectedBytes },
      directoryRuns,
      connectorRuns,
    },
  };
}

// ---------------------------------------------------------------------------------------------
// 2. Exchange link: the real exchange between two processes against a raw grpc-js stream

const LINK_BATCH_RECORDS = 1000;
const LINK_DISTINCT_BATCHES = 64;
const LINK_BATCHES_FULL = 5000;
const LINK_BATCHES_QUICK = 500;
const LINK_ROUNDS_FULL = 3;
const LINK_ROUNDS_QUICK = 1;
const LINK_TARGET_RATIO = 0.7;
/** After the sender is done, how long the receiver may take to report. */
const LINK_RECEIVE_TIMEOUT_MS = 20_000;

type LinkSide = "exchange" | "raw";
const LINK_SCRIPT: Record<LinkSide, string> = { exchange: "bench/apps/exchange-peer.ts", raw: "bench/baselines/raw-stream-peer.ts" };

interface LinkRun {
  side: LinkSide;
  round: number;
  records: number;
  /** Timed in the receiver, from the arrival completing 10% of the records to the last arrival. */
  recordsPerSec: number;
  /** From the sender's first send to the last batch done (exchange) or the call's end (raw). */
  recordsPerSecSender: number;
  /** Sender CPU over its sending + receiver CPU from first arrival to last, per record. */
  cpuNsPerRecord: number;
  sender: LinkSenderReport;
  receiver: LinkReceiverReport;
}

/** Receiver process, then sender process; both must report the same batches in the same order. */
async function runLinkOnce(ctx: BenchContext, side: LinkSide, round: number, plan: LinkPlan, problems: string[]): Promise<LinkRun | null> {
  const script = LINK_SCRIPT[side];
  let port: number | undefined;
  let complete = false;
  const receiver = spawnNode(["--import", "tsx", script, JSON.stringify({ role: "receive", ...plan })], {
    cwd: ctx.root,
    onStderrLine: (line) => {
      const m = /^listening (\d+)$/.exec(line);
      if (m !== null) port = Number(m[1]);
      if (line === "complete") complete = true;
    },
  });
  let sender: MeasuredChild | undefined;
  try {
    await waitUntil(() => port !== undefined, receiver, READY_TIMEOUT_MS, "listening");
    sender = spawnNode(["--import", "tsx", script, JSON.stringify({ role: "send", address: `127.0.0.1:${port}`, ...plan })], { cwd: ctx.root });
    const { result: sent, timedOut } = await waitOrKill(sender, CHILD_TIMEOUT_MS);
    if (timedOut) problems.push(`${side} sender did not finish within ${CHILD_TIMEOUT_MS / 1000} s; killed`);
    else if (sent.exitCode !== 0) problems.push(`${side} sender ended with ${describeExit(sent)}`);
    // The receiver reports once it has every record; give it a moment if it is behind.
    const deadline = performance.now() + LINK_RECEIVE_TIMEOUT_MS;
    while (!complete && !receiver.exited() && performance.now() < deadline) await sleep(20);
    const received = await stopChild(receiver, `${side} receiver`, problems);
    const senderReport = readResult<LinkSenderReport>(sent.stdoutTail);
    const receiverReport = readResult<LinkReceiverReport>(received.stdoutTail);
    if (senderReport === null) problems.push(`${side} sender reported nothing (${describeExit(sent)})`);
    if (receiverReport === null) problems.push(`${side} receiver reported nothing: not every record arrived (${describeExit(received)})`);
    if (senderReport === null || receiverReport === null) return null;
    const expected = plan.batches * plan.batchRecords;
    const before = problems.length;
    if (senderReport.records !== expected) problems.push(`${side}: the sender sent ${senderReport.records} records, not ${expected}`);
    if (receiverReport.records !== expected) problems.push(`${side}: received ${receiverReport.records} of ${expected} records`);
    if (receiverReport.malformed > 0) problems.push(`${side}: ${receiverReport.malformed} malformed batches`);
    if (receiverReport.signature !== senderReport.signature) problems.push(`OUTPUT WRONG: ${side}: the batches received (signature ${receiverReport.signature}) are not the batches sent (${senderReport.signature}) in order: lost, duplicated, reordered or altered`);
    if (problems.length > before) return null;
    return {
      side,
      round,
      records: expected,
      recordsPerSec: receiverReport.windowRecords / (receiverReport.windowMs / 1000),
      recordsPerSecSender: expected / (senderReport.sendMs / 1000),
      cpuNsPerRecord: ((senderReport.cpuSec + receiverReport.cpuSec) * 1e9) / expected,
      sender: senderReport,
      receiver: receiverReport,
    };
  } catch (err) {
    problems.push(`${side}: ${(err as Error).message}`);
    for (const child of [sender, receiver]) child?.kill("SIGKILL");
    for (const child of [sender, receiver]) if (child !== undefined) await waitOrKill(child, STOP_TIMEOUT_MS);
    return null;
  }
}

async function measureExchangeLink(ctx: BenchContext, corpusPath: string, errors: string[], notes: string[]): Promise<{ comparisons: Comparison[]; details: Record<string, unknown> }> {
  const plan: LinkPlan = {
    corpusPath,
    batchRecords: LINK_BATCH_RECORDS,
    distinctBatches: LINK_DISTINCT_BATCHES,
    batches: ctx.quick ? LINK_BATCHES_QUICK : LINK_BATCHES_FULL,
  };
  const rounds = ctx.quick ? LINK_ROUNDS_QUICK : LINK_ROUNDS_FULL;
  const runs: LinkRun[] = [];
  for (let round = 0; round < rounds; round++) {
    const order: LinkSide[] = round % 2 === 0 ? ["raw", "exchange"] : ["exchange", "raw"];
    for (const side of order) {
      ctx.log(`cluster: exchange link, round ${round + 1}/${rounds}, ${side === "raw" ? "raw grpc-js stream" : "createExchange"}: ${plan.batches} batches of ${plan.batchRecords}`);
      const problems: string[] = [];
      const run = await runLinkOnce(ctx, side, round, plan, problems);
      errors.push(...problems.map((p) => `exchange link, round ${round + 1}: ${p}`));
      if (run === null) continue;
      runs.push(run);
      ctx.log(`cluster:   ${formatRate(run.recordsPerSec)} records/s at the receiver (${formatRate(run.recordsPerSecSender)}/s from the first send), ${run.cpuNsPerRecord.toFixed(0)} ns CPU/record`);
    }
  }
  const medianOf = (side: LinkSide, pick: (r: LinkRun) => number): number | null => {
    const values = runs.filter((r) => r.side === side).map(pick);
    return values.length === 0 ? null : median(values);
  };
  const row = (metric: string, unit: string, pick: (r: LinkRun) => number, better: Comparison["better"]): Comparison => {
    const ex = medianOf("exchange", pick);
    const raw = medianOf("raw", pick);
    return { metric, unit, engine: ex, baseline: raw, ratio: ratio(ex, raw), better };
  };
  const throughput = row("exchange link: records/s, one link between two processes (median)", "records/s", (r) => r.recordsPerSec, "higher");
  throughput.target = `ratio >= ${LINK_TARGET_RATIO}`;
  if (throughput.ratio !== null) throughput.targetMet = throughput.ratio >= LINK_TARGET_RATIO;
  const comparisons = [
    throughput,
    row("exchange link: CPU per record, sender + receiver (median)", "ns", (r) => r.cpuNsPerRecord, "lower"),
    row("exchange link: records/s from the sender's first send (median)", "records/s", (r) => r.recordsPerSecSender, "higher"),
  ];
  const encodeShare = medianOf("exchange", (r) => r.sender.encodeCpuSec / r.sender.cpuSec);
  notes.push(
    `exchange link: the keyway column is the real exchange (createExchange in src/exchange/grpc-exchange.ts, bench/apps/exchange-peer.ts): a receiving process serving it on a grpc-js Server as "w1" (every batch decoded with decodeRecords and reported applied and done at once) and a sending process as "w0" with the receiver as its peer, sending the way the engine's source loop does (await exchange.ready(), at most 64 unfinished batches). The baseline (bench/baselines/raw-stream-peer.ts) is one bare grpc-js bidi stream between two processes carrying the same payload bytes as messages with identity serializers: no envelope, sequences, acks or windows, only the call's write backpressure. Same channel options (the exchange's CHANNEL_OPTIONS) and HTTP/2 receive window (widenReceiveWindow, as the worker's cluster server) on both.`,
    `exchange link: ${plan.batches} batches of ${plan.batchRecords} word-count records per run (KeyedBatch: key = value = a word of the corpus, its real slot of 4096, no lineage; ${plan.distinctBatches} distinct batches cycled), each encoded with encodeRecords when sent and decoded when received, on both sides (the codec took ${encodeShare === null ? "?" : `${(encodeShare * 100).toFixed(0)}%`} of the exchange sender's CPU). records/s is timed in the receiver from the arrival completing 10% of the records to the last; ${rounds} round(s), alternating; medians. Each run's receiver must have every batch once and in the order sent (an order-dependent signature of every batch's count, keys and slot), or the benchmark fails.`,
  );
  return { comparisons, details: { plan, runs } };
}

// ---------------------------------------------------------------------------------------------
// 3. Grow 1 -> 2 workers under load

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
/** Records of slots that stay put must not notice the move: their p99 latency during it. */
const STABLE_P99_TARGET_MS = 5;
/** The longest a moving slot's output may stall (the stop-the-world v1 cluster stalled every slot 126 ms). */
const MOVING_GAP_TARGET_MS = 50;
/** The engine's default slot count; growing 1 -> 2 gives the new worker the upper half. */
const FIRST_MOVING_SLOT = SLOT_COUNT / 2;
const TICK_MS = 1;
const LOAD_TIMEOUT_MS = 5 * 60_000;
const MOVE_TIMEOUT_MS = 5 * 60_000;
const DRAIN_TIMEOUT_MS = 30_000;

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

/** Latency figures of one class of slots (moving or staying) over one window. */
interface ClassFigures {
  /** Steady records of the class sent in the window, and how many of them were answered. */
  records: number;
  answered: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /**
   * The longest output gap of a slot of the class: over the records sent in the window, the
   * longest time from when a record's slot owed output (the record's send, or its slot's previous
   * record's output if that came later) to that record's output. A frozen slot shows as one gap
   * as long as it held the record; records queued behind it add nothing.
   */
  gapMs: number;
  /** When that gap began, in seconds from the window's start. */
  gapAtSec: number;
}

interface WindowFigures {
  stable: ClassFigures;
  moving: ClassFigures;
  /** The longest time between consecutive arrivals of any output at the sink peer. */
  anyOutputGapMs: number;
  /** The driver's own longest stall (between its ~1 ms timer ticks): a floor under the gaps it can see. */
  driverStallMs: number;
}

interface GrowResult {
  profile: GrowProfile;
  bulkLoadMs: number;
  bulkLoadPerSec: number;
  steadySent: number;
  received: number;
  /** Keys of the moving slots (2048..4095) among the keys loaded. */
  movingKeys: number;
  workerSpawnToMovedMs: number;
  workerSpawnToJoiningMs: number | null;
  joiningToMovedMs: number | null;
  coordinator: { slotsMoved: number; elapsedMs: number; longestPauseMs: number; epoch: number } | null;
  /** "worker joining" (or the worker's start, if that line was not seen) to "slots moved". */
  moveWindowMs: number;
  baselineWindowMs: number;
  during: WindowFigures;
  baseline: WindowFigures;
  /** The joining worker's start-up, before the coordinator heard from it (no move yet; one more busy process). */
  startup: WindowFigures | null;
  pacingLagMsMax: number;
  driverBacklogBytesMax: number;
  sinkConnections: number;
  statusAfter: ClusterStatus | null;
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
  /** Per steady record, by its index: send time, n, slot, the previous steady record of its key and of its slot, latency. */
  private readonly sendMs = new F64List();
  private readonly nOf = new I32List();
  private readonly slotOfRecord = new I32List();
  private readonly previousOfKey = new I32List();
  private readonly previousOfSlot = new I32List();
  private readonly latencyMs = new F64List();
  private readonly lastOfKey: Int32Array;
  private readonly lastOfSlot = new Int32Array(SLOT_COUNT).fill(-1);
  private stopped = false;
  private done: Promise<void> | undefined;

  constructor(
    private readonly socket: Socket,
    private readonly counts: Uint32Array,
    /** The slot of key k<i>, as the engine computes it. */
    private readonly slotOfKey: Uint16Array,
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
            const slot = this.slotOfKey[key]!;
            const index = this.sendMs.length;
            this.sendMs.push(nowMs);
            this.nOf.push(n);
            this.slotOfRecord.push(slot);
            this.previousOfKey.push(this.lastOfKey[key]!);
            this.previousOfSlot.push(this.lastOfSlot[slot]!);
            this.latencyMs.push(Number.NaN);
            this.lastOfKey[key] = index;
            this.lastOfSlot[slot] = index;
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

  /** Latency and output gaps of the records sent in [fromMs, toMs), split by whether their slot moves; unanswered records are left out (the check reports them). */
  classFigures(fromMs: number, toMs: number, moving: boolean): ClassFigures {
    const latencies: number[] = [];
    let records = 0;
    let gapMs = 0;
    let gapStartMs = Number.NaN;
    for (let i = 0; i < this.sendMs.length; i++) {
      const sent = this.sendMs.at(i);
      if (sent < fromMs || sent >= toMs || (this.slotOfRecord.at(i) >= FIRST_MOVING_SLOT) !== moving) continue;
      records++;
      const latency = this.latencyMs.at(i);
      if (Number.isNaN(latency)) continue;
      latencies.push(latency);
      const previous = this.previousOfSlot.at(i);
      const previousOut = previous >= 0 ? this.sendMs.at(previous) + this.latencyMs.at(previous) : Number.NaN;
      const owedFrom = Number.isNaN(previousOut) ? sent : Math.max(sent, previousOut);
      const gap = sent + latency - owedFrom;
      if (gap > gapMs) {
        gapMs = gap;
        gapStartMs = owedFrom;
      }
    }
    latencies.sort((a, b) => a - b);
    return {
      records,
      answered: latencies.length,
      p50Ms: percentileSorted(latencies, 50),
      p99Ms: percentileSorted(latencies, 99),
      maxMs: latencies.length > 0 ? latencies[latencies.length - 1]! : Number.NaN,
      gapMs,
      gapAtSec: (gapStartMs - fromMs) / 1000,
    };
  }
}

async function measureGrow(ctx: BenchContext, errors: string[]): Promise<GrowResult | null> {
  const profile = ctx.quick ? QUICK_GROW : FULL_GROW;
  const counts = new Uint32Array(profile.keys);
  // Which keys move: growing 1 -> 2 gives the new worker slots 2048..4095.
  const slotOfKey = await slotsOfKeys(profile.keys);
  let movingKeys = 0;
  for (const slot of slotOfKey) if (slot >= FIRST_MOVING_SLOT) movingKeys++;
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
      "--replicas", "1",
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
    const bulkLoadMs = await bulkLoad(sender, counts, collector, engine, LOAD_TIMEOUT_MS);
    ctx.log(`cluster: grow: ${profile.keys} keys loaded in ${(bulkLoadMs / 1000).toFixed(1)} s; steady load ${profile.ratePerSec}/s for ${profile.preSec} s before the join`);

    steady = new SteadyLoad(sender, counts, slotOfKey, profile.ratePerSec, createRandom(7));
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
    let statusAfter: ClusterStatus | null = null;
    try {
      statusAfter = await clusterStatus(ctx.root, clusterAddress);
    } catch (err) {
      errors.push(`grow: ${(err as Error).message}`);
    }

    sender.end();
    const { engine: eng, joined: wrk } = await stopWithJoined(engine, worker, "grow", errors);
    const verdict = checkSequenceOutput(collector, counts, { records: steady.sent, what: "steady" }, "grow", errors);

    // The move window: from the coordinator's "worker joining" line (the move starts) to its
    // "slots moved" line. The baseline: an equally long window of the same steady load just
    // before the worker was started, with no move and no extra process.
    const joinedSeenAt: number | null = joiningAt;
    const moveFrom = joinedSeenAt ?? workerSpawnedAt;
    const moveWindowMs = movedSeenAt - moveFrom;
    const baselineFrom = Math.max(steadyStartedAt + profile.settleSec * 1000, workerSpawnedAt - moveWindowMs);
    const baselineWindowMs = workerSpawnedAt - baselineFrom;
    const load = steady;
    const figures = (fromMs: number, toMs: number): WindowFigures => ({
      stable: load.classFigures(fromMs, toMs, false),
      moving: load.classFigures(fromMs, toMs, true),
      anyOutputGapMs: longestGapMs(collector.arrivalMs, steadyStartedAt, fromMs, toMs).gapMs,
      driverStallMs: longestGapMs(load.tickMs, steadyStartedAt, fromMs, toMs).gapMs,
    });
    return {
      profile,
      bulkLoadMs,
      bulkLoadPerSec: profile.keys / (bulkLoadMs / 1000),
      steadySent: steady.sent,
      received: collector.lines,
      movingKeys,
      workerSpawnToMovedMs: movedSeenAt - workerSpawnedAt,
      workerSpawnToJoiningMs: joinedSeenAt === null ? null : joinedSeenAt - workerSpawnedAt,
      joiningToMovedMs: joinedSeenAt === null ? null : movedSeenAt - joinedSeenAt,
      coordinator: moved,
      moveWindowMs,
      baselineWindowMs,
      during: figures(moveFrom, movedSeenAt),
      baseline: figures(baselineFrom, workerSpawnedAt),
      startup: joinedSeenAt === null ? null : figures(workerSpawnedAt, joinedSeenAt),
      pacingLagMsMax: steady.pacingLagMsMax,
      driverBacklogBytesMax: steady.backlogBytesMax,
      sinkConnections: collector.connections,
      statusAfter,
      verdict,
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
  const link = await measureExchangeLink(ctx, scaling.corpusPath, errors, notes);
  const grow = await measureGrow(ctx, errors);

  const comparisons: Comparison[] = [...scaling.comparisons, ...link.comparisons];
  if (grow !== null) {
    const single = (metric: string, unit: string, value: number | null, better: Comparison["better"]): Comparison => ({ metric, unit, engine: value, baseline: null, ratio: null, better });
    const pair = (metric: string, unit: string, pick: (w: WindowFigures) => number): Comparison => {
      const during = pick(grow.during);
      const before = pick(grow.baseline);
      return { metric, unit, engine: during, baseline: before, ratio: ratio(during, before), better: "lower" };
    };
    const stableP99 = pair("grow: latency p99, slots that do not move (move window vs no-move window)", "ms", (w) => w.stable.p99Ms);
    stableP99.target = `keyway <= ${STABLE_P99_TARGET_MS} ms`;
    stableP99.targetMet = grow.during.stable.p99Ms <= STABLE_P99_TARGET_MS;
    const movingGap = pair("grow: longest output gap of a moving slot (move window vs no-move window)", "ms", (w) => w.moving.gapMs);
    movingGap.target = `keyway <= ${MOVING_GAP_TARGET_MS} ms`;
    movingGap.targetMet = grow.during.moving.gapMs <= MOVING_GAP_TARGET_MS;
    comparisons.push(
      stableP99,
      movingGap,
      pair("grow: latency max, slots that do not move", "ms", (w) => w.stable.maxMs),
      pair("grow: latency p99, moving slots", "ms", (w) => w.moving.p99Ms),
      pair("grow: latency max, moving slots", "ms", (w) => w.moving.maxMs),
      pair("grow: longest gap between any two outputs at the sink", "ms", (w) => w.anyOutputGapMs),
      pair("grow: the driver's own longest stall", "ms", (w) => w.driverStallMs),
      single("grow: worker start -> slots moved", "s", grow.workerSpawnToMovedMs / 1000, "lower"),
      single("grow: coordinator elapsedMs (join -> slots moved)", "s", grow.coordinator === null ? null : grow.coordinator.elapsedMs / 1000, "lower"),
      single("grow: coordinator longestPauseMs", "ms", grow.coordinator?.longestPauseMs ?? null, "lower"),
      single(`grow: bulk load of ${formatCount(grow.profile.keys)} keys, one worker`, "records/s", grow.bulkLoadPerSec, "higher"),
    );
    const workers = grow.statusAfter?.workers ?? [];
    const newcomer = workers.find((w) => w.id !== "w0");
    const d = grow.during;
    const b = grow.baseline;
    const counts = (w: WindowFigures) => `${w.stable.answered}/${w.stable.records} staying, ${w.moving.answered}/${w.moving.records} moving`;
    notes.push(
      `grow: bench/apps/sequence-window.ts (examples/validation/sequence-window.ts) on one worker (\`--cluster-listen\`), tcp source and sink; ${formatCount(grow.profile.keys)} distinct keys loaded first (${(grow.bulkLoadMs / 1000).toFixed(1)} s), then ${formatCount(grow.profile.ratePerSec)} records/s over random keys of them; after ${grow.profile.preSec} s of that, \`keyway worker\` is started to join, and the load goes on ${grow.profile.postSec} s after the coordinator logged "slots moved". Default --migration-chunk-keys.`,
      `grow: the keyway column is the move window, from the coordinator's "worker joining" line to its "slots moved" line (${(grow.moveWindowMs / 1000).toFixed(2)} s; the worker's start-up before it, ${grow.workerSpawnToJoiningMs === null ? "?" : `${(grow.workerSpawnToJoiningMs / 1000).toFixed(2)} s`}, is left out); the baseline column the ${(grow.baselineWindowMs / 1000).toFixed(2)} s of the same load just before the worker started, with no move${grow.baselineWindowMs + 1 < grow.moveWindowMs ? ` (shorter than the move window: only ${grow.profile.preSec - grow.profile.settleSec} s of settled load came before it)` : ""}. Figures are over the steady records sent in each window (answered/sent: move window ${counts(d)}; baseline ${counts(b)}).`,
      `grow: slots are classed by the driver with the engine's own hash (createSlotOf(4096) from src/routing/hash.ts on each key): growing 1 -> 2 gives the new worker slots ${FIRST_MOVING_SLOT}..${SLOT_COUNT - 1}, which hold ${grow.movingKeys} of the ${grow.profile.keys} keys. Latency is send -> that record's output at the sink peer, on the driver's one clock. A moving slot's output gap: the longest time a slot owed output (from a record's send, or its slot's previous output if later) until that record's output came; a frozen slot shows as one gap as long as it held the record (longest in the move window began ${d.moving.gapAtSec.toFixed(2)} s into it). The stop-the-world v1 cluster stalled every slot about 126 ms. The gap between any two outputs and the driver's own stall (its ~1 ms ticks late) are floors: a stall of the driver shows as a gap too.`,
      `grow: during the worker's start-up (before "worker joining"; one more busy process, no move yet): ${grow.startup === null ? "n/a" : `staying slots p99 ${grow.startup.stable.p99Ms.toFixed(2)} ms, max ${grow.startup.stable.maxMs.toFixed(1)} ms; moving slots p99 ${grow.startup.moving.p99Ms.toFixed(2)} ms, max ${grow.startup.moving.maxMs.toFixed(1)} ms`}. Staying slots' longest output gap: move window ${d.stable.gapMs.toFixed(1)} ms, baseline ${b.stable.gapMs.toFixed(1)} ms.`,
      `grow: coordinator: ${grow.coordinator === null ? "n/a" : `${grow.coordinator.slotsMoved} slots moved, elapsedMs ${grow.coordinator.elapsedMs}, longestPauseMs ${grow.coordinator.longestPauseMs}, epoch ${grow.coordinator.epoch}`}; after the move (\`keyway cluster status --json\`): ${workers.map((w) => `${w.id} ${w.slots} slots ${w.keys} keys`).join(", ") || "status n/a"}${newcomer === undefined ? "" : newcomer.keys === grow.movingKeys ? ", the new worker's keys as many as the driver classed as moving" : `; THE NEW WORKER HOLDS ${newcomer.keys} KEYS, THE DRIVER CLASSED ${grow.movingKeys} AS MOVING: the split by class above is not to be trusted`}.`,
      `grow: ${grow.received} outputs for ${grow.profile.keys + grow.steadySent} records; sequence-window check ${grow.verdict.ok ? `ok (${grow.verdict.outputs} outputs over ${grow.verdict.keys} keys, none lost, duplicated or reordered)` : "FAILED"}. Driver pacing lag at worst ${grow.pacingLagMsMax.toFixed(1)} ms, its socket backlog at worst ${grow.driverBacklogBytesMax} B; the sink connected ${grow.sinkConnections} time(s).`,
    );
  }

  return {
    name: "cluster",
    title: "Cluster: word count on 2 workers vs 1, the exchange link vs a raw gRPC stream, growing 1 -> 2 under load",
    ok: errors.length === 0,
    errors,
    notes,
    comparisons,
    details: { scaling: scaling.details, exchangeLink: link.details, grow },
    durationMs: performance.now() - startedAt,
  };
}
