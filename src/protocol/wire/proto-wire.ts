/**
 * Protobuf wire-format primitives for the hand-written codecs of the record-carrying messages
 * (record-batch-codec.ts, sink-batch-codec.ts). They cover only what those messages hold; anything
 * else (a wire type not expected, a varint of 2^49 or more, a length past the end, a string that
 * is not UTF-8) throws NOT_FAST, and the caller hands the bytes to protobuf-es, which accepts or
 * rejects them with its own error exactly as it would without the fast path.
 */

/** Thrown (never an Error: no stack to capture) when bytes or a message leave the fast path. */
export const NOT_FAST: unique symbol = Symbol("not on the codec's fast path");

export const WIRE_VARINT = 0;
export const WIRE_FIXED64 = 1;
export const WIRE_LEN = 2;
export const WIRE_FIXED32 = 5;

/** Varints the fast path reads as exact numbers: 7 bytes, 49 bits. Larger ones go to protobuf-es. */
const VARINT_BYTES_MAX = 7;
/** Strings this short are decoded in JS; longer ones by Buffer's native latin1 or UTF-8 slice. */
const SHORT_STRING = 16;

export interface Cursor {
  readonly buf: Buffer;
  pos: number;
}

export function cursorOver(bytes: Uint8Array): Cursor {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { buf, pos: 0 };
}

/** A varint below 2^49 as a number, not reading past `end`. */
export function readVarint(c: Cursor, end: number): number {
  const buf = c.buf;
  let pos = c.pos;
  if (pos < end) {
    const first = buf[pos]!;
    if (first < 0x80) {
      c.pos = pos + 1;
      return first;
    }
  }
  let value = 0;
  let scale = 1;
  for (let i = 0; i < VARINT_BYTES_MAX && pos < end; i++) {
    const byte = buf[pos++]!;
    value += (byte & 0x7f) * scale;
    if (byte < 0x80) {
      c.pos = pos;
      return value;
    }
    scale *= 128;
  }
  throw NOT_FAST;
}

/** A field's tag; field number 0 and tags past 32 bits are malformed (protobuf-es decides how). */
export function readTag(c: Cursor, end: number): number {
  const tag = readVarint(c, end);
  if (tag < 8 || tag > 0xffffffff) throw NOT_FAST;
  return tag;
}

/** A length-delimited field's length; returns where the field ends. */
export function readLength(c: Cursor, end: number): number {
  const length = readVarint(c, end);
  const fieldEnd = c.pos + length;
  if (fieldEnd > end) throw NOT_FAST;
  return fieldEnd;
}

/** The bytes up to fieldEnd: a view, as protobuf-es gives. */
export function readBytes(c: Cursor, fieldEnd: number): Buffer {
  const bytes = c.buf.subarray(c.pos, fieldEnd);
  c.pos = fieldEnd;
  return bytes;
}

type Latin1Buffer = Buffer & { latin1Slice(start: number, end: number): string; utf8Slice(start: number, end: number): string };

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** A string field up to fieldEnd; not UTF-8 (which protobuf-es rejects for proto3) leaves the fast path. */
export function readString(c: Cursor, fieldEnd: number): string {
  const buf = c.buf;
  const start = c.pos;
  c.pos = fieldEnd;
  let i = start;
  while (i < fieldEnd && buf[i]! < 0x80) i++;
  if (i === fieldEnd) {
    if (fieldEnd - start > SHORT_STRING) return (buf as Latin1Buffer).latin1Slice(start, fieldEnd);
    let text = "";
    for (let j = start; j < fieldEnd; j++) text += String.fromCharCode(buf[j]!);
    return text;
  }
  try {
    return strictUtf8.decode(buf.subarray(start, fieldEnd));
  } catch {
    throw NOT_FAST;
  }
}

/** Skips a field this codec does not know (protobuf-es keeps it in $unknown; the engine never reads that). */
export function skipField(c: Cursor, wireType: number, end: number): void {
  switch (wireType) {
    case WIRE_VARINT:
      readVarint(c, end);
      return;
    case WIRE_LEN:
      c.pos = readLength(c, end);
      return;
    case WIRE_FIXED64:
    case WIRE_FIXED32: {
      const next = c.pos + (wireType === WIRE_FIXED64 ? 8 : 4);
      if (next > end) throw NOT_FAST;
      c.pos = next;
      return;
    }
    default:
      throw NOT_FAST;
  }
}

/** Reads a map<string,string> entry up to entryEnd into headers; a missing key or value is "", as protobuf-es does. */
export function readStringMapEntry(c: Cursor, entryEnd: number, headers: { [key: string]: string }): void {
  let key = "";
  let value = "";
  while (c.pos < entryEnd) {
    const tag = readTag(c, entryEnd);
    const field = tag >>> 3;
    const wireType = tag & 7;
    // protobuf-es does not skip other fields in a map entry: it misreads them, so it decides.
    if ((field !== 1 && field !== 2) || wireType !== WIRE_LEN) throw NOT_FAST;
    const text = readString(c, readLength(c, entryEnd));
    if (field === 1) key = text;
    else value = text;
  }
  if (c.pos !== entryEnd) throw NOT_FAST;
  headers[key] = value;
}

/**
 * The headers of every record that has none: one object, not one per record. Frozen, so a write
 * fails: whoever would add headers (an SDK's send with headers) replaces it, and the engine copies
 * headers before an app sees them.
 */
export const NO_HEADERS: { [key: string]: string } = Object.freeze({});

// ---- writing ----

/** A uint64 or int64 field's bigint as a number, when the fast path writes it (0 <= v < 2^53). */
export function varintOf(value: unknown): number {
  if (typeof value !== "bigint" || value < 0n || value > 0x1fffffffffffffn) throw NOT_FAST;
  return Number(value);
}

export function varintSize(n: number): number {
  if (n < 0x80) return 1;
  if (n < 0x4000) return 2;
  if (n < 0x200000) return 3;
  if (n < 0x10000000) return 4;
  let size = 4;
  for (let rest = Math.floor(n / 0x10000000); rest > 0; rest = Math.floor(rest / 128)) size++;
  return size;
}

/** Bytes of a field: its one-byte tag (field numbers below 16), the length and the content. */
export function lengthFieldSize(contentBytes: number): number {
  return 1 + varintSize(contentBytes) + contentBytes;
}

/** A string field's UTF-8 length; a value that is not a string leaves the fast path. */
export function utf8Length(text: unknown): number {
  if (typeof text !== "string") throw NOT_FAST;
  return text.length === 0 ? 0 : Buffer.byteLength(text, "utf8");
}

export function writeVarint(buf: Buffer, pos: number, n: number): number {
  while (n >= 0x80) {
    buf[pos++] = (n % 128) | 0x80;
    n = Math.floor(n / 128);
  }
  buf[pos++] = n;
  return pos;
}

/** Writes a string whose UTF-8 length (utf8Length) is `bytes`; returns the position after it. */
export function writeString(buf: Buffer, pos: number, text: string, bytes: number): number {
  if (bytes === text.length && bytes <= SHORT_STRING) {
    for (let i = 0; i < bytes; i++) buf[pos + i] = text.charCodeAt(i);
    return pos + bytes;
  }
  return pos + buf.write(text, pos, bytes, "utf8");
}

export function writeBytes(buf: Buffer, pos: number, bytes: Uint8Array): number {
  buf.set(bytes, pos);
  return pos + bytes.byteLength;
}

/** Bytes of a map<string,string> entry's content (tag and length of the entry not included). */
export function stringMapEntrySize(keyBytes: number, valueBytes: number): number {
  return lengthFieldSize(keyBytes) + lengthFieldSize(valueBytes);
}

/** A map<string,string> entry of field `field`, key and value both written, as protobuf-es does. */
export function writeStringMapEntry(buf: Buffer, pos: number, field: number, name: string, text: string): number {
  const nameBytes = utf8Length(name);
  const textBytes = utf8Length(text);
  buf[pos++] = (field << 3) | WIRE_LEN;
  pos = writeVarint(buf, pos, stringMapEntrySize(nameBytes, textBytes));
  buf[pos++] = (1 << 3) | WIRE_LEN;
  pos = writeString(buf, writeVarint(buf, pos, nameBytes), name, nameBytes);
  buf[pos++] = (2 << 3) | WIRE_LEN;
  return writeString(buf, writeVarint(buf, pos, textBytes), text, textBytes);
}

/** Runs a fast-path encoder or decoder: undefined, or NOT_FAST thrown from it, sends the caller to protobuf-es. */
export function fastPath<T>(run: () => T | undefined): T | undefined {
  try {
    return run();
  } catch (err) {
    if (err === NOT_FAST) return undefined;
    throw err;
  }
}

/**
 * A message of exactly one length-delimited field (a oneof member): `read` decodes it, given its
 * number and end. A second field (another kind, the same one again, unknown fields), or bytes
 * `read` leaves unread, send the caller to protobuf-es, which decides.
 */
export function decodeOneField<T>(bytes: Uint8Array, read: (c: Cursor, field: number, end: number) => T | undefined): T | undefined {
  return fastPath(() => {
    const c = cursorOver(bytes);
    const end = c.buf.length;
    const tag = readTag(c, end);
    if ((tag & 7) !== WIRE_LEN) return undefined;
    const fieldEnd = readLength(c, end);
    if (fieldEnd !== end) return undefined;
    const message = read(c, tag >>> 3, fieldEnd);
    return message !== undefined && c.pos === end ? message : undefined;
  });
}
