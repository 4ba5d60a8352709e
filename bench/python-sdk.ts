/**
 * The Python SDK's source against a plain grpcio client sending the same SourceRequest messages
 * (issue 14 item 3), in the same run, both into the same minimal receiver in this process:
 *
 * - keyway: bench/python/sdk_source_send.py, a `Source` (records_per_batch = the size under test,
 *   other options at their defaults) sending N records on one stream and waiting for their commit.
 * - baseline: bench/python/raw_source_send.py, one grpcio `Source` call built on the generated
 *   messages: Hello, OpenStream, RecordBatches within the credits granted, nothing else.
 * - receiver: a grpc-js server speaking the engine's side of the source role (Welcome with the
 *   engine's default credits and limits, StreamOpened, one Credits and one Committed per batch),
 *   which walks each batch's bytes instead of decoding it into objects, so it stays far from a
 *   full core and the figure is the Python process's.
 *
 * records/s is timed at the receiver, from the arrival that completes 10% of the records to the
 * last; the Python process's CPU over the same window comes from /proc. Every record must arrive
 * once, in order, at positions 1..N, carrying the value the senders were given (source_values.py);
 * anything else fails the benchmark.
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { SourceRequestSchema, SourceResponseSchema } from "../src/protocol/gen/keyway/v1/connector_pb.ts";
import type { BenchContext } from "./lib/context.ts";
import { procCpuSec } from "./lib/proc-cpu.ts";
import { bytesBidiMethod } from "./lib/raw-grpc.ts";
import { formatRate, medianRow, type BenchResult, type Comparison } from "./lib/report.ts";

const PYTHON = "/usr/bin/python3";
const SIDES = { sdk: "bench/python/sdk_source_send.py", raw: "bench/python/raw_source_send.py" } as const;
type Side = keyof typeof SIDES;
const PER_MESSAGE = [1, 10, 100, 1000] as const;
type PerMessage = (typeof PER_MESSAGE)[number];
const RATIO_TARGET_AT_100 = 0.7;
/** The engine's defaults (src/protocol/limits.ts): 2 batches of max_batch_records. */
const MAX_BATCH_RECORDS = 10_000;
const INITIAL_CREDITS = 2 * MAX_BATCH_RECORDS;
const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;
const RUN_TIMEOUT_MS = 5 * 60_000;

interface Profile {
  /** Records per run: a few seconds each at the raw client's pace. */
  records: Record<PerMessage, number>;
  rounds: number;
}
// Five rounds: on a shared 2-core machine single runs of the same side differ by up to a quarter.
const FULL: Profile = { records: { 1: 40_000, 10: 200_000, 100: 1_200_000, 1000: 1_600_000 }, rounds: 5 };
const QUICK: Profile = { records: { 1: 4_000, 10: 20_000, 100: 60_000, 1000: 80_000 }, rounds: 1 };

/** The values source_values.py gives both senders: record i carries VALUES[i % 1000]. */
const VALUES = Array.from({ length: 1000 }, (_, j) => Buffer.from(`{"user": "u${j}", "amount": ${(j % 10) + 1}}`));

interface Run {
  side: Side;
  perMessage: PerMessage;
  round: number;
  records: number;
  recordsPerSec: number;
  /** The Python process's CPU (every thread) over the timed window, per record. */
  pythonCpuUsPerRecord: number | null;
  /** This process's (the receiver's) CPU over the same window, per record. */
  receiverCpuUsPerRecord: number;
  receiverCpuShare: number;
  messages: number;
  sender: { seconds: number; cpu_s: number };
}

class Violation extends Error {}

function readVarint(buf: Buffer, at: { i: number }): number {
  let value = 0;
  let scale = 1;
  for (;;) {
    const b = buf[at.i++]!;
    value += (b & 0x7f) * scale;
    if (b < 0x80) return value;
    scale *= 128;
  }
}

function varint(value: number): number[] {
  const out: number[] = [];
  while (value > 0x7f) {
    out.push((value & 0x7f) | 0x80);
    value = Math.floor(value / 128);
  }
  out.push(value);
  return out;
}

/** SourceResponse{credits: Credits{records}}. */
function creditsMessage(records: number): Buffer {
  const inner = [0x08, ...varint(records)];
  return Buffer.from([0x1a, inner.length, ...inner]);
}

/** SourceResponse{committed: Committed{stream, position}}. */
function committedMessage(stream: Buffer, position: number): Buffer {
  const inner = Buffer.concat([Buffer.from([0x0a, ...varint(stream.length)]), stream, Buffer.from([0x10, ...varint(position)])]);
  return Buffer.concat([Buffer.from([0x22, ...varint(inner.length)]), inner]);
}

/** What one receiver has seen; `onRecords` is told each batch's running total. */
export class Receiver {
  received = 0;
  messages = 0;
  private credits = INITIAL_CREDITS;
  private stream: Buffer | null = null;
  failure: string | null = null;

  constructor(private readonly onRecords: (total: number) => void) {}

  /** One request; returns the responses to write. Throws a Violation on anything wrong. */
  handle(buf: Buffer): Buffer[] {
    if (buf[0] === 0x1a) return this.batch(buf);
    const request = fromBinary(SourceRequestSchema, buf);
    const kind = request.kind;
    if (kind.case === "hello") {
      return [Buffer.from(toBinary(SourceResponseSchema, create(SourceResponseSchema, {
        kind: {
          case: "welcome",
          value: {
            sessionId: "bench", version: { major: 1, minor: 0 }, initialCredits: INITIAL_CREDITS,
            limits: { maxBatchRecords: MAX_BATCH_RECORDS, maxMessageBytes: MAX_MESSAGE_BYTES, idempotencyWindow: 100_000, maxStreamsPerSession: 1000, maxStreamsPerSource: 10_000, maxStreamNameBytes: 1024 },
          },
        },
      })))];
    }
    if (kind.case === "open") {
      if (this.stream !== null) throw new Violation(`a second OpenStream (${kind.value.stream})`);
      this.stream = Buffer.from(kind.value.stream);
      return [Buffer.from(toBinary(SourceResponseSchema, create(SourceResponseSchema, {
        kind: { case: "opened", value: { stream: kind.value.stream, resumeAfter: 0n, committed: 0n } },
      })))];
    }
    throw new Violation(`unexpected request ${kind.case ?? "(none)"}`);
  }

  /** Walks SourceRequest{batch: RecordBatch{stream, records}} and checks every record. */
  private batch(buf: Buffer): Buffer[] {
    const at = { i: 1 };
    const end = readVarint(buf, at) + at.i;
    if (end !== buf.length) throw new Violation("a batch message with trailing bytes");
    let count = 0;
    let stream: Buffer | null = null;
    while (at.i < end) {
      const tag = buf[at.i++]!;
      const len = readVarint(buf, at);
      if (tag === 0x0a) {
        stream = buf.subarray(at.i, at.i + len);
        at.i += len;
      } else if (tag === 0x12) {
        this.record(buf, at.i, at.i + len);
        at.i += len;
        count++;
      } else {
        throw new Violation(`unexpected field tag ${tag} in a RecordBatch`);
      }
    }
    if (this.stream === null || stream === null || !stream.equals(this.stream)) throw new Violation("a batch for a stream not open");
    if (count > this.credits) throw new Violation(`a batch of ${count} records with ${this.credits} credits`);
    // Credits go back at once: the engine grants as its pipeline takes records, and here nothing waits.
    this.credits += count;
    this.messages++;
    this.onRecords(this.received);
    return [creditsMessage(count), committedMessage(this.stream, this.received)];
  }

  private record(buf: Buffer, start: number, end: number): void {
    const at = { i: start };
    let position = 0;
    let value: [number, number] | null = null;
    while (at.i < end) {
      const tag = buf[at.i++]!;
      if (tag === 0x08) position = readVarint(buf, at);
      else if (tag === 0x1a) {
        const len = readVarint(buf, at);
        value = [at.i, at.i + len];
        at.i += len;
      } else throw new Violation(`unexpected field tag ${tag} in a Record`);
    }
    const expected = this.received + 1;
    if (position !== expected) throw new Violation(`position ${position} where ${expected} was due`);
    if (value === null || VALUES[(position - 1) % 1000]!.compare(buf, value[0], value[1]) !== 0) {
      throw new Violation(`record ${position} does not carry its value`);
    }
    this.received = expected;
    this.credits--;
  }
}

const SOURCE_METHOD: grpc.ServiceDefinition = { Source: bytesBidiMethod("/keyway.v1.ConnectorService/Source") };

/** A grpc-js server on a free port of 127.0.0.1 whose Source calls each go to `receiverFor()`. */
export async function serve(receiverFor: () => Receiver): Promise<{ port: number; server: grpc.Server }> {
  const server = new grpc.Server();
  server.addService(SOURCE_METHOD, {
    Source: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      const receiver = receiverFor();
      call.on("data", (buf: Buffer) => {
        if (receiver.failure !== null) return;
        try {
          for (const response of receiver.handle(buf)) call.write(response);
        } catch (err) {
          receiver.failure = err instanceof Error ? err.message : String(err);
          call.destroy(err instanceof Error ? err : new Error(String(err)));
        }
      });
      call.on("end", () => call.end());
      call.on("error", () => undefined);
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { port, server };
}

async function runOnce(ctx: BenchContext, side: Side, perMessage: PerMessage, round: number, records: number): Promise<Run> {
  const firstMeasured = Math.ceil(records * 0.1);
  let pid = 0;
  let mark: { at: number; count: number; python: number | null; self: NodeJS.CpuUsage } | null = null;
  let last: { at: number; python: number | null; self: NodeJS.CpuUsage } | null = null;
  const receiver = new Receiver((total) => {
    if (mark === null && total >= firstMeasured) mark = { at: performance.now(), count: total, python: procCpuSec(pid), self: process.cpuUsage() };
    if (total === records) last = { at: performance.now(), python: procCpuSec(pid), self: process.cpuUsage() };
  });
  const { port, server } = await serve(() => receiver);
  try {
    const child = spawn(PYTHON, ["-u", join(ctx.root, SIDES[side]), "--engine", `127.0.0.1:${port}`, "--count", String(records),
      "--per-message", String(perMessage)], { cwd: ctx.root, stdio: ["ignore", "pipe", "pipe"] });
    pid = child.pid ?? 0;
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr = (stderr + d).slice(-8192)));
    const timer = setTimeout(() => child.kill("SIGKILL"), RUN_TIMEOUT_MS);
    const code = await new Promise<number | null>((resolve, reject) => {
      child.on("error", reject);
      child.on("close", (c) => resolve(c));
    });
    clearTimeout(timer);
    if (receiver.failure !== null) throw new Error(`${side} at ${perMessage}/message: ${receiver.failure}`);
    if (code !== 0) throw new Error(`${SIDES[side]} exited ${code}: ${stderr.trim().split("\n").slice(-5).join(" | ")}`);
    if (receiver.received !== records || mark === null || last === null) {
      throw new Error(`${side} at ${perMessage}/message: ${receiver.received} of ${records} records received`);
    }
    const m = mark as { at: number; count: number; python: number | null; self: NodeJS.CpuUsage };
    const l = last as { at: number; python: number | null; self: NodeJS.CpuUsage };
    const measured = records - m.count;
    const seconds = (l.at - m.at) / 1000;
    const selfCpu = (l.self.user - m.self.user + l.self.system - m.self.system) / 1e6;
    return {
      side, perMessage, round, records,
      recordsPerSec: measured / seconds,
      pythonCpuUsPerRecord: m.python === null || l.python === null ? null : ((l.python - m.python) * 1e6) / measured,
      receiverCpuUsPerRecord: (selfCpu * 1e6) / measured,
      receiverCpuShare: selfCpu / seconds,
      messages: receiver.messages,
      sender: JSON.parse(stdout.trim().split("\n").pop()!) as { seconds: number; cpu_s: number },
    };
  } finally {
    server.forceShutdown();
  }
}

export async function runPythonSdk(ctx: BenchContext): Promise<BenchResult> {
  const startedAt = performance.now();
  const profile = ctx.quick ? QUICK : FULL;
  const errors: string[] = [];
  const notes: string[] = [];
  const runs: Run[] = [];
  try {
    for (const perMessage of PER_MESSAGE) {
      for (let round = 0; round < profile.rounds; round++) {
        // Alternate which side goes first, so neither always gets the warmer machine.
        const order: Side[] = round % 2 === 0 ? ["raw", "sdk"] : ["sdk", "raw"];
        for (const side of order) {
          const run = await runOnce(ctx, side, perMessage, round, profile.records[perMessage]);
          ctx.log(`python-sdk: ${side} ${perMessage}/message round ${round + 1}: ${formatRate(run.recordsPerSec)} records/s, ` +
            `python ${run.pythonCpuUsPerRecord?.toFixed(2)} us/record, receiver ${(run.receiverCpuShare * 100).toFixed(0)}% of a core`);
          runs.push(run);
        }
      }
    }
  } catch (err) {
    errors.push(err instanceof Error ? err.message : String(err));
  }
  const comparisons: Comparison[] = [];
  for (const perMessage of PER_MESSAGE) {
    const these = runs.filter((r) => r.perMessage === perMessage);
    if (these.length === 0) continue;
    const isSdk = (r: Run) => r.side === "sdk";
    const rate = medianRow(these, isSdk, `records/s, ${perMessage} records/message`, "records/s", (r) => r.recordsPerSec, "higher");
    if (perMessage === 100) {
      rate.target = `>= ${RATIO_TARGET_AT_100}x raw grpcio`;
      rate.targetMet = rate.ratio !== null && rate.ratio >= RATIO_TARGET_AT_100;
    }
    comparisons.push(rate);
    comparisons.push(medianRow(these, isSdk, `Python CPU per record, ${perMessage} records/message`, "us", (r) => r.pythonCpuUsPerRecord, "lower"));
    const share = (side: Side) => Math.max(...these.filter((r) => r.side === side).map((r) => r.receiverCpuShare));
    notes.push(`${perMessage} records/message: the receiver used at most ${(share("sdk") * 100).toFixed(0)}% (SDK runs) and ` +
      `${(share("raw") * 100).toFixed(0)}% (raw runs) of a core while timed`);
  }
  notes.push("keyway = the Python SDK's Source, baseline = plain grpcio with the generated messages; same receiver, same records");
  return {
    name: "python-sdk",
    title: "Python SDK source vs raw grpcio",
    ok: errors.length === 0,
    errors,
    notes,
    comparisons,
    details: { profile, runs },
    durationMs: performance.now() - startedAt,
  };
}
