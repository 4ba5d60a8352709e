/**
 * What the simulated cluster runs: the sequence-window app (per key the inputs 1, 2, 3, ...; each
 * output the last four) or word count (lines of several words: a flatMap, so records share a
 * source position), over sources that produce on the simulated clock, into one sink that checks
 * every output as it arrives against the one output a fault-free run gives there.
 */
import type { Sink, Source, SourceBatch } from "../src/connector/types.ts";
import type { Random } from "./random.ts";

export const WINDOW = 4;

export type AppName = "sequence-window" | "word-count";

export interface Workload {
  app: AppName;
  sources: number;
  keysPerSource: number;
  recordsPerSource: number;
  batch: number;
  intervalMs: number;
}

export function drawWorkload(random: Random, app: AppName): Workload {
  return { app, sources: random.int(2, 4), keysPerSource: random.int(2, 6), recordsPerSource: random.int(150, 400), batch: random.int(3, 12), intervalMs: random.int(8, 25) };
}

export const sourceUri = (i: number) => `sim:in/${i}`;

const keyOf = (source: number, key: number) => `s${source}k${key}`;

/** Record j of a sequence-window source: its key, and its place in that key's sequence (from 1). */
const recordAt = (w: Workload, source: number, j: number) => ({ key: keyOf(source, j % w.keysPerSource), n: Math.floor(j / w.keysPerSource) + 1 });

/** Line j of a word-count source: one to four words of a small vocabulary, shared by all sources. */
const wordsAt = (w: Workload, source: number, j: number): string[] => {
  let h = (source * 7919 + j * 104729 + 17) >>> 0;
  const next = () => (h = (Math.imul(h, 1103515245) + 12345) >>> 0) >>> 8;
  return Array.from({ length: 1 + (next() % 4) }, () => `w${next() % (w.keysPerSource * 2)}`);
};

/** The record line j of a source carries. */
function lineAt(w: Workload, source: number, j: number): string {
  if (w.app === "word-count") return wordsAt(w, source, j).join(" ");
  const { key, n } = recordAt(w, source, j);
  return `${key} ${n}`;
}

/** Every key and the last n it reaches (a sequence's end, a word's count). */
export function expectedEnds(w: Workload): Map<string, number> {
  const ends = new Map<string, number>();
  for (let s = 0; s < w.sources; s++) {
    for (let j = 0; j < w.recordsPerSource; j++) {
      if (w.app === "word-count") for (const word of wordsAt(w, s, j)) ends.set(word, (ends.get(word) ?? 0) + 1);
      else {
        const { key, n } = recordAt(w, s, j);
        ends.set(key, n);
      }
    }
  }
  return ends;
}

/** The output a fault-free run gives for a key's n-th update. */
function expectedOutput(w: Workload, key: string, n: number): string {
  if (w.app === "word-count") return `${key} ${n}`;
  const window: number[] = [];
  for (let i = Math.max(1, n - WINDOW + 1); i <= n; i++) window.push(i);
  return `${key} ${window.join(",")}`;
}

export interface SourceWatch {
  /** A committed position went back: the first such, as a message. */
  regressed: string | undefined;
  /** Per source, the highest position committed by any instance of it. */
  committed: Map<number, bigint>;
}

/**
 * A source instance on a worker: records in batches every intervalMs, each marked with its source
 * and index (and an id from them, as a connector stream's) so a replay is recognised; it produces
 * nothing once its worker is dead.
 */
export function createSimSource(w: Workload, uri: string, alive: () => boolean, watch: SourceWatch): Source {
  const source = Number(uri.slice(uri.lastIndexOf("/") + 1));
  let next = 0;
  let closed = false;
  let lastCommit = -1n;
  let wake: (() => void) | undefined;
  return {
    finite: true,
    async open(ctx) {
      next = ctx.resumeFrom === undefined ? 0 : Number(ctx.resumeFrom);
    },
    read() {
      if (closed || next >= w.recordsPerSource) return Promise.resolve(null);
      return new Promise<SourceBatch | null>((resolve) => {
        const timer = setTimeout(() => {
          wake = undefined;
          // A dead process reads nothing more, and its read never returns.
          if (!alive()) return;
          if (closed) return resolve(null);
          const end = Math.min(w.recordsPerSource, next + w.batch);
          const values: string[] = [];
          const upstreams: string[] = [];
          const seqs: number[] = [];
          const recordIds: string[] = [];
          for (let j = next; j < end; j++) {
            values.push(lineAt(w, source, j));
            upstreams.push(uri);
            seqs.push(j + 1);
            recordIds.push(`${uri}@${j + 1}`);
          }
          next = end;
          resolve({ values, position: BigInt(end), upstreams, seqs, recordIds });
        }, w.intervalMs);
        wake = () => {
          clearTimeout(timer);
          resolve(null);
        };
      });
    },
    commit(upTo) {
      if (!alive()) return;
      const position = upTo as bigint;
      if (position < lastCommit && watch.regressed === undefined) watch.regressed = `source ${uri}: committed ${position} after ${lastCommit}`;
      lastCommit = position;
      if (position > (watch.committed.get(source) ?? -1n)) watch.committed.set(source, position);
    },
    async close() {
      closed = true;
      wake?.();
    },
  };
}

export interface OutputCheck {
  /** The first output that is not the fault-free one at its place. */
  wrong: string | undefined;
  outputs: number;
  /** Keys whose every output arrived. */
  complete(): boolean;
  missing(): string[];
}

/** The sink: each output must be its key's next one; anything else (lost, repeated, reordered, wrong state) is a violation. */
export function createCheckingSink(w: Workload, onOutput?: (line: string) => void, byIds = false): { sink: Sink; check: OutputCheck } {
  const ends = expectedEnds(w);
  const reached = new Map<string, number>();
  const check: OutputCheck = {
    wrong: undefined,
    outputs: 0,
    complete: () => [...ends].every(([key, end]) => reached.get(key) === end),
    missing: () => [...ends].filter(([key, end]) => reached.get(key) !== end).map(([key, end]) => `${key} at ${reached.get(key) ?? 0} of ${end}`),
  };
  const take = (line: string) => {
    onOutput?.(line);
    check.outputs++;
    const space = line.indexOf(" ");
    const key = line.slice(0, space);
    const n = (reached.get(key) ?? 0) + 1;
    const want = expectedOutput(w, key, n);
    if (line !== want) {
      check.wrong ??= `output ${check.outputs}: got "${line}", expected "${want}" (${ends.has(key) ? "loss, duplication, reordering or wrong state" : "unknown key"})`;
      return;
    }
    reached.set(key, n);
  };
  // A connector sink that keeps ids (the exactly-once file sink) writes each id once.
  const seen = new Set<string>();
  const sink: Sink = {
    wantsRecordIds: byIds,
    async open() {},
    async write(values, ids) {
      values.forEach((v, i) => {
        if (byIds) {
          const id = ids?.[i];
          if (id === undefined) return (check.wrong ??= `output "${String(v)}" came without a record id`);
          if (seen.has(id)) return;
          seen.add(id);
        }
        take(typeof v === "string" ? v : new TextDecoder().decode(v));
      });
    },
    async delivered() {},
    async flush() {},
    bufferedRecords: () => 0,
    async close() {},
  };
  return { sink, check };
}
