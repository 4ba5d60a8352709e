/**
 * The fast path for SinkResponse{batch: SinkBatch}, the message that carries output to a sink:
 * encoded in the engine and decoded in the SDK straight from and to the bytes, as
 * record-batch-codec.ts does for sources (same bytes as protobuf-es; undefined sends the caller to
 * protobuf-es).
 */
import type { SinkBatch, SinkRecord, SinkResponse } from "../gen/keyway/v1/connector_pb.ts";
import {
  decodeOneField,
  fastPath,
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
  varintOf,
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

/** Scratch for encodeSinkResponse: each record's id length and content size, from the sizing pass to the writing one. */
let idBytes = new Int32Array(1024);
let recordSizes = new Int32Array(1024);

export function encodeSinkResponse(message: SinkResponse): Buffer | undefined {
  if (message.kind.case !== "batch" || message.$unknown !== undefined) return undefined;
  const batch = message.kind.value;
  const { records } = batch;
  if (batch.$unknown !== undefined || !Array.isArray(records)) return undefined;
  return fastPath(() => {
    if (recordSizes.length < records.length) {
      recordSizes = new Int32Array(records.length * 2);
      idBytes = new Int32Array(records.length * 2);
    }
    const sequence = varintOf(batch.sequence);
    let batchSize = sequence === 0 ? 0 : 1 + varintSize(sequence);
    for (let i = 0; i < records.length; i++) {
      const r = records[i]!;
      if (r.$unknown !== undefined || !(r.value instanceof Uint8Array) || (r.key !== undefined && !(r.key instanceof Uint8Array))) throw NOT_FAST;
      const id = utf8Length(r.id);
      const eventTimeMs = varintOf(r.eventTimeMs);
      let size = id === 0 ? 0 : lengthFieldSize(id);
      if (r.key !== undefined) size += lengthFieldSize(r.key.byteLength);
      if (r.value.byteLength > 0) size += lengthFieldSize(r.value.byteLength);
      if (eventTimeMs !== 0) size += 1 + varintSize(eventTimeMs);
      for (const name in r.headers) size += lengthFieldSize(stringMapEntrySize(utf8Length(name), utf8Length(r.headers[name])));
      idBytes[i] = id;
      recordSizes[i] = size;
      batchSize += lengthFieldSize(size);
    }
    const buf = Buffer.allocUnsafe(lengthFieldSize(batchSize));
    buf[0] = BATCH_TAG;
    let pos = writeVarint(buf, 1, batchSize);
    if (sequence !== 0) {
      buf[pos++] = (1 << 3) | WIRE_VARINT;
      pos = writeVarint(buf, pos, sequence);
    }
    for (let i = 0; i < records.length; i++) {
      const r = records[i]!;
      buf[pos++] = (2 << 3) | WIRE_LEN;
      pos = writeVarint(buf, pos, recordSizes[i]!);
      const id = idBytes[i]!;
      if (id > 0) {
        buf[pos++] = (1 << 3) | WIRE_LEN;
        pos = writeString(buf, writeVarint(buf, pos, id), r.id, id);
      }
      if (r.key !== undefined) {
        buf[pos++] = (2 << 3) | WIRE_LEN;
        pos = writeBytes(buf, writeVarint(buf, pos, r.key.byteLength), r.key);
      }
      if (r.value.byteLength > 0) {
        buf[pos++] = (3 << 3) | WIRE_LEN;
        pos = writeBytes(buf, writeVarint(buf, pos, r.value.byteLength), r.value);
      }
      const eventTimeMs = Number(r.eventTimeMs);
      if (eventTimeMs !== 0) {
        buf[pos++] = (4 << 3) | WIRE_VARINT;
        pos = writeVarint(buf, pos, eventTimeMs);
      }
      for (const name in r.headers) pos = writeStringMapEntry(buf, pos, 5, name, r.headers[name]!);
    }
    return buf;
  });
}
