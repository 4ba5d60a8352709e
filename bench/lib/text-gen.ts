/**
 * A deterministic English-like corpus for the word-count benchmark: a vocabulary of made-up words
 * drawn with a Zipf-Mandelbrot distribution (frequent words short, like real text), lines of 10-15
 * words, sentence capitalisation, some proper nouns, shouting, contractions, hyphens, numbers,
 * accented letters and punctuation. The same seed always yields the same bytes, so runs on
 * different days and machines count the same words.
 */
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, statSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";

/** Bump when the generator's output changes, so a stale cached corpus is not reused. */
const GENERATOR_VERSION = 1;

export interface CorpusSpec {
  seed: number;
  vocabularySize: number;
  /** Lines are added until the file holds at least this many bytes. */
  minBytes: number;
  /** Zipf exponent; about 1 for natural language. */
  zipfExponent: number;
}

export interface Corpus {
  path: string;
  bytes: number;
  lines: number;
  /** True when an existing file of the right size was reused instead of generated. */
  reused: boolean;
  generateMs: number;
}

interface CorpusMeta extends CorpusSpec {
  version: number;
  bytes: number;
  lines: number;
}

/** mulberry32: tiny, fast and good enough to make text; not for anything statistical beyond that. */
export function createRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Single letters are repeated so they dominate, as in English; clusters make the long tail varied.
const ONSETS = ["", "", "", "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
  "b", "d", "h", "l", "m", "n", "p", "r", "s", "t", "w", "br", "ch", "cl", "cr", "dr", "fl", "gr", "pl", "pr", "sh", "st",
  "th", "tr", "sp", "qu"];
const VOWELS = ["a", "e", "i", "o", "u", "a", "e", "i", "o", "ai", "ea", "ee", "oo", "ou", "y"];
const CODAS = ["", "", "", "", "", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ng", "ck", "x", "th"];
// Letters whose lower/upper case round-trips exactly, so a shouted word still counts as itself
// (ß would not: its upper case is "SS").
const ACCENTED: Record<string, string> = { a: "å", e: "é", o: "ø", u: "ü", n: "ñ" };

function pick<T>(random: () => number, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)]!;
}

/**
 * `size` distinct lower-case words, most frequent first: rank r gets more syllables as r grows,
 * like natural language where common words are short. About 1% are numbers, 3% carry an accent.
 */
export function buildVocabulary(size: number, seed: number): string[] {
  const random = createRandom(seed ^ 0x5eed);
  const seen = new Set<string>();
  const words: string[] = [];
  while (words.length < size) {
    const rank = words.length;
    let word: string;
    if (rank > 20 && random() < 0.01) {
      word = String(Math.floor(random() * (rank < 1000 ? 100 : 100_000)));
    } else {
      const syllables = Math.min(4, 1 + Math.floor(Math.log(rank + 1) / Math.log(150)) + (random() < 0.2 ? 1 : 0));
      word = "";
      for (let s = 0; s < syllables; s++) word += pick(random, ONSETS) + pick(random, VOWELS) + pick(random, CODAS);
      if (random() < 0.03) {
        const i = Math.floor(random() * word.length);
        const accent = ACCENTED[word[i]!];
        if (accent !== undefined) word = word.slice(0, i) + accent + word.slice(i + 1);
      }
    }
    if (seen.has(word)) continue;
    seen.add(word);
    words.push(word);
  }
  return words;
}

/** Cumulative Zipf-Mandelbrot weights 1/(r + q)^s; q flattens the head a little, as in real text. */
function zipfCumulative(size: number, exponent: number): Float64Array {
  const cumulative = new Float64Array(size);
  let total = 0;
  for (let r = 0; r < size; r++) {
    total += 1 / Math.pow(r + 2.7, exponent);
    cumulative[r] = total;
  }
  return cumulative;
}

function sampleRank(cumulative: Float64Array, u: number): number {
  const target = u * cumulative[cumulative.length - 1]!;
  let lo = 0;
  let hi = cumulative.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (cumulative[mid]! < target) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function capitalise(word: string): string {
  return word.charAt(0).toUpperCase() + word.slice(1);
}

/** Writes the corpus to `path`; returns its byte and line counts. */
function generate(path: string, spec: CorpusSpec): { bytes: number; lines: number } {
  const random = createRandom(spec.seed);
  const vocabulary = buildVocabulary(spec.vocabularySize, spec.seed);
  const cumulative = zipfCumulative(vocabulary.length, spec.zipfExponent);
  const fd = openSync(path, "w");
  let bytes = 0;
  let lines = 0;
  let pending: string[] = [];
  let pendingChars = 0;
  const flush = () => {
    const buffer = Buffer.from(pending.join(""), "utf8");
    writeSync(fd, buffer);
    bytes += buffer.length;
    pending = [];
    pendingChars = 0;
  };
  try {
    let sentenceStart = true;
    while (bytes + pendingChars < spec.minBytes) {
      const wordCount = 10 + Math.floor(random() * 6);
      let line = "";
      for (let w = 0; w < wordCount; w++) {
        let word = vocabulary[sampleRank(cumulative, random())]!;
        const style = random();
        if (sentenceStart || style < 0.02) word = capitalise(word);
        else if (style < 0.024) word = word.toUpperCase();
        const extra = random();
        if (extra < 0.015) word += "'s";
        else if (extra < 0.025) word += "-" + vocabulary[sampleRank(cumulative, random())]!;
        else if (extra < 0.03) word = `"${word}"`;
        else if (extra < 0.032) word = `(${word})`;
        sentenceStart = false;
        const last = w === wordCount - 1;
        const punctuation = random();
        if (last || punctuation < 0.06) {
          word += punctuation < 0.01 ? "?" : punctuation < 0.015 ? "!" : ".";
          sentenceStart = true;
        } else if (punctuation < 0.13) {
          word += ",";
        } else if (punctuation < 0.135) {
          word += ";";
        }
        line += w === 0 ? word : " " + word;
      }
      pending.push(line, "\n");
      // Characters undercount multi-byte letters slightly; bytes are exact after each flush.
      pendingChars += line.length + 1;
      lines++;
      if (pendingChars >= 1 << 20) flush();
    }
    flush();
  } finally {
    closeSync(fd);
  }
  return { bytes, lines };
}

/** The corpus file for `spec` under `dir`, generated only when a matching one is not already there. */
export function ensureCorpus(dir: string, spec: CorpusSpec): Corpus {
  mkdirSync(dir, { recursive: true });
  const base = `corpus-v${GENERATOR_VERSION}-seed${spec.seed}-vocab${spec.vocabularySize}-min${spec.minBytes}`;
  const path = join(dir, `${base}.txt`);
  const metaPath = join(dir, `${base}.meta.json`);
  if (existsSync(path) && existsSync(metaPath)) {
    const meta = JSON.parse(readFileSync(metaPath, "utf8")) as CorpusMeta;
    const matches = meta.version === GENERATOR_VERSION && meta.seed === spec.seed && meta.vocabularySize === spec.vocabularySize
      && meta.minBytes === spec.minBytes && meta.zipfExponent === spec.zipfExponent;
    if (matches && statSync(path).size === meta.bytes) {
      return { path, bytes: meta.bytes, lines: meta.lines, reused: true, generateMs: 0 };
    }
  }
  const startedAt = performance.now();
  // Written aside and renamed, so an interrupted run never leaves a short file that looks complete.
  const partial = `${path}.partial`;
  const { bytes, lines } = generate(partial, spec);
  renameSync(partial, path);
  const meta: CorpusMeta = { ...spec, version: GENERATOR_VERSION, bytes, lines };
  writeFileSync(metaPath, `${JSON.stringify(meta, null, 2)}\n`);
  return { path, bytes, lines, reused: false, generateMs: performance.now() - startedAt };
}
