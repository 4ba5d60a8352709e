/**
 * Reads what column-writer.ts wrote, checking every length against the bytes there are: a
 * truncated or malformed payload is a MALFORMED KeywayError, never a read past the end.
 */
import { deserialize } from "node:v8";
import { ErrorCode, KeywayError } from "../errors.ts";
import { COLUMN_BYTES, COLUMN_STRINGS, COLUMN_V8 } from "./column-writer.ts";

/**
 * V8 copies a substring shorter than this (SlicedString::kMinLength); a longer one would be a
 * slice keeping the whole column's text alive as long as it lives (a key in a state table: for
 * ever), so those are decoded on their own.
 */
const SLICE_MIN = 13;

export interface ColumnReader {
  buf: Buffer;
  view: DataView;
  at: number;
  what: string;
}

export function createColumnReader(bytes: Uint8Array, what: string): ColumnReader {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { buf, view: new DataView(buf.buffer, buf.byteOffset, buf.length), at: 0, what };
}

export function malformed(r: ColumnReader, why: string, cause?: unknown): KeywayError {
  return new KeywayError(ErrorCode.MALFORMED, `${r.what} is malformed: ${why} (at byte ${r.at} of ${r.buf.length})`, cause === undefined ? undefined : { cause });
}

function need(r: ColumnReader, bytes: number): void {
  if (r.at + bytes > r.buf.length) throw malformed(r, `${bytes} bytes wanted, the payload ends first`);
}

export function readU8(r: ColumnReader): number {
  need(r, 1);
  return r.buf[r.at++]!;
}

export function readU32(r: ColumnReader): number {
  need(r, 4);
  const value = r.view.getUint32(r.at, true);
  r.at += 4;
  return value;
}

/** `n` int32s writeInt32s wrote. */
export function readInt32s(r: ColumnReader, n: number): number[] {
  need(r, n * 4);
  const out: number[] = [];
  const { view } = r;
  let at = r.at;
  for (let i = 0; i < n; i++, at += 4) out.push(view.getInt32(at, true));
  r.at = at;
  return out;
}

/** `n` marks writeMarks wrote, at the width it chose. */
export function readMarks(r: ColumnReader, n: number): number[] {
  const width = readU8(r);
  if (width !== 1 && width !== 2 && width !== 4 && width !== 8) throw malformed(r, `mark width ${width}`);
  need(r, n * width);
  const out: number[] = [];
  const { view } = r;
  let at = r.at;
  for (let i = 0; i < n; i++, at += width) {
    if (width === 1) out.push(view.getUint8(at));
    else if (width === 2) out.push(view.getUint16(at, true));
    else if (width === 4) out.push(view.getUint32(at, true));
    else out.push(view.getFloat64(at, true));
  }
  r.at = at;
  return out;
}

/** A column of `n` items, whichever way it was written. */
export function readColumn(r: ColumnReader, n: number): unknown[] {
  const kind = readU8(r);
  if (kind === COLUMN_STRINGS) return readStrings(r, n);
  if (kind === COLUMN_BYTES) return readBytes(r, n);
  if (kind !== COLUMN_V8) throw malformed(r, `unknown column kind ${kind}`);
  const length = readU32(r);
  need(r, length);
  let items: unknown;
  try {
    items = deserialize(r.buf.subarray(r.at, r.at + length));
  } catch (err) {
    throw malformed(r, "a node:v8 column does not deserialise", err);
  }
  if (!Array.isArray(items) || items.length !== n) throw malformed(r, `a node:v8 column is not ${n} items`);
  r.at += length;
  return items;
}

/** A column that must be strings (lineage, ids, upstream names). */
export function readStringColumn(r: ColumnReader, n: number): string[] {
  const items = readColumn(r, n);
  for (let i = 0; i < items.length; i++) if (typeof items[i] !== "string") throw malformed(r, "a column of strings holds something else");
  return items as string[];
}

/** The sum of `n` u32 lengths from the reader's position, which it leaves after them. */
function sumOfLengths(r: ColumnReader, n: number): number {
  need(r, 4 * n);
  const { view } = r;
  let sum = 0;
  for (let i = 0, at = r.at; i < n; i++, at += 4) sum += view.getUint32(at, true);
  r.at += 4 * n;
  return sum;
}

function readStrings(r: ColumnReader, n: number): string[] {
  const width = readU8(r);
  if (width !== 1 && width !== 2) throw malformed(r, `text width ${width}`);
  const lengthsAt = r.at;
  const units = sumOfLengths(r, n);
  need(r, units * width);
  const { buf, view } = r;
  const textAt = r.at;
  const encoding = width === 1 ? "latin1" : "utf16le";
  // One decode of the whole text, cut by substring: a third of the cost of a decode per item.
  const text = buf.toString(encoding, textAt, textAt + units * width);
  const out: string[] = [];
  let from = 0;
  for (let i = 0, at = lengthsAt; i < n; i++, at += 4) {
    const to = from + view.getUint32(at, true);
    out.push(to - from < SLICE_MIN ? text.substring(from, to) : buf.toString(encoding, textAt + from * width, textAt + to * width));
    from = to;
  }
  r.at = textAt + units * width;
  return out;
}

function readBytes(r: ColumnReader, n: number): Uint8Array[] {
  const lengthsAt = r.at;
  const total = sumOfLengths(r, n);
  need(r, total);
  const { view } = r;
  const out: Uint8Array[] = [];
  let from = r.at;
  // Copies: a view would keep the whole payload alive as long as one key does.
  for (let i = 0, at = lengthsAt; i < n; i++, at += 4) {
    const to = from + view.getUint32(at, true);
    out.push(new Uint8Array(r.buf.subarray(from, to)));
    from = to;
  }
  r.at = from;
  return out;
}
