/**
 * The fast path for SinkResponse{batch: SinkBatch}, the message that carries output to a sink:
 * encoded in the engine straight from its output lists, and decoded in the SDK straight from the
 * bytes, as record-batch-codec.ts does for sources. Same bytes as protobuf-es; a decode that
 * returns undefined sends the caller to protobuf-es.
 */
import type { Payload, RecordMeta } from "../../connector/types.ts";
import type { SinkBatch, SinkRecord, SinkResponse } from "../gen/keyway/v1/connector_pb.ts";
import { RECORD_OVERHEAD_BYTES } from "../limits.ts";
import {
  decodeOneField,
  lengthFieldSize,
  NOT_FAST,
  readBytes,
  readLength,
  readString,
  readStringMapEntry,
  readTag,
  readVarint,
  skipField,
  stringMapEntrySize,
  utf8Length,
  varintSize,
  WIRE_LEN,
  WIRE_VARINT,
  writeBytes,
  writeString,
  writeStringMapEntry,
  writeVarint,
  type Cursor,
} from "./proto-wire.ts";

/** SinkResponse.batch: field 2, length-delimited. */
const BATCH_FIELD = 2;
const BATCH_TAG = (BATCH_FIELD << 3) | WIRE_LEN;
const EMPTY = new Uint8Array(0);

export function decodeSinkResponse(bytes: Uint8Array): SinkResponse | undefined {
  return decodeOneField(bytes, (c, field, end): SinkResponse | undefined =>
    field === BATCH_FIELD ? { $typeName: "keyway.v1.SinkResponse", kind: { case: "batch", value: readSinkBatch(c, end) } } : undefined,
  );
}

function readSinkBatch(c: Cursor, end: number): SinkBatch {
  let sequence = 0;
  const records: SinkRecord[] = [];
  while (c.pos < end) {
    const tag = readTag(c, end);
    const wireType = tag & 7;
    switch (tag >>> 3) {
      case 1:
        if (wireType !== WIRE_VARINT) throw NOT_FAST;
        sequence = readVarint(c, end);
        break;
      case 2:
        if (wireType !== WIRE_LEN) throw NOT_FAST;
        records.push(readSinkRecord(c, readLength(c, end)));
        break;
      default:
        skipField(c, wireType, end);
    }
  }
  return { $typeName: "keyway.v1.SinkBatch", sequence: BigInt(sequence), records };
}

function readSinkRecord(c: Cursor, end: number): SinkRecord {
  let id = "";
  let key: Uint8Array | undefined;
  let value: Uint8Array = EMPTY;
  let eventTimeMs = 0;
  let headers: { [key: string]: string } | undefined;
  while (c.pos < end) {
    const tag = readTag(c, end);
    const wireType = tag & 7;
    switch (tag >>> 3) {
      case 1:
        if (wireType !== WIRE_LEN) throw NOT_FAST;
        id = readString(c, readLength(c, end));
        break;
      case 2:
        if (wireType !== WIRE_LEN) throw NOT_FAST;
        key = readBytes(c, readLength(c, end));
        break;
      case 3:
        if (wireType !== WIRE_LEN) throw NOT_FAST;
        value = readBytes(c, readLength(c, end));
        break;
      case 4:
        if (wireType !== WIRE_VARINT) throw NOT_FAST;
        eventTimeMs = readVarint(c, end);
        break;
      case 5:
        if (wireType !== WIRE_LEN) throw NOT_FAST;
        readStringMapEntry(c, readLength(c, end), (headers ??= {}));
        break;
      default:
        skipField(c, wireType, end);
    }
  }
  return { $typeName: "keyway.v1.SinkRecord", id, key, value, eventTimeMs: eventTimeMs === 0 ? 0n : BigInt(eventTimeMs), headers: headers ?? {} };
}

/** Output records encoded as SinkBatch.records entries, back to back: what a SinkBatch is cut from. */
export interface SinkEntries {
  bytes: Buffer;
  /** Where each record's entry ends in `bytes`. */
  ends: Int32Array;
  /**
   * Each record's share of a message as the engine's limits count it: its value, id and metadata
   * with RECORD_OVERHEAD_BYTES per field group (more than it takes, so a batch never exceeds them).
   */
  counted: Int32Array;
}

/** Scratch from the sizing pass to the writing one: each record's id and value length in UTF-8, and its content size. */
let idBytes = new Int32Array(1024);
let valueBytes = new Int32Array(1024);
let contentBytes = new Int32Array(1024);

/**
 * Encodes output records straight from the engine's parallel lists (no SinkRecord or Buffer per
 * record), the same bytes as protobuf-es; SinkBatch messages are then cut from them by copying
 * (sinkBatchResponse).
 */
export function encodeSinkEntries(values: readonly Payload[], ids: readonly string[], meta: readonly (RecordMeta | undefined)[] | undefined): SinkEntries {
  const n = values.length;
  if (contentBytes.length < n) {
    idBytes = new Int32Array(n * 2);
    valueBytes = new Int32Array(n * 2);
    contentBytes = new Int32Array(n * 2);
  }
  const counted = new Int32Array(n);
  let total = 0;
  for (let i = 0; i < n; i++) {
    const value = values[i]!;
    const id = utf8Length(ids[i]);
    const valueLength = typeof value === "string" ? utf8Length(value) : value.byteLength;
    let size = id === 0 ? 0 : lengthFieldSize(id);
    if (valueLength > 0) size += lengthFieldSize(valueLength);
    let count = valueLength + id + RECORD_OVERHEAD_BYTES;
    const m = meta?.[i];
    if (m !== undefined) {
      const extra = metaSizes(m);
      size += extra.size;
      count += extra.counted;
    }
    idBytes[i] = id;
    valueBytes[i] = valueLength;
    contentBytes[i] = size;
    counted[i] = count;
    total += lengthFieldSize(size);
  }
  const bytes = Buffer.allocUnsafe(total);
  const ends = new Int32Array(n);
  let pos = 0;
  for (let i = 0; i < n; i++) {
    bytes[pos++] = (2 << 3) | WIRE_LEN;
    pos = writeVarint(bytes, pos, contentBytes[i]!);
    const id = idBytes[i]!;
    if (id > 0) {
      bytes[pos++] = (1 << 3) | WIRE_LEN;
      pos = writeString(bytes, writeVarint(bytes, pos, id), ids[i]!, id);
    }
    const m = meta?.[i];
    if (m?.key !== undefined) pos = writePayloadField(bytes, pos, 2, m.key, payloadLength(m.key), true);
    pos = writePayloadField(bytes, pos, 3, values[i]!, valueBytes[i]!, false);
    if (m !== undefined) pos = writeTimeAndHeaders(bytes, pos, m);
    ends[i] = pos;
  }
  return { bytes, ends, counted };
}

/** SinkResponse{batch: SinkBatch{sequence, records}}, the records being entries of encodeSinkEntries (`entryBytes` in all). */
export function sinkBatchResponse(sequence: bigint, entries: readonly Uint8Array[], entryBytes: number): Buffer {
  const seq = Number(sequence);
  const batchSize = (seq === 0 ? 0 : 1 + varintSize(seq)) + entryBytes;
  const buf = Buffer.allocUnsafe(lengthFieldSize(batchSize));
  buf[0] = BATCH_TAG;
  let pos = writeVarint(buf, 1, batchSize);
  if (seq !== 0) {
    buf[pos++] = (1 << 3) | WIRE_VARINT;
    pos = writeVarint(buf, pos, seq);
  }
  for (const entry of entries) pos = writeBytes(buf, pos, entry);
  return buf;
}

function payloadLength(payload: Payload): number {
  return typeof payload === "string" ? utf8Length(payload) : payload.byteLength;
}

/** A bytes field from a string or bytes; an empty one is written only when the field has presence (the key). */
function writePayloadField(buf: Buffer, pos: number, field: number, payload: Payload, length: number, present: boolean): number {
  if (length === 0 && !present) return pos;
  buf[pos++] = (field << 3) | WIRE_LEN;
  pos = writeVarint(buf, pos, length);
  return typeof payload === "string" ? writeString(buf, pos, payload, length) : writeBytes(buf, pos, payload);
}

/** An int64 as protobuf writes it: a negative one takes ten bytes (two's complement). */
function eventTimeOf(meta: RecordMeta): bigint | number {
  if (meta.eventTimeMs === undefined) return 0;
  const ms = Math.trunc(meta.eventTimeMs);
  return Number.isSafeInteger(ms) && ms >= 0 ? ms : BigInt.asUintN(64, BigInt(ms));
}

/** The bytes a record's metadata adds: encoded, and as the engine's limits count them. */
function metaSizes(meta: RecordMeta): { size: number; counted: number } {
  let size = 0;
  let counted = 0;
  if (meta.key !== undefined) {
    const key = payloadLength(meta.key);
    size += lengthFieldSize(key);
    counted += key + RECORD_OVERHEAD_BYTES;
  }
  const time = eventTimeOf(meta);
  if (typeof time === "bigint") {
    size += 2;
    for (let rest = time; rest >= 0x80n; rest >>= 7n) size++;
  } else if (time !== 0) size += 1 + varintSize(time);
  for (const name in meta.headers) {
    const nameBytes = utf8Length(name);
    const textBytes = utf8Length(meta.headers[name]);
    size += lengthFieldSize(stringMapEntrySize(nameBytes, textBytes));
    counted += nameBytes + textBytes + RECORD_OVERHEAD_BYTES;
  }
  return { size, counted };
}

function writeTimeAndHeaders(buf: Buffer, pos: number, meta: RecordMeta): number {
  let time = eventTimeOf(meta);
  if (typeof time === "bigint") {
    buf[pos++] = (4 << 3) | WIRE_VARINT;
    for (; time >= 0x80n; time >>= 7n) buf[pos++] = Number(time & 0x7fn) | 0x80;
    buf[pos++] = Number(time);
  } else if (time !== 0) {
    buf[pos++] = (4 << 3) | WIRE_VARINT;
    pos = writeVarint(buf, pos, time);
  }
  for (const name in meta.headers) pos = writeStringMapEntry(buf, pos, 5, name, meta.headers[name]!);
  return pos;
}
