/**
 * The fast path for SourceRequest{batch: RecordBatch}, the message that carries a source's
 * records: decoded in the engine and encoded in the SDK straight from and to the bytes, with none
 * of protobuf-es's reflection and one plain object per record. The bytes are the protobuf-es
 * bytes (fields in number order, defaults left out, map entries with key and value): the wire
 * format is unchanged. Each function returns undefined for a message off its path (another kind,
 * unknown fields on a message to encode, values outside proto-wire's range, anything malformed),
 * and the caller uses protobuf-es for it.
 */
import type { Record as WireRecord, RecordBatch, SourceRequest } from "../gen/keyway/v1/connector_pb.ts";
import {
  decodeOneField,
  fastPath,
  lengthFieldSize,
  NO_HEADERS,
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

/** SourceRequest.batch: field 3, length-delimited. */
const BATCH_FIELD = 3;
const BATCH_TAG = (BATCH_FIELD << 3) | WIRE_LEN;
const EMPTY = new Uint8Array(0);

export function decodeSourceRequest(bytes: Uint8Array): SourceRequest | undefined {
  return decodeOneField(bytes, (c, field, end): SourceRequest | undefined =>
    field === BATCH_FIELD ? { $typeName: "keyway.v1.SourceRequest", kind: { case: "batch", value: readRecordBatch(c, end) } } : undefined,
  );
}

function readRecordBatch(c: Cursor, end: number): RecordBatch {
  let stream = "";
  const records: WireRecord[] = [];
  while (c.pos < end) {
    const tag = readTag(c, end);
    const wireType = tag & 7;
    switch (tag >>> 3) {
      case 1:
        if (wireType !== WIRE_LEN) throw NOT_FAST;
        stream = readString(c, readLength(c, end));
        break;
      case 2:
        if (wireType !== WIRE_LEN) throw NOT_FAST;
        records.push(readRecord(c, readLength(c, end)));
        break;
      default:
        skipField(c, wireType, end);
    }
  }
  return { $typeName: "keyway.v1.RecordBatch", stream, records };
}

function readRecord(c: Cursor, end: number): WireRecord {
  let position = 0;
  let key: Uint8Array | undefined;
  let value: Uint8Array = EMPTY;
  let eventTimeMs = 0;
  let headers: { [key: string]: string } | undefined;
  let idempotencyId = "";
  while (c.pos < end) {
    const tag = readTag(c, end);
    const wireType = tag & 7;
    switch (tag >>> 3) {
      case 1:
        if (wireType !== WIRE_VARINT) throw NOT_FAST;
        position = readVarint(c, end);
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
      case 6:
        if (wireType !== WIRE_LEN) throw NOT_FAST;
        idempotencyId = readString(c, readLength(c, end));
        break;
      default:
        skipField(c, wireType, end);
    }
  }
  if (c.pos !== end) throw NOT_FAST;
  return {
    $typeName: "keyway.v1.Record",
    position: BigInt(position),
    key,
    value,
    eventTimeMs: eventTimeMs === 0 ? 0n : BigInt(eventTimeMs),
    headers: headers ?? NO_HEADERS,
    idempotencyId,
  };
}

/** Scratch for encodeSourceRequest: each record's content size, from the sizing pass to the writing one. */
let recordSizes = new Int32Array(1024);

export function encodeSourceRequest(message: SourceRequest): Buffer | undefined {
  if (message.kind.case !== "batch" || message.$unknown !== undefined) return undefined;
  const batch = message.kind.value;
  const { records } = batch;
  if (batch.$unknown !== undefined || !Array.isArray(records) || typeof batch.stream !== "string") return undefined;
  return fastPath(() => {
    if (recordSizes.length < records.length) recordSizes = new Int32Array(records.length * 2);
    const streamBytes = utf8Length(batch.stream);
    let batchSize = streamBytes === 0 ? 0 : lengthFieldSize(streamBytes);
    for (let i = 0; i < records.length; i++) {
      const size = recordSize(records[i]!);
      recordSizes[i] = size;
      batchSize += lengthFieldSize(size);
    }
    const buf = Buffer.allocUnsafe(lengthFieldSize(batchSize));
    buf[0] = BATCH_TAG;
    let pos = writeVarint(buf, 1, batchSize);
    if (streamBytes > 0) {
      buf[pos++] = (1 << 3) | WIRE_LEN;
      pos = writeString(buf, writeVarint(buf, pos, streamBytes), batch.stream, streamBytes);
    }
    for (let i = 0; i < records.length; i++) {
      buf[pos++] = (2 << 3) | WIRE_LEN;
      pos = writeRecord(buf, writeVarint(buf, pos, recordSizes[i]!), records[i]!);
    }
    return buf;
  });
}

function recordSize(r: WireRecord): number {
  if (r.$unknown !== undefined || !(r.value instanceof Uint8Array) || (r.key !== undefined && !(r.key instanceof Uint8Array)) || typeof r.idempotencyId !== "string") throw NOT_FAST;
  const position = varintOf(r.position);
  const eventTimeMs = varintOf(r.eventTimeMs);
  let size = position === 0 ? 0 : 1 + varintSize(position);
  if (r.key !== undefined) size += lengthFieldSize(r.key.byteLength);
  if (r.value.byteLength > 0) size += lengthFieldSize(r.value.byteLength);
  if (eventTimeMs !== 0) size += 1 + varintSize(eventTimeMs);
  for (const name in r.headers) size += lengthFieldSize(stringMapEntrySize(utf8Length(name), utf8Length(r.headers[name]!)));
  if (r.idempotencyId !== "") size += lengthFieldSize(utf8Length(r.idempotencyId));
  return size;
}

function writeRecord(buf: Buffer, pos: number, r: WireRecord): number {
  const position = Number(r.position);
  const eventTimeMs = Number(r.eventTimeMs);
  if (position !== 0) {
    buf[pos++] = (1 << 3) | WIRE_VARINT;
    pos = writeVarint(buf, pos, position);
  }
  if (r.key !== undefined) {
    buf[pos++] = (2 << 3) | WIRE_LEN;
    pos = writeBytes(buf, writeVarint(buf, pos, r.key.byteLength), r.key);
  }
  if (r.value.byteLength > 0) {
    buf[pos++] = (3 << 3) | WIRE_LEN;
    pos = writeBytes(buf, writeVarint(buf, pos, r.value.byteLength), r.value);
  }
  if (eventTimeMs !== 0) {
    buf[pos++] = (4 << 3) | WIRE_VARINT;
    pos = writeVarint(buf, pos, eventTimeMs);
  }
  for (const name in r.headers) pos = writeStringMapEntry(buf, pos, 5, name, r.headers[name]!);
  if (r.idempotencyId !== "") {
    const bytes = utf8Length(r.idempotencyId);
    buf[pos++] = (6 << 3) | WIRE_LEN;
    pos = writeString(buf, writeVarint(buf, pos, bytes), r.idempotencyId, bytes);
  }
  return pos;
}
