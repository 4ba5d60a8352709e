/**
 * Writes the exchange payload's columns into one growing buffer. A column of strings (or of byte
 * arrays) is packed: every item's length, then all of its bytes; a column of anything else is
 * one node:v8 blob, so an app's objects still cross.
 */
import { serialize } from "node:v8";

export const COLUMN_STRINGS = 0;
export const COLUMN_BYTES = 1;
export const COLUMN_V8 = 2;

export interface ColumnWriter {
  buf: Buffer;
  view: DataView;
  at: number;
}

export function createColumnWriter(sizeHint: number): ColumnWriter {
  const buf = Buffer.allocUnsafe(Math.max(64, sizeHint));
  return { buf, view: new DataView(buf.buffer, buf.byteOffset, buf.length), at: 0 };
}

function ensure(w: ColumnWriter, more: number): void {
  if (w.at + more <= w.buf.length) return;
  const next = Buffer.allocUnsafe(Math.max(w.buf.length * 2, w.at + more));
  w.buf.copy(next, 0, 0, w.at);
  w.buf = next;
  w.view = new DataView(next.buffer, next.byteOffset, next.length);
}

/** The bytes written (a view of the writer's buffer). */
export function written(w: ColumnWriter): Uint8Array {
  return w.buf.subarray(0, w.at);
}

export function writeU8(w: ColumnWriter, value: number): void {
  ensure(w, 1);
  w.buf[w.at++] = value;
}

export function writeU32(w: ColumnWriter, value: number): void {
  ensure(w, 4);
  w.view.setUint32(w.at, value, true);
  w.at += 4;
}

/** Int32s (hashes, indexes), little-endian. */
export function writeInt32s(w: ColumnWriter, values: readonly number[]): void {
  ensure(w, values.length * 4);
  const { view } = w;
  let at = w.at;
  for (let i = 0; i < values.length; i++, at += 4) view.setInt32(at, values[i]!, true);
  w.at = at;
}

/**
 * Marks (source positions, ranks): non-negative integers, as the narrowest of u8, u16 and u32 that
 * holds them all (ranks are small, a batch's positions mostly below 2^32), else float64s. One byte
 * says which. As float64s always, they took 16 bytes a record, more than node:v8 wrote.
 */
export function writeMarks(w: ColumnWriter, values: readonly number[]): void {
  let max = 0;
  for (let i = 0; i < values.length && max >= 0; i++) {
    const v = values[i]!;
    max = Number.isInteger(v) && v >= 0 ? Math.max(max, v) : -1;
  }
  const width = max < 0 || max > 0xffffffff ? 8 : max > 0xffff ? 4 : max > 0xff ? 2 : 1;
  writeU8(w, width);
  ensure(w, values.length * width);
  const { view } = w;
  let at = w.at;
  for (let i = 0; i < values.length; i++, at += width) {
    const v = values[i]!;
    if (width === 1) view.setUint8(at, v);
    else if (width === 2) view.setUint16(at, v, true);
    else if (width === 4) view.setUint32(at, v, true);
    else view.setFloat64(at, v, true);
  }
  w.at = at;
}

/** A column of `items`: packed when all are strings or all byte arrays, else node:v8. */
export function writeColumn(w: ColumnWriter, items: readonly unknown[]): void {
  let strings = true;
  let bytes = true;
  for (let i = 0; i < items.length && (strings || bytes); i++) {
    const item = items[i];
    if (typeof item !== "string") strings = false;
    if (!(item instanceof Uint8Array)) bytes = false;
  }
  if (strings) return writeStrings(w, items as readonly string[]);
  if (bytes && items.length > 0) return writeBytes(w, items as readonly Uint8Array[]);
  const blob = serialize(items);
  writeU8(w, COLUMN_V8);
  writeU32(w, blob.length);
  ensure(w, blob.length);
  blob.copy(w.buf, w.at);
  w.at += blob.length;
}

/** Above U+00FF: the column's text goes as UTF-16, else as Latin-1 (one byte a unit). */
const WIDE = /[^\u0000-\u00ff]/;

/**
 * Kind, the text's width (1: Latin-1, 2: UTF-16LE), each item's length in UTF-16 units, then
 * the text: one join and one copy for the whole column, and offsets the reader needs no scan
 * for. Both encodings are a plain copy of V8's own string forms (UTF-8 took three times as long
 * to decode), and UTF-16 keeps any string exact, lone surrogates included.
 */
function writeStrings(w: ColumnWriter, items: readonly string[]): void {
  const joined = items.join("");
  const n = items.length;
  const width = WIDE.test(joined) ? 2 : 1;
  ensure(w, 2 + 4 * n + joined.length * width);
  const { buf, view } = w;
  buf[w.at++] = COLUMN_STRINGS;
  buf[w.at++] = width;
  let at = w.at;
  for (let i = 0; i < n; i++, at += 4) view.setUint32(at, items[i]!.length, true);
  w.at = at + buf.write(joined, at, width === 1 ? "latin1" : "utf16le");
}

function writeBytes(w: ColumnWriter, items: readonly Uint8Array[]): void {
  let total = 0;
  for (let i = 0; i < items.length; i++) total += items[i]!.length;
  writeU8(w, COLUMN_BYTES);
  ensure(w, 4 * items.length + total);
  let at = w.at;
  for (let i = 0; i < items.length; i++, at += 4) w.view.setUint32(at, items[i]!.length, true);
  for (let i = 0; i < items.length; i++) {
    w.buf.set(items[i]!, at);
    at += items[i]!.length;
  }
  w.at = at;
}
