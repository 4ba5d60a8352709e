/**
 * The fast path for the small control messages that travel beside every batch: Credits and
 * Committed to a source (SourceResponse), Credits and Ack from a sink (SinkRequest). Encoded in the
 * engine or the SDK, and decoded on the other side, straight from and to the bytes protobuf-es
 * writes (fields in number order, defaults left out); its reflection costs more than the
 * message's few bytes. Any other kind, unknown fields on a message to encode, values outside
 * proto-wire's range and anything malformed return undefined: the caller uses protobuf-es.
 */
import type { SinkRequest, SourceResponse } from "../gen/keyway/v1/connector_pb.ts";
import {
  decodeOneField,
  fastPath,
  lengthFieldSize,
  NOT_FAST,
  readLength,
  readString,
  readTag,
  readVarint,
  skipField,
  utf8Length,
  varintOf,
  varintSize,
  WIRE_LEN,
  WIRE_VARINT,
  writeString,
  writeVarint,
  type Cursor,
} from "./proto-wire.ts";

const SOURCE_CREDITS = 3;
const SOURCE_COMMITTED = 4;
const SINK_CREDITS = 2;
const SINK_ACK = 3;
const UINT32_MAX = 0xffffffff;

export function encodeSourceResponse(message: SourceResponse): Buffer | undefined {
  const { kind } = message;
  if (message.$unknown !== undefined || (kind.case !== "credits" && kind.case !== "committed") || kind.value.$unknown !== undefined) return undefined;
  return fastPath(() => {
    if (kind.case === "credits") return varintMessage(SOURCE_CREDITS, uint32Of(kind.value.records));
    const { stream, position } = kind.value;
    const streamBytes = utf8Length(stream);
    const at = varintOf(position);
    const size = (streamBytes === 0 ? 0 : lengthFieldSize(streamBytes)) + (at === 0 ? 0 : 1 + varintSize(at));
    const buf = Buffer.allocUnsafe(lengthFieldSize(size));
    buf[0] = (SOURCE_COMMITTED << 3) | WIRE_LEN;
    let pos = writeVarint(buf, 1, size);
    if (streamBytes > 0) {
      buf[pos++] = (1 << 3) | WIRE_LEN;
      pos = writeString(buf, writeVarint(buf, pos, streamBytes), stream, streamBytes);
    }
    if (at !== 0) {
      buf[pos++] = (2 << 3) | WIRE_VARINT;
      writeVarint(buf, pos, at);
    }
    return buf;
  });
}

export function decodeSourceResponse(bytes: Uint8Array): SourceResponse | undefined {
  return decodeOneField(bytes, (c, field, end): SourceResponse | undefined => {
    if (field === SOURCE_CREDITS) return { $typeName: "keyway.v1.SourceResponse", kind: { case: "credits", value: credits(readVarintField(c, end)) } };
    if (field !== SOURCE_COMMITTED) return undefined;
    let stream = "";
    let position = 0;
    while (c.pos < end) {
      const tag = readTag(c, end);
      const wireType = tag & 7;
      if (tag === ((1 << 3) | WIRE_LEN)) stream = readString(c, readLength(c, end));
      else if (tag === ((2 << 3) | WIRE_VARINT)) position = readVarint(c, end);
      else if (tag >>> 3 === 1 || tag >>> 3 === 2) throw NOT_FAST;
      else skipField(c, wireType, end);
    }
    return { $typeName: "keyway.v1.SourceResponse", kind: { case: "committed", value: { $typeName: "keyway.v1.Committed", stream, position: BigInt(position) } } };
  });
}

export function encodeSinkRequest(message: SinkRequest): Buffer | undefined {
  const { kind } = message;
  if (message.$unknown !== undefined || (kind.case !== "credits" && kind.case !== "ack") || kind.value.$unknown !== undefined) return undefined;
  return fastPath(() => (kind.case === "credits" ? varintMessage(SINK_CREDITS, uint32Of(kind.value.records)) : varintMessage(SINK_ACK, varintOf(kind.value.sequence))));
}

export function decodeSinkRequest(bytes: Uint8Array): SinkRequest | undefined {
  return decodeOneField(bytes, (c, field, end): SinkRequest | undefined => {
    if (field === SINK_CREDITS) return { $typeName: "keyway.v1.SinkRequest", kind: { case: "credits", value: credits(readVarintField(c, end)) } };
    if (field !== SINK_ACK) return undefined;
    const sequence = BigInt(readVarintField(c, end));
    return { $typeName: "keyway.v1.SinkRequest", kind: { case: "ack", value: { $typeName: "keyway.v1.Ack", sequence } } };
  });
}

/** Field 1 of a message holding one varint (Credits, Ack), as protobuf-es reads it: 0 when absent, the last one when repeated. */
function readVarintField(c: Cursor, end: number): number {
  let value = 0;
  while (c.pos < end) {
    const tag = readTag(c, end);
    if (tag === ((1 << 3) | WIRE_VARINT)) value = readVarint(c, end);
    else if (tag >>> 3 === 1) throw NOT_FAST;
    else skipField(c, tag & 7, end);
  }
  return value;
}

function credits(records: number): { $typeName: "keyway.v1.Credits"; records: number } {
  // protobuf-es keeps a uint32's low 32 bits of a longer varint: it decides.
  if (records > UINT32_MAX) throw NOT_FAST;
  return { $typeName: "keyway.v1.Credits", records };
}

function uint32Of(value: unknown): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > UINT32_MAX) throw NOT_FAST;
  return value;
}

/** A oneof member `field` holding a message whose only field, 1, is the varint `value` (left out when 0). */
function varintMessage(field: number, value: number): Buffer {
  const size = value === 0 ? 0 : 1 + varintSize(value);
  const buf = Buffer.allocUnsafe(lengthFieldSize(size));
  buf[0] = (field << 3) | WIRE_LEN;
  const pos = writeVarint(buf, 1, size);
  if (value !== 0) {
    buf[pos] = (1 << 3) | WIRE_VARINT;
    writeVarint(buf, pos + 1, value);
  }
  return buf;
}
