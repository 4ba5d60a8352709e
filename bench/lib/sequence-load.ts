/**
 * Driving bench/apps/sequence-window.ts (input "k<i> <n>", output "k<i> <last four n>") over TCP
 * from the bench process: the sink peer that parses every output as it arrives, the bulk load of
 * distinct keys, and the engine's slot of each key. Shared by the cluster and replication
 * benchmarks.
 */
import type { Socket } from "node:net";
import { checkSequenceWindows, type Verdict } from "../../examples/validation/check.ts";
import { createSlotOf } from "../../src/routing/hash.ts";
import type { MeasuredChild } from "./child.ts";
import { waitUntil } from "./engine-child.ts";
import { writeWithBackpressure } from "./net.ts";

/** The engine's default slot count. */
export const SLOT_COUNT = 4096;
const BULK_LINES_PER_WRITE = 10_000;

/** A growing typed array of numbers, off the JS heap's object graph so the driver's GCs stay short. */
class NumberList<A extends Float64Array | Int32Array> {
  data: A;
  length = 0;
  constructor(private readonly allocate: (length: number) => A) {
    this.data = allocate(1 << 16);
  }
  push(value: number): void {
    if (this.length === this.data.length) {
      const bigger = this.allocate(this.data.length * 2);
      bigger.set(this.data);
      this.data = bigger;
    }
    this.data[this.length++] = value;
  }
  at(i: number): number {
    return this.data[i]!;
  }
}

export class F64List extends NumberList<Float64Array> {
  constructor() {
    super((length) => new Float64Array(length));
  }
}

export class I32List extends NumberList<Int32Array> {
  constructor() {
    super((length) => new Int32Array(length));
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
 * raw chunks kept for the checker, so the driver itself stays light while it measures gaps. Each
 * connection has its own parser: a sink that reconnects after its process died may have left a
 * partial line on the old one, which must not run into the new one's first line.
 */
export class SinkCollector {
  lines = 0;
  malformed = 0;
  connections = 0;
  /** Arrival time of each chunk that completed at least one line. */
  readonly arrivalMs = new F64List();
  private readonly chunks: Buffer[] = [];
  private readonly sockets = new Set<Socket>();

  /** onOutput gets each line's key, the last n of its window and the one before it (-1 when the window has one). */
  constructor(private readonly onOutput: (key: number, n: number, nowMs: number, previous: number) => void) {}

  attach(socket: Socket): void {
    this.connections++;
    this.sockets.add(socket);
    socket.setNoDelay(true);
    // Parser state, kept across chunks: 0 expects "k", 1 in the key's digits, 2 in the window.
    let phase = 0;
    let key = 0;
    let last = 0;
    let previous = -1;
    let bad = false;
    socket.on("data", (chunk: Buffer) => {
      const nowMs = performance.now();
      this.chunks.push(chunk);
      const before = this.lines;
      for (let i = 0; i < chunk.length; i++) {
        const c = chunk[i]!;
        if (c === NL) {
          if (bad || phase !== 2) this.malformed++;
          else this.onOutput(key, last, nowMs, previous);
          this.lines++;
          phase = 0;
          key = 0;
          last = 0;
          previous = -1;
          bad = false;
        } else if (phase === 0) {
          if (c === 0x6b /* k */) phase = 1;
          else bad = true;
        } else if (phase === 1) {
          if (c >= ZERO && c <= NINE) key = key * 10 + (c - ZERO);
          else if (c === SPACE) phase = 2;
          else bad = true;
        } else if (c === COMMA) {
          previous = last;
          last = 0;
        } else if (c >= ZERO && c <= NINE) {
          last = last * 10 + (c - ZERO);
        } else {
          bad = true;
        }
      }
      if (this.lines > before) this.arrivalMs.push(nowMs);
    });
    socket.on("error", () => socket.destroy());
    socket.on("close", () => this.sockets.delete(socket));
  }

  text(): string {
    return Buffer.concat(this.chunks).toString("latin1");
  }

  closeAll(): void {
    for (const socket of this.sockets) socket.destroy();
  }
}

/** The slot of every bulk-loaded key k0..k(n-1), with the engine's own hash (top 12 bits of xxhash64 of its UTF-8). */
export async function slotsOfKeys(keys: number): Promise<Uint16Array> {
  const slotOf = await createSlotOf(SLOT_COUNT);
  const slots = new Uint16Array(keys);
  for (let k = 0; k < keys; k++) slots[k] = slotOf(`k${k}`);
  return slots;
}

/**
 * Bulk load: every key k0..k(counts.length - 1) once ("k<i> 1"), as fast as the engine takes it,
 * then waits for all their outputs (the collector counts from zero). Returns the time it took.
 */
export async function bulkLoad(sender: Socket, counts: Uint32Array, collector: SinkCollector, engine: MeasuredChild, timeoutMs: number): Promise<number> {
  const keys = counts.length;
  const startedAt = performance.now();
  for (let first = 0; first < keys; first += BULK_LINES_PER_WRITE) {
    let text = "";
    for (let k = first; k < Math.min(keys, first + BULK_LINES_PER_WRITE); k++) {
      counts[k] = 1;
      text += `k${k} 1\n`;
    }
    await writeWithBackpressure(sender, text);
  }
  await waitUntil(() => collector.lines >= keys, engine, timeoutMs, "done with the bulk load").catch((err: Error) => {
    throw new Error(`${err.message} (${collector.lines}/${keys} outputs)`);
  });
  return performance.now() - startedAt;
}

/**
 * The end of a run that bulk-loaded counts.length keys and then sent `later` more records: every
 * record answered once, no malformed line, and every key ending at the count the driver sent it
 * with every window in between right (examples/validation/check.ts). Problems go to errors,
 * prefixed with `who`.
 */
export function checkSequenceOutput(collector: SinkCollector, counts: Uint32Array, later: { records: number; what: string }, who: string, errors: string[]): Verdict {
  const keys = counts.length;
  const total = keys + later.records;
  if (collector.malformed > 0) errors.push(`${who}: ${collector.malformed} malformed output lines`);
  if (collector.lines !== total) errors.push(`${who}: received ${collector.lines} outputs for ${total} records sent (${keys} bulk + ${later.records} ${later.what})`);
  const expected = new Map<string, number>();
  for (let k = 0; k < keys; k++) expected.set(`k${k}`, counts[k]!);
  const verdict = checkSequenceWindows(collector.text(), expected);
  if (!verdict.ok) errors.push(`${who}: OUTPUT WRONG (sequence-window check): ${verdict.problems.slice(0, 5).join("; ")}`);
  return { ...verdict, problems: verdict.problems.slice(0, 20) };
}
