/**
 * What the exchange-link benchmark's child processes share (bench/apps/exchange-peer.ts, the real
 * exchange; bench/baselines/raw-stream-peer.ts, a bare grpc-js bidi stream): the batches they
 * send, an order-dependent signature that proves every batch arrived once and in order, and a
 * receiver that times arrivals.
 *
 * A batch is what a word-count worker sends a peer for its keyed stage: a KeyedBatch (keys,
 * slots, values, no lineage) of ~1000 words, key = value = the word, slot = the word's real slot
 * of 4096. The words are the first words of the benchmark corpus, cut into a fixed set of
 * distinct batches that the sender cycles through; each is encoded with the exchange's own
 * encodeRecords (src/exchange/payload.ts) when it is sent, and decoded with decodeRecords when it arrives, on
 * both sides, so both carry the same payload bytes and pay the same codec.
 */
import { closeSync, openSync, readSync } from "node:fs";
import { emptyKeyedBatch, type KeyedBatch } from "../../src/runtime/dataflow.ts";
import { createKeyHash } from "../../src/routing/hash.ts";

export { cpuSecSince, parseArg, printResult, readResult } from "./protocol-records.ts";

/** How a sender is driven; the receiver gets the same numbers to know when it is done. */
export interface LinkPlan {
  corpusPath: string;
  /** Records per batch (the last words of the corpus head may make a batch shorter; none here). */
  batchRecords: number;
  /** Distinct batches built from the corpus and cycled through. */
  distinctBatches: number;
  /** Batches to send in all. */
  batches: number;
}

/** Batches in flight at once, as the engine's source loop allows (MAX_INFLIGHT_BATCHES). */
export const INFLIGHT_BATCHES_MAX = 64;

/** The app's split (examples/word-count/app.ts). */
function wordsOf(line: string): string[] {
  return line.toLowerCase().split(/[^\p{L}\p{N}]+/u).filter(Boolean);
}

/** The first `count` words of the corpus, reading only as much of its head as that takes. */
function headWords(path: string, count: number): string[] {
  const fd = openSync(path, "r");
  try {
    const words: string[] = [];
    const chunk = Buffer.alloc(1 << 20);
    let carry = "";
    for (;;) {
      const n = readSync(fd, chunk, 0, chunk.length, null);
      if (n === 0) break;
      const lines = (carry + chunk.subarray(0, n).toString("utf8")).split("\n");
      carry = lines.pop()!;
      for (const line of lines) {
        for (const w of wordsOf(line)) words.push(w);
        if (words.length >= count) return words.slice(0, count);
      }
    }
    for (const w of wordsOf(carry)) words.push(w);
    if (words.length < count) throw new Error(`the corpus ${path} has ${words.length} words, ${count} wanted`);
    return words.slice(0, count);
  } finally {
    closeSync(fd);
  }
}

export async function buildBatches(plan: LinkPlan): Promise<KeyedBatch[]> {
  const words = headWords(plan.corpusPath, plan.batchRecords * plan.distinctBatches);
  const hashOf = await createKeyHash();
  const batches: KeyedBatch[] = [];
  for (let b = 0; b < plan.distinctBatches; b++) {
    const keys = words.slice(b * plan.batchRecords, (b + 1) * plan.batchRecords);
    batches.push({ ...emptyKeyedBatch(), keys, hashes: keys.map((k) => hashOf(k)), values: [...keys] });
  }
  return batches;
}

/** FNV-1a of a string's UTF-16 units: enough to tell batches apart. */
function fnv(text: string, h = 0x811c9dc5): number {
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/**
 * Folds each batch into one running hash, in order: a lost, duplicated, reordered or altered
 * batch (its count, first, middle or last key, or slot) changes the result.
 */
export class OrderSignature {
  private h = 0x811c9dc5;
  records = 0;
  batches = 0;
  add(batch: KeyedBatch): void {
    const n = batch.keys.length;
    const mid = n >> 1;
    const sig = fnv(`${n}|${String(batch.keys[0])}|${String(batch.keys[mid])}|${String(batch.keys[n - 1])}|${batch.hashes[mid]}|${String(batch.values[n - 1])}`);
    this.h = Math.imul(this.h ^ sig, 0x01000193) >>> 0;
    this.records += n;
    this.batches++;
  }
  toString(): string {
    return this.h.toString(16).padStart(8, "0");
  }
}

export interface LinkSenderReport {
  batches: number;
  records: number;
  signature: string;
  /** From the first send to the last batch reported done (exchange) or the call's end (raw). */
  sendMs: number;
  cpuSec: number;
  /** CPU seconds of encodeRecords alone, measured in the loop. */
  encodeCpuSec: number;
}

export interface LinkReceiverReport {
  batches: number;
  records: number;
  signature: string;
  /** performance.now() spans: first arrival -> last, and the arrival completing 10% of the records -> last. */
  firstToLastMs: number;
  windowMs: number;
  windowRecords: number;
  /** CPU seconds from the first arrival to the last. */
  cpuSec: number;
  malformed: number;
}

/** Counts, signs and times decoded batches; calls `onComplete` once `expectedRecords` have arrived. */
export class LinkReceiver {
  private readonly signature = new OrderSignature();
  private firstMs = 0;
  private windowStartMs = 0;
  private windowStartRecords = 0;
  private lastMs = 0;
  private cpuStart: NodeJS.CpuUsage | undefined;
  private cpuSec = 0;
  private malformed = 0;
  private completed = false;

  constructor(
    private readonly expectedRecords: number,
    private readonly onComplete: () => void,
  ) {}

  take(batch: KeyedBatch): void {
    const now = performance.now();
    if (this.signature.batches === 0) {
      this.firstMs = now;
      this.cpuStart = process.cpuUsage();
    }
    if (!Array.isArray(batch.keys) || !Array.isArray(batch.hashes) || batch.keys.length !== batch.hashes.length) this.malformed++;
    this.signature.add(batch);
    this.lastMs = now;
    if (this.windowStartMs === 0 && this.signature.records >= this.expectedRecords / 10) {
      this.windowStartMs = now;
      this.windowStartRecords = this.signature.records;
    }
    if (!this.completed && this.signature.records >= this.expectedRecords) {
      this.completed = true;
      const used = process.cpuUsage(this.cpuStart);
      this.cpuSec = (used.user + used.system) / 1e6;
      this.onComplete();
    }
  }

  report(): LinkReceiverReport {
    return {
      batches: this.signature.batches,
      records: this.signature.records,
      signature: this.signature.toString(),
      firstToLastMs: this.lastMs - this.firstMs,
      windowMs: this.lastMs - this.windowStartMs,
      windowRecords: this.signature.records - this.windowStartRecords,
      cpuSec: this.cpuSec,
      malformed: this.malformed,
    };
  }
}
