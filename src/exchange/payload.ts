/**
 * What crosses an exchange link: a record batch or sink output as columns in one buffer
 * (column-writer.ts). Keys and values that are strings or bytes are packed (lengths, then the
 * text or bytes), hashes are int32s and marks the narrowest unsigned width that holds them, so
 * a word-count record costs a few bytes and, decoded, nothing but its strings; a column of
 * anything else (an app's objects) is a node:v8 blob. Laid out as: format, flags, record count,
 * then the columns below in order.
 */
import type { SinkOutput, Payload } from "../connector/types.ts";
import type { Key } from "../app/spec.ts";
import type { KeyedBatch } from "../runtime/dataflow.ts";
import { createColumnReader, malformed, readColumn, readInt32s, readMarks, readStringColumn, readU32, readU8, type ColumnReader } from "./column-reader.ts";
import { createColumnWriter, writeColumn, writeInt32s, writeMarks, writeU32, writeU8, written, type ColumnWriter } from "./column-writer.ts";

/**
 * Records per exchange batch at most. A source batch (a 64 KiB file chunk is ~9k words) goes
 * out in pieces: several in a link's window at once keep both ends busy, and a receiver starts on
 * the first piece while the rest travel.
 */
export const EXCHANGE_BATCH_RECORDS_MAX = 4096;

const RECORDS_FORMAT = 0x4b;
const SINK_FORMAT = 0x53;
// Record batch flags: which optional columns follow (each one item a record).
const QUIET = 1;
const LINEAGE = 2;
const UPSTREAMS = 4;
const SEQS = 8;
const SUBS = 16;
/** Each value is its record's key (word count's keyBy(word)): the values column is left out. */
const VALUES_ARE_KEYS = 32;
// Sink output flags.
const IDS = 1;
const META = 2;
/** Bytes a record takes at least (length, hash, value length), to size the buffer at once. */
const RECORD_BYTES_HINT = 24;

type Piece = { records: number; payload: Uint8Array };

/** [from, to) of `n` records in pieces of at most `max`; an empty batch is one empty piece. */
function pieces(n: number, max: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let from = 0; from < n || from === 0; from += max) out.push([from, Math.min(n, from + max)]);
  return out;
}

/** A piece's part of a column: the column itself (no copy) when the piece is the whole batch. */
function part<T>(list: readonly T[], from: number, to: number, whole: boolean): readonly T[] {
  return whole || list.length === 0 ? list : list.slice(from, to);
}

function header(format: number, flags: number, n: number, hint: number): ColumnWriter {
  const w = createColumnWriter(hint);
  writeU8(w, format);
  writeU8(w, flags);
  writeU32(w, n);
  return w;
}

/** Each record's upstream as an index into the batch's few distinct names (a file source's name is its path). */
function writeUpstreams(w: ColumnWriter, upstreams: readonly string[]): void {
  const names: string[] = [];
  const of: number[] = [];
  let last = "";
  let lastIndex = -1;
  for (let i = 0; i < upstreams.length; i++) {
    const name = upstreams[i]!;
    if (name !== last || lastIndex < 0) {
      lastIndex = names.indexOf(name);
      if (lastIndex < 0) lastIndex = names.push(name) - 1;
      last = name;
    }
    of.push(lastIndex);
  }
  writeU32(w, names.length);
  writeColumn(w, names);
  writeInt32s(w, of);
}

function readUpstreams(r: ColumnReader, n: number): string[] {
  const names = readStringColumn(r, readU32(r));
  const of = readInt32s(r, n);
  const upstreams: string[] = [];
  for (let i = 0; i < n; i++) {
    const name = names[of[i]!];
    if (name === undefined) throw malformed(r, `upstream ${of[i]} of ${names.length}`);
    upstreams.push(name);
  }
  return upstreams;
}

function valuesAreKeys({ keys, values }: KeyedBatch): boolean {
  for (let i = 0; i < values.length; i++) if (values[i] !== keys[i]) return false;
  return values.length > 0;
}

/** The batch as payloads of at most EXCHANGE_BATCH_RECORDS_MAX records each, in order. */
export function encodeRecords(batch: KeyedBatch): Piece[] {
  const n = batch.values.length;
  const flags =
    (valuesAreKeys(batch) ? VALUES_ARE_KEYS : 0) |
    (batch.quiet === true ? QUIET : 0) |
    (batch.lineage.length > 0 ? LINEAGE : 0) |
    (batch.upstreams.length > 0 ? UPSTREAMS : 0) |
    (batch.seqs.length > 0 ? SEQS : 0) |
    (batch.subs.length > 0 ? SUBS : 0);
  return pieces(n, EXCHANGE_BATCH_RECORDS_MAX).map(([from, to]) => {
    const whole = to - from === n;
    const w = header(RECORDS_FORMAT, flags, to - from, (to - from) * RECORD_BYTES_HINT);
    writeColumn(w, part(batch.keys, from, to, whole));
    writeInt32s(w, part(batch.hashes, from, to, whole));
    if ((flags & VALUES_ARE_KEYS) === 0) writeColumn(w, part(batch.values, from, to, whole));
    if ((flags & LINEAGE) !== 0) writeColumn(w, part(batch.lineage, from, to, whole));
    if ((flags & UPSTREAMS) !== 0) writeUpstreams(w, part(batch.upstreams, from, to, whole));
    if ((flags & SEQS) !== 0) writeMarks(w, part(batch.seqs, from, to, whole));
    if ((flags & SUBS) !== 0) writeMarks(w, part(batch.subs, from, to, whole));
    return { records: to - from, payload: written(w) };
  });
}

function opened(bytes: Uint8Array, format: number, what: string): { r: ColumnReader; flags: number; n: number } {
  const r = createColumnReader(bytes, what);
  const found = readU8(r);
  if (found !== format) throw malformed(r, `format byte ${found}, not ${format}`);
  return { r, flags: readU8(r), n: readU32(r) };
}

function finished(r: ColumnReader): void {
  if (r.at !== r.buf.length) throw malformed(r, `${r.buf.length - r.at} bytes after the last column`);
}

export function decodeRecords(bytes: Uint8Array): KeyedBatch {
  const { r, flags, n } = opened(bytes, RECORDS_FORMAT, "an exchange record batch");
  const keys = readColumn(r, n) as Key[];
  const hashes = readInt32s(r, n);
  const values = (flags & VALUES_ARE_KEYS) !== 0 ? keys.slice() : readColumn(r, n);
  const lineage = (flags & LINEAGE) !== 0 ? readStringColumn(r, n) : [];
  const upstreams = (flags & UPSTREAMS) !== 0 ? readUpstreams(r, n) : [];
  const seqs = (flags & SEQS) !== 0 ? readMarks(r, n) : [];
  const subs = (flags & SUBS) !== 0 ? readMarks(r, n) : [];
  finished(r);
  const batch: KeyedBatch = { keys, hashes, values, lineage, upstreams, seqs, subs };
  if ((flags & QUIET) !== 0) batch.quiet = true;
  return batch;
}

/** Sink output as payloads of at most `maxRecords` records each, in order. */
export function encodeSinkRecords({ values, ids, meta }: SinkOutput, maxRecords = EXCHANGE_BATCH_RECORDS_MAX): Piece[] {
  const n = values.length;
  // No output, nothing to send.
  if (n === 0) return [];
  const flags = (ids !== undefined ? IDS : 0) | (meta !== undefined ? META : 0);
  return pieces(n, maxRecords).map(([from, to]) => {
    const whole = to - from === n;
    const w = header(SINK_FORMAT, flags, to - from, (to - from) * RECORD_BYTES_HINT);
    writeColumn(w, part(values, from, to, whole));
    if (ids !== undefined) writeColumn(w, part(ids, from, to, whole));
    if (meta !== undefined) writeColumn(w, part(meta, from, to, whole));
    return { records: to - from, payload: written(w) };
  });
}

export function decodeSinkRecords(bytes: Uint8Array): SinkOutput {
  const { r, flags, n } = opened(bytes, SINK_FORMAT, "exchange sink output");
  const output: SinkOutput = { values: readColumn(r, n) as Payload[] };
  if ((flags & IDS) !== 0) output.ids = readStringColumn(r, n);
  if ((flags & META) !== 0) output.meta = readColumn(r, n) as SinkOutput["meta"] & unknown[];
  finished(r);
  return output;
}
