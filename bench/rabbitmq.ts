/**
 * RabbitMQ -> Python source -> engine, beside pika's own consume-and-ack rate from the same
 * queue with no engine, in the same run (issue 4), plus the Python SDK's records/s to the engine at
 * 1 and 100 records per message.
 *
 * - Baseline: bench/python/pika_consume.py, a plain pika consumer (manual ack per message, the
 *   same prefetch), timed from its first delivery to its last ack.
 * - Engine: examples/rabbitmq/rabbitmq_source.py into `keyway run examples/rabbitmq/app.ts`
 *   (JSON decode, keyed per-user count and sum, outputs to a file sink), timed the same way: first
 *   delivery to the ack of the last message, which the source sends only once the engine reported
 *   it committed. Run without --data-dir (commits follow processing) and, as a note, with it
 *   (commits follow checkpoints, so the prefetch bounds the rate: prefetch / checkpoint interval).
 * - SDK: bench/python/sdk_source_send.py sends small JSON records and waits for their commit.
 *
 * Needs RabbitMQ (scripts/rabbitmq-start.sh starts it when it is not running; stopped again after
 * if this run started it) and Debian's python3 packages (scripts/install-test-deps.sh).
 * Run alone: `node --import tsx bench/rabbitmq.ts [--quick]`.
 */
import { execFile, spawn } from "node:child_process";
import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import type { BenchContext } from "./lib/context.ts";
import type { BenchResult, Comparison } from "./lib/report.ts";
import { freePort } from "./lib/net.ts";
import { ratio } from "./lib/stats.ts";

const execFileP = promisify(execFile);
const PYTHON = "/usr/bin/python3";
const PREFETCH = 10_000;
const RATIO_TARGET = 0.5;

interface Sizes {
  messages: number;
  sdkRecordsBatched: number;
  sdkRecordsSingle: number;
}
const FULL: Sizes = { messages: 100_000, sdkRecordsBatched: 300_000, sdkRecordsSingle: 20_000 };
const QUICK: Sizes = { messages: 10_000, sdkRecordsBatched: 30_000, sdkRecordsSingle: 2_000 };

interface Proc {
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
  kill(signal?: NodeJS.Signals): void;
}

function start(cmd: string, args: string[], cwd: string): Proc {
  const child = spawn(cmd, args, { cwd, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
  child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr = (stderr + d).slice(-32_768)));
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>(
    (resolve, reject) => {
      child.on("error", reject);
      child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
    },
  );
  return { done, kill: (signal = "SIGTERM") => void child.kill(signal) };
}

async function python(root: string, script: string, args: string[]): Promise<string> {
  const r = await start(PYTHON, ["-u", join(root, script), ...args], root).done;
  if (r.code !== 0) throw new Error(`${script} exited ${r.code ?? r.signal}: ${r.stderr.slice(-2000)}`);
  return r.stdout;
}

function engine(ctx: BenchContext, port: number, out: string, extra: string[] = []): Proc {
  return start(process.execPath, [join(ctx.root, "bin/keyway.js"), "run", "examples/rabbitmq/app.ts",
    "--source", "payments=connector", "--sink", `totals=file:${out}`, "--listen", `127.0.0.1:${port}`,
    "--no-progress", "--log-level", "warn", ...extra], ctx.root);
}

async function stopEngine(e: Proc): Promise<void> {
  e.kill("SIGTERM");
  const timer = setTimeout(() => e.kill("SIGKILL"), 10_000);
  await e.done;
  clearTimeout(timer);
}

/** Messages/s of the example's source into a fresh engine, first delivery to last ack. */
async function endToEnd(ctx: BenchContext, queue: string, messages: number, dir: string, engineArgs: string[]) {
  const port = await freePort();
  const e = engine(ctx, port, join(dir, `totals-${port}.jsonl`), engineArgs);
  try {
    const stats = join(dir, `source-${port}.json`);
    await python(ctx.root, "examples/rabbitmq/rabbitmq_source.py", ["--engine", `127.0.0.1:${port}`, "--queue", queue,
      "--prefetch", String(PREFETCH), "--exit-when-idle-s", "1", "--stats-json", stats, "--log-level", "WARNING"]);
    const s = JSON.parse(readFileSync(stats, "utf8")) as { messages: number; acked: number; first_delivery_to_last_ack_s: number };
    if (s.acked !== messages) throw new Error(`the source acked ${s.acked} of ${messages} messages`);
    return { rate: messages / s.first_delivery_to_last_ack_s, seconds: s.first_delivery_to_last_ack_s };
  } finally {
    await stopEngine(e);
  }
}

async function sdkRate(ctx: BenchContext, count: number, perMessage: number, dir: string) {
  const port = await freePort();
  const e = engine(ctx, port, join(dir, `sdk-${port}.jsonl`));
  try {
    const out = await python(ctx.root, "bench/python/sdk_source_send.py", ["--engine", `127.0.0.1:${port}`, "--target", "payments",
      "--count", String(count), "--per-message", String(perMessage),
      "--linger-s", perMessage === 1 ? "0" : "0.002", "--replay-buffer-records", "50000"]);
    const run = JSON.parse(out.trim().split("\n").pop()!) as { records: number; seconds: number; cpu_s: number };
    return { ...run, records_per_s: run.records / run.seconds };
  } finally {
    await stopEngine(e);
  }
}

export async function runRabbitMQ(ctx: BenchContext): Promise<BenchResult> {
  const startedAt = performance.now();
  const sizes = ctx.quick ? QUICK : FULL;
  const errors: string[] = [];
  const notes: string[] = [];
  const details: Record<string, unknown> = { sizes, prefetch: PREFETCH };
  const dir = join(ctx.dataDir, "rabbitmq");
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });

  const { stderr: startLog } = await execFileP("bash", [join(ctx.root, "scripts/rabbitmq-start.sh")], { timeout: 240_000 });
  const startedBroker = !/already running/.test(startLog);
  const queue = `bench-payments-${process.pid}`;
  const publish = () => python(ctx.root, "examples/rabbitmq/publish.py", ["--queue", queue, "--count", String(sizes.messages), "--users", "1000"]);
  const comparisons: Comparison[] = [];
  try {
    await python(ctx.root, "examples/rabbitmq/queues.py", ["reset", queue]);

    ctx.log(`rabbitmq: publishing ${sizes.messages} messages; pika consume-and-ack baseline`);
    await publish();
    const base = JSON.parse((await python(ctx.root, "bench/python/pika_consume.py", ["--queue", queue,
      "--count", String(sizes.messages), "--prefetch", String(PREFETCH)])).trim()) as { first_delivery_to_last_ack_s: number };
    const baseRate = sizes.messages / base.first_delivery_to_last_ack_s;
    await publish();
    const bulk = JSON.parse((await python(ctx.root, "bench/python/pika_consume.py", ["--queue", queue,
      "--count", String(sizes.messages), "--prefetch", String(PREFETCH), "--ack-every", "100"])).trim()) as { first_delivery_to_last_ack_s: number };
    const bulkRate = sizes.messages / bulk.first_delivery_to_last_ack_s;

    ctx.log("rabbitmq: the same through the Python source into the engine");
    await publish();
    const e2e = await endToEnd(ctx, queue, sizes.messages, dir, []);

    ctx.log("rabbitmq: again with --data-dir (acks follow checkpoints)");
    await publish();
    const durable = await endToEnd(ctx, queue, sizes.messages, dir, ["--data-dir", join(dir, "data"), "--checkpoint-interval-ms", "1000"]);

    ctx.log("rabbitmq: Python SDK records/s at 100 and 1 records per message");
    const batched = await sdkRate(ctx, sizes.sdkRecordsBatched, 100, dir);
    const single = await sdkRate(ctx, sizes.sdkRecordsSingle, 1, dir);

    const r = ratio(e2e.rate, baseRate);
    comparisons.push({
      metric: "RabbitMQ -> Python source -> engine, vs pika consume+ack", unit: "msg/s", engine: e2e.rate, baseline: baseRate,
      ratio: r, better: "higher", target: `>= ${RATIO_TARGET}x the plain consumer`, targetMet: r !== null && r >= RATIO_TARGET,
    });
    comparisons.push({
      metric: "same, vs pika acking multiple=True every 100 messages", unit: "msg/s", engine: e2e.rate, baseline: bulkRate,
      ratio: ratio(e2e.rate, bulkRate), better: "higher",
    });
    comparisons.push({
      metric: "same, engine with --data-dir (1 s checkpoints)", unit: "msg/s", engine: durable.rate, baseline: baseRate,
      ratio: ratio(durable.rate, baseRate), better: "higher",
    });
    comparisons.push({ metric: "Python SDK -> engine, 100 records/message", unit: "records/s", engine: batched.records_per_s, baseline: null, ratio: null, better: "higher" });
    comparisons.push({ metric: "Python SDK -> engine, 1 record/message", unit: "records/s", engine: single.records_per_s, baseline: null, ratio: null, better: "higher" });
    details.baseline = base;
    details.baselineBulkAck = bulk;
    details.endToEnd = e2e;
    details.endToEndDataDir = durable;
    details.sdkBatched = batched;
    details.sdkSingle = single;
    notes.push(`prefetch ${PREFETCH} on both sides; the baseline acks each message, the source acks (multiple) on each commit`);
    notes.push("with --data-dir, acks wait for a checkpoint, so the rate is bounded by prefetch / checkpoint interval");
  } catch (err) {
    errors.push(err instanceof Error ? err.message : String(err));
  } finally {
    await python(ctx.root, "examples/rabbitmq/queues.py", ["reset", queue]).catch(() => undefined);
    if (startedBroker) await execFileP("bash", [join(ctx.root, "scripts/rabbitmq-stop.sh")]).catch(() => undefined);
  }
  return {
    name: "rabbitmq",
    title: "RabbitMQ source (Python SDK)",
    ok: errors.length === 0,
    errors,
    notes,
    comparisons,
    details,
    durationMs: performance.now() - startedAt,
  };
}

// Run alone: node --import tsx bench/rabbitmq.ts [--quick]
if (process.argv[1]?.endsWith("rabbitmq.ts")) {
  const root = join(import.meta.dirname, "..");
  const quick = process.argv.includes("--quick");
  const result = await runRabbitMQ({
    root,
    dataDir: join(root, "bench/.data"),
    quick,
    log: (m) => process.stderr.write(`[bench] ${m}\n`),
  });
  for (const c of result.comparisons) {
    const fmt = (v: number | null) => (v === null ? "-" : Math.round(v).toLocaleString("en-US"));
    process.stdout.write(`${c.metric}: ${fmt(c.engine)} ${c.unit}${c.baseline === null ? "" : ` vs ${fmt(c.baseline)} (ratio ${c.ratio?.toFixed(2)})`}\n`);
  }
  for (const e of result.errors) process.stdout.write(`error: ${e}\n`);
  process.exitCode = result.ok ? 0 : 1;
}
