/**
 * What the protocol benchmark's four child processes share: the record format, an
 * order-independent checksum, a receiver that proves every record arrived exactly once (and times
 * it), and a pacer for a fixed offered rate.
 *
 * A record is the text `k<seq % 1000>,<seq>,<sentAtUs>` (about 25 bytes): a key field for keyBy,
 * the record's index 0..N-1, and when it was handed to the sender, in microseconds of
 * CLOCK_MONOTONIC (process.hrtime). That clock is one clock for every process on the machine, so
 * the receiving process subtracts the stamp from its own reading to get a latency.
 */

import { decimal } from "../../src/util/decimal.ts";

export const KEY_COUNT = 1000;

/** Microseconds on the machine-wide monotonic clock (comparable across processes). */
export function nowUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

/** decimal(): with `${seq}` every record's numbers would outlive the sender's young generation (see there). */
export function recordText(seq: number, stampUs: number): string {
  return `k${decimal(seq % KEY_COUNT)},${decimal(seq)},${decimal(stampUs)}`;
}

/** FNV-1a of an ASCII string (the record texts are ASCII, so this equals fnvBytes of its UTF-8). */
export function fnvText(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

export function fnvBytes(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i]!, 0x01000193);
  return h >>> 0;
}

/** Sum and xor of every record's FNV-1a: independent of order, changed by any lost, extra or altered record. */
export class Checksum {
  sum = 0;
  xor = 0;
  add(hash: number): void {
    this.sum = (this.sum + hash) >>> 0;
    this.xor = (this.xor ^ hash) >>> 0;
  }
  toString(): string {
    return `${this.sum.toString(16).padStart(8, "0")}${this.xor.toString(16).padStart(8, "0")}`;
  }
}

export interface ReceiverReport {
  expected: number;
  /** Distinct records received. */
  received: number;
  duplicates: number;
  malformed: number;
  checksum: string;
  /** Messages (SinkBatch or SourceRequest) that carried records. */
  messages: number;
  /** hrtime (ns) of the first record's arrival, of the arrival that crossed 10% of `expected`, and of the last. */
  firstNs: number;
  windowStartNs: number;
  windowStartCount: number;
  lastNs: number;
  /** Latency of the records with seq >= firstMeasured, in ms, as received. */
  latency: LatencySummary | null;
  /** The highest latency among the warm-up records (seq < firstMeasured), in ms; 0 without latencies. */
  warmupLatencyMaxMs: number;
}

export interface LatencySummary {
  count: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

const COMMA = 44;
const ZERO = 48;

/**
 * Collects records from any transport. Each message is handed over as a list of value bytes with
 * one arrival time: every record in a message reached the process at the same moment.
 */
export class Receiver {
  received = 0;
  duplicates = 0;
  malformed = 0;
  messages = 0;
  firstNs = 0;
  windowStartNs = 0;
  windowStartCount = 0;
  lastNs = 0;
  readonly checksum = new Checksum();
  private readonly seen: Uint8Array;
  private readonly latenciesMs: Float64Array | null;
  private measured = 0;
  private warmupLatencyMaxMs = 0;
  private readonly windowAt: number;

  constructor(
    readonly expected: number,
    /** Records with seq below this are warm-up: not in the latency figures. */
    private readonly firstMeasured: number,
    keepLatencies: boolean,
  ) {
    this.seen = new Uint8Array(expected);
    this.latenciesMs = keepLatencies ? new Float64Array(Math.max(0, expected - firstMeasured)) : null;
    this.windowAt = Math.max(1, Math.floor(expected / 10));
  }

  get complete(): boolean {
    return this.received >= this.expected;
  }

  /** One message's record values; returns true once every record has arrived. */
  take(values: ReadonlyArray<Uint8Array>): boolean {
    const nowNs = Number(process.hrtime.bigint());
    const nowUsValue = nowNs / 1000;
    if (this.messages === 0) this.firstNs = nowNs;
    this.messages++;
    for (const value of values) {
      // Parse "k<key>,<seq>,<stampUs>" from the bytes, without decoding them to a string.
      let i = 0;
      while (i < value.length && value[i] !== COMMA) i++;
      i++;
      let seq = 0;
      let digits = 0;
      for (; i < value.length && value[i] !== COMMA; i++, digits++) seq = seq * 10 + (value[i]! - ZERO);
      i++;
      let stampUs = 0;
      let stampDigits = 0;
      for (; i < value.length; i++, stampDigits++) stampUs = stampUs * 10 + (value[i]! - ZERO);
      if (value[0] !== 107 /* k */ || digits === 0 || stampDigits === 0 || !(seq >= 0 && seq < this.expected)) {
        this.malformed++;
        continue;
      }
      if (this.seen[seq] !== 0) {
        this.duplicates++;
        continue;
      }
      this.seen[seq] = 1;
      this.received++;
      this.checksum.add(fnvBytes(value));
      if (this.latenciesMs !== null) {
        const latencyMs = (nowUsValue - stampUs) / 1000;
        if (seq >= this.firstMeasured) this.latenciesMs[this.measured++] = latencyMs;
        else if (latencyMs > this.warmupLatencyMaxMs) this.warmupLatencyMaxMs = latencyMs;
      }
    }
    if (this.windowStartNs === 0 && this.received >= this.windowAt) {
      this.windowStartNs = nowNs;
      this.windowStartCount = this.received;
    }
    if (this.received >= this.expected && this.lastNs === 0) this.lastNs = nowNs;
    return this.complete;
  }

  report(): ReceiverReport {
    return {
      expected: this.expected,
      received: this.received,
      duplicates: this.duplicates,
      malformed: this.malformed,
      checksum: this.checksum.toString(),
      messages: this.messages,
      firstNs: this.firstNs,
      windowStartNs: this.windowStartNs,
      windowStartCount: this.windowStartCount,
      lastNs: this.lastNs,
      latency: this.latenciesMs === null ? null : summarize(this.latenciesMs.subarray(0, this.measured)),
      warmupLatencyMaxMs: this.warmupLatencyMaxMs,
    };
  }
}

function summarize(latencies: Float64Array): LatencySummary | null {
  if (latencies.length === 0) return null;
  const sorted = latencies.sort();
  const at = (p: number) => sorted[Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length))) - 1]!;
  let sum = 0;
  for (const v of sorted) sum += v;
  return { count: sorted.length, p50: at(50), p99: at(99), p999: at(99.9), max: sorted[sorted.length - 1]!, mean: sum / sorted.length };
}

/** What a sender reports on stdout when it is done. */
export interface SenderReport {
  sent: number;
  checksum: string;
  /** hrtime (ns) of the first and last record handed to the transport. */
  firstSendNs: number;
  lastSendNs: number;
  /** Fixed-rate mode: how far the sends fell behind schedule at worst (ms). */
  pacingLagMsMax: number;
}

/** How a sender is driven: as fast as the transport takes records, or at a fixed rate. */
export type SendPlan =
  | { mode: "throughput"; records: number; batch: number }
  | { mode: "rate"; records: number; batch: number; ratePerSec: number };

/** Node's timers fire no faster than every ~1 ms; each tick sends every record due by then. */
const TICK_MS = 1;
/** In throughput mode, one clock read per this many records: the stamp is not what is measured there. */
const STAMP_EVERY = 64;

/**
 * Hands records 0..N-1 to `emit` (in order, `emit(seq, text)` per record; `flush()` after each
 * tick's records in rate mode) and returns the sender's report. `emit` may return a promise to
 * push back (it is awaited only when it returns one).
 */
export async function sendAll(
  plan: SendPlan,
  emit: (seq: number, text: string) => void | Promise<unknown>,
  flush: () => void | Promise<unknown>,
): Promise<SenderReport> {
  const checksum = new Checksum();
  let firstSendNs = 0;
  let pacingLagMsMax = 0;
  if (plan.mode === "throughput") {
    firstSendNs = Number(process.hrtime.bigint());
    let stamp = nowUs();
    for (let seq = 0; seq < plan.records; seq++) {
      if (seq % STAMP_EVERY === 0) stamp = nowUs();
      const text = recordText(seq, stamp);
      checksum.add(fnvText(text));
      const pushed = emit(seq, text);
      if (pushed !== undefined) await pushed;
    }
    const flushed = flush();
    if (flushed !== undefined) await flushed;
  } else {
    const startMs = performance.now();
    const msPerRecord = 1000 / plan.ratePerSec;
    let seq = 0;
    firstSendNs = Number(process.hrtime.bigint());
    while (seq < plan.records) {
      const nowMs = performance.now();
      const due = Math.min(plan.records, Math.floor((nowMs - startMs) / msPerRecord));
      if (due > seq) {
        pacingLagMsMax = Math.max(pacingLagMsMax, nowMs - (startMs + seq * msPerRecord));
        // Stamped when handed over, not when scheduled: timer granularity is not latency.
        const stamp = nowUs();
        for (; seq < due; seq++) {
          const text = recordText(seq, stamp);
          checksum.add(fnvText(text));
          const pushed = emit(seq, text);
          if (pushed !== undefined) await pushed;
        }
        const flushed = flush();
        if (flushed !== undefined) await flushed;
      }
      if (seq < plan.records) await new Promise((resolve) => setTimeout(resolve, TICK_MS));
    }
  }
  return { sent: plan.records, checksum: checksum.toString(), firstSendNs, lastSendNs: Number(process.hrtime.bigint()), pacingLagMsMax };
}

/** CPU seconds (user + system, all threads) this process used since `start` (a process.cpuUsage()). */
export function cpuSecSince(start: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1e6;
}

/** The child processes take one JSON argument and print one JSON line on stdout when done. */
export function parseArg<T>(): T {
  const arg = process.argv[2];
  if (arg === undefined) {
    process.stderr.write("usage: node --import tsx <script> '<json options>'\n");
    process.exit(2);
  }
  return JSON.parse(arg) as T;
}

export const RESULT_PREFIX = "RESULT ";

export function printResult(value: unknown): void {
  process.stdout.write(`${RESULT_PREFIX}${JSON.stringify(value)}\n`);
}

/** The last RESULT line of a child's stdout, parsed; null when there is none. */
export function readResult<T>(stdout: string): T | null {
  const lines = stdout.split("\n").filter((l) => l.startsWith(RESULT_PREFIX));
  if (lines.length === 0) return null;
  return JSON.parse(lines[lines.length - 1]!.slice(RESULT_PREFIX.length)) as T;
}
