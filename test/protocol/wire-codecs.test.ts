// The hand-written codecs of the record-carrying messages against protobuf-es: the same bytes out,
// the same messages in, and every input protobuf-es rejects left to it (so it fails the same way).
import { create, fromBinary, toBinary, type DescMessage } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { describe, expect, it } from "vitest";
import {
  ConnectorService,
  RecordBatchSchema,
  RecordSchema,
  SinkRequestSchema,
  SourceResponseSchema,
  SinkBatchSchema,
  SinkRecordSchema,
  SinkResponseSchema,
  SourceRequestSchema,
  type SinkResponse,
  type SourceRequest,
} from "../../src/protocol/gen/keyway/v1/connector_pb.ts";
import { decodeSourceRequest, encodeSourceRequest } from "../../src/protocol/wire/record-batch-codec.ts";
import { decodeSinkResponse, encodeSinkEntries, sinkBatchResponse } from "../../src/protocol/wire/sink-batch-codec.ts";
import type { RecordMeta } from "../../src/connector/types.ts";
import { decodeSinkRequest, decodeSourceResponse, encodeSinkRequest, encodeSourceResponse } from "../../src/protocol/wire/control-codecs.ts";
import { CONNECTOR_CODECS } from "../../src/protocol/wire/connector-codecs.ts";
import { clientDefinition, isDecodeFailure, serverDefinition } from "../../src/rpc/grpc-adapter.ts";

/** A seeded generator, so a failure replays. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
    return s / 2 ** 32;
  };
}

const TEXTS = ["", "a", "k17", "stream-é", "日本語", "emoji 🎉", "x".repeat(40), "ü".repeat(30), "ctrl\u0001\u007f"];

function pick<T>(r: () => number, items: readonly T[]): T {
  return items[Math.floor(r() * items.length)]!;
}

function bytesOf(r: () => number, most: number): Uint8Array {
  const bytes = new Uint8Array(Math.floor(r() * most));
  for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(r() * 256);
  return bytes;
}

function headersOf(r: () => number): { [key: string]: string } {
  const headers: { [key: string]: string } = {};
  if (r() < 0.6) return headers;
  const n = 1 + Math.floor(r() * 3);
  for (let i = 0; i < n; i++) headers[pick(r, TEXTS)] = pick(r, TEXTS);
  return headers;
}

function randomSourceRequest(r: () => number): SourceRequest {
  const records = Array.from({ length: Math.floor(r() * 6) }, () =>
    create(RecordSchema, {
      position: BigInt(Math.floor(r() * 2 ** (r() < 0.5 ? 7 : 48))),
      ...(r() < 0.4 ? { key: bytesOf(r, 4) } : {}),
      value: bytesOf(r, r() < 0.1 ? 300 : 30),
      eventTimeMs: r() < 0.5 ? 0n : BigInt(Math.floor(r() * 2 ** 41)),
      headers: headersOf(r),
      idempotencyId: r() < 0.7 ? "" : pick(r, TEXTS),
    }),
  );
  return create(SourceRequestSchema, { kind: { case: "batch", value: create(RecordBatchSchema, { stream: pick(r, TEXTS), records }) } });
}

function randomSinkResponse(r: () => number): SinkResponse {
  const records = Array.from({ length: Math.floor(r() * 6) }, () =>
    create(SinkRecordSchema, {
      id: pick(r, TEXTS),
      ...(r() < 0.4 ? { key: bytesOf(r, 4) } : {}),
      value: bytesOf(r, 30),
      eventTimeMs: r() < 0.5 ? 0n : BigInt(Math.floor(r() * 2 ** 41)),
      headers: headersOf(r),
    }),
  );
  return create(SinkResponseSchema, { kind: { case: "batch", value: create(SinkBatchSchema, { sequence: BigInt(Math.floor(r() * 1e6)), records }) } });
}

/** A message as plain data, without $unknown fields (the engine never reads them): bytes as arrays, Buffer or not. */
function known(value: unknown): unknown {
  if (typeof value === "bigint") return `${value}n`;
  if (value instanceof Uint8Array) return [...value];
  if (Array.isArray(value)) return value.map(known);
  if (typeof value !== "object" || value === null) return value;
  return Object.fromEntries(Object.entries(value).filter(([k, v]) => k !== "$unknown" && v !== undefined).map(([k, v]) => [k, known(v)]));
}

/**
 * Decodes `bytes` with protobuf-es and with a fast path, which must never accept what protobuf-es
 * rejects and must agree with it on what it takes. Returns protobuf-es's message (undefined: rejected).
 */
function agreesWithProtobufEs(schema: DescMessage, decode: (bytes: Uint8Array) => object | undefined, bytes: Uint8Array): object | undefined {
  let expected: object | undefined;
  try {
    expected = fromBinary(schema, bytes);
  } catch {
    expected = undefined;
  }
  const fast = decode(bytes);
  if (expected === undefined) expect(fast).toBeUndefined();
  else if (fast !== undefined) expect(known(fast)).toEqual(known(expected));
  return expected;
}

/** A record's metadata as the engine's runs carry it (an event time is a number there). */
function metaOf(record: { key?: Uint8Array; eventTimeMs: bigint; headers: { [key: string]: string } }): RecordMeta {
  return { ...(record.key === undefined ? {} : { key: record.key }), ...(record.eventTimeMs === 0n ? {} : { eventTimeMs: Number(record.eventTimeMs) }), headers: record.headers };
}

/** How the engine makes a SinkResponse{batch}: its output lists encoded (encodeSinkEntries), then one batch cut from them. */
function encodeSinkResponse(message: SinkResponse): Buffer | undefined {
  if (message.kind.case !== "batch") return undefined;
  const { sequence, records } = message.kind.value;
  // An event time past 2^53 is not a number the engine can hold.
  if (records.some((r) => r.eventTimeMs > 2n ** 53n)) return undefined;
  const entries = encodeSinkEntries(
    records.map((r) => r.value),
    records.map((r) => r.id),
    records.map(metaOf),
  );
  return sinkBatchResponse(sequence, [entries.bytes], entries.bytes.length);
}

const sourceDeserialize = serverDefinition(ConnectorService, 1 << 20, CONNECTOR_CODECS).Source!.requestDeserialize;
const sinkDeserialize = clientDefinition(ConnectorService, CONNECTOR_CODECS).Sink!.responseDeserialize;

const cases = [
  {
    name: "SourceRequest{batch}",
    schema: SourceRequestSchema as DescMessage,
    random: randomSourceRequest,
    encode: encodeSourceRequest as (m: never) => Buffer | undefined,
    decode: decodeSourceRequest as (b: Uint8Array) => object | undefined,
    batchField: 3,
  },
  {
    name: "SinkResponse{batch}",
    schema: SinkResponseSchema as DescMessage,
    random: randomSinkResponse,
    encode: encodeSinkResponse as (m: never) => Buffer | undefined,
    decode: decodeSinkResponse as (b: Uint8Array) => object | undefined,
    batchField: 2,
  },
];

describe.each(cases)("$name codec", ({ schema, random, encode, decode, batchField }) => {
  it("encodes the bytes protobuf-es encodes and decodes what it decodes, for random messages", () => {
    const r = rng(7);
    for (let i = 0; i < 2000; i++) {
      const message = random(r);
      const expected = toBinary(schema, message as never);
      const fast = encode(message as never);
      expect(fast).toBeDefined();
      expect(new Uint8Array(fast!)).toEqual(expected);
      expect(known(decode(expected))).toEqual(known(fromBinary(schema, expected)));
    }
  });

  it("takes an empty batch, and leaves an empty message and other kinds to protobuf-es", () => {
    const empty = create(schema, { kind: { case: "batch", value: {} } } as never);
    const bytes = toBinary(schema, empty);
    expect(new Uint8Array(encode(empty as never)!)).toEqual(bytes);
    expect(known(decode(bytes))).toEqual(known(fromBinary(schema, bytes)));
    expect(decode(new Uint8Array(0))).toBeUndefined();
    expect(encode(create(schema) as never)).toBeUndefined();
  });

  it("skips unknown fields inside the batch and its records; unknown top-level fields go to protobuf-es", () => {
    const message = random(rng(3));
    const bytes = toBinary(schema, message as never);
    const withUnknown = (inner: Uint8Array) => {
      const w = new BinaryWriter();
      w.tag(batchField, WireType.LengthDelimited).bytes(inner);
      return w.finish();
    };
    const batchBytes = fromBinary(schema, bytes) as unknown as { kind: { value: object } };
    const innerSchema = schema === SourceRequestSchema ? RecordBatchSchema : SinkBatchSchema;
    const recordSchema = schema === SourceRequestSchema ? RecordSchema : SinkRecordSchema;
    const inner = new BinaryWriter();
    inner.tag(99, WireType.Varint).uint64(12345n);
    inner.tag(98, WireType.Bit64).fixed64(1n);
    inner.tag(97, WireType.Bit32).fixed32(1);
    inner.tag(96, WireType.LengthDelimited).bytes(new Uint8Array([1, 2, 3]));
    const record = new BinaryWriter();
    record.tag(50, WireType.Varint).uint32(7);
    record.raw(toBinary(recordSchema as DescMessage, create(recordSchema as DescMessage, { value: new Uint8Array([9]), headers: { a: "b" } } as never)));
    inner.tag(2, WireType.LengthDelimited).bytes(record.finish());
    inner.raw(toBinary(innerSchema as DescMessage, batchBytes.kind.value as never));
    const full = withUnknown(inner.finish());
    expect(decode(full)).toBeDefined();
    expect(known(decode(full))).toEqual(known(fromBinary(schema, full)));
    const topUnknown = new BinaryWriter().raw(bytes).tag(77, WireType.Varint).uint32(1).finish();
    expect(decode(topUnknown)).toBeUndefined();
  });

  it("decodes fields in any order, the last of a repeated singular field winning", () => {
    const r = rng(11);
    for (let i = 0; i < 200; i++) {
      const message = random(r) as unknown as { kind: { value: { records: object[] } } };
      const recordSchema = (schema === SourceRequestSchema ? RecordSchema : SinkRecordSchema) as DescMessage;
      const inner = new BinaryWriter();
      for (const rec of message.kind.value.records) {
        // Each record's fields reversed, then its field 3 again: protobuf-es takes the last.
        const fields = splitFields(toBinary(recordSchema, rec as never)).reverse();
        const w = new BinaryWriter();
        for (const f of fields) w.raw(f);
        w.tag(3, WireType.LengthDelimited).bytes(new Uint8Array([42]));
        inner.tag(2, WireType.LengthDelimited).bytes(w.finish());
      }
      inner.tag(1, schema === SourceRequestSchema ? WireType.LengthDelimited : WireType.Varint);
      if (schema === SourceRequestSchema) inner.string("late-stream");
      else inner.uint64(5n);
      const bytes = new BinaryWriter().tag(batchField, WireType.LengthDelimited).bytes(inner.finish()).finish();
      expect(known(decode(bytes))).toEqual(known(fromBinary(schema, bytes)));
    }
  });

  it("tells an absent key from an empty one", () => {
    const recordSchema = (schema === SourceRequestSchema ? RecordSchema : SinkRecordSchema) as DescMessage;
    const batchSchema = (schema === SourceRequestSchema ? RecordBatchSchema : SinkBatchSchema) as DescMessage;
    const records = [create(recordSchema, { value: new Uint8Array([1]) } as never), create(recordSchema, { key: new Uint8Array(0), value: new Uint8Array([2]) } as never)];
    const keyOf = (record: { key?: Uint8Array }) => (record.key === undefined ? undefined : [...record.key]);
    const message = create(schema, { kind: { case: "batch", value: create(batchSchema, { records } as never) } } as never);
    const bytes = toBinary(schema, message);
    expect(new Uint8Array(encode(message as never)!)).toEqual(bytes);
    const decoded = decode(bytes) as { kind: { value: { records: Array<{ key?: Uint8Array }> } } };
    expect(keyOf(decoded.kind.value.records[0]!)).toBeUndefined();
    expect(keyOf(decoded.kind.value.records[1]!)).toEqual([]);
  });

  it("leaves values outside its range to protobuf-es: varints of 2^49 and more, negative int64", () => {
    const recordSchema = (schema === SourceRequestSchema ? RecordSchema : SinkRecordSchema) as DescMessage;
    const batchSchema = (schema === SourceRequestSchema ? RecordBatchSchema : SinkBatchSchema) as DescMessage;
    for (const eventTimeMs of [2n ** 49n, 2n ** 63n - 1n, -1n]) {
      const records = [create(recordSchema, { value: new Uint8Array([1]), eventTimeMs } as never)];
      const message = create(schema, { kind: { case: "batch", value: create(batchSchema, { records } as never) } } as never);
      const bytes = toBinary(schema, message);
      expect(decode(bytes)).toBeUndefined();
      // The engine's sink output takes negative event times (ten bytes); a source's fast path leaves them.
      if (eventTimeMs > 2n ** 53n || (schema === SourceRequestSchema && eventTimeMs < 0n)) expect(encode(message as never)).toBeUndefined();
      else expect(new Uint8Array(encode(message as never)!)).toEqual(bytes);
      const deserialize = schema === SourceRequestSchema ? sourceDeserialize : sinkDeserialize;
      expect(known(deserialize(Buffer.from(bytes)))).toEqual(known(fromBinary(schema, bytes)));
    }
  });

  it("never accepts bytes protobuf-es rejects, and agrees with it on the rest (truncations, corruptions)", () => {
    const r = rng(5);
    const deserialize = schema === SourceRequestSchema ? sourceDeserialize : sinkDeserialize;
    let rejected = 0;
    for (let i = 0; i < 300; i++) {
      const bytes = toBinary(schema, random(r) as never);
      const variants: Uint8Array[] = [];
      for (let cut = 0; cut < bytes.length; cut += 1 + Math.floor(r() * 3)) variants.push(bytes.subarray(0, cut));
      for (let k = 0; k < 5 && bytes.length > 0; k++) {
        const corrupt = bytes.slice();
        corrupt[Math.floor(r() * corrupt.length)] = Math.floor(r() * 256);
        variants.push(corrupt);
      }
      for (const variant of variants) {
        const expected = agreesWithProtobufEs(schema, decode, variant);
        if (expected === undefined) rejected++;
        if (schema === SourceRequestSchema) {
          const result = deserialize(Buffer.from(variant));
          if (expected === undefined) expect(isDecodeFailure(result) && result.decodeFailure === "malformed").toBe(true);
          else expect(known(result)).toEqual(known(expected));
        }
      }
    }
    expect(rejected).toBeGreaterThan(100);
  });

  it("leaves a map entry with an unknown field to protobuf-es, which does not skip it", () => {
    const entry = new BinaryWriter().tag(1, WireType.LengthDelimited).string("h").tag(19000, WireType.Bit64).fixed64(1n).tag(2, WireType.LengthDelimited).string("v").finish();
    const record = new BinaryWriter().tag(5, WireType.LengthDelimited).bytes(entry).finish();
    const bytes = new BinaryWriter().tag(batchField, WireType.LengthDelimited).bytes(new BinaryWriter().tag(2, WireType.LengthDelimited).bytes(record).finish()).finish();
    expect(decode(bytes)).toBeUndefined();
  });

  it("rejects a string that is not UTF-8 as protobuf-es does", () => {
    const recordSchema = (schema === SourceRequestSchema ? RecordSchema : SinkRecordSchema) as DescMessage;
    const stringField = schema === SourceRequestSchema ? 6 : 1;
    const record = new BinaryWriter().tag(stringField, WireType.LengthDelimited).bytes(new Uint8Array([0x61, 0xff, 0x62])).finish();
    const bytes = new BinaryWriter().tag(batchField, WireType.LengthDelimited).bytes(new BinaryWriter().tag(2, WireType.LengthDelimited).bytes(record).finish()).finish();
    expect(() => fromBinary(schema, bytes)).toThrow();
    expect(decode(bytes)).toBeUndefined();
    void recordSchema;
  });
});

function randomControl(r: () => number): { schema: DescMessage; message: object } {
  const big = () => BigInt(Math.floor(r() * 2 ** (r() < 0.5 ? 7 : 48)));
  const records = r() < 0.1 ? 0 : r() < 0.1 ? 0xffffffff : Math.floor(r() * 2 ** (r() < 0.5 ? 7 : 32));
  switch (Math.floor(r() * 4)) {
    case 0:
      return { schema: SourceResponseSchema, message: create(SourceResponseSchema, { kind: { case: "credits", value: { records } } }) };
    case 1:
      return { schema: SourceResponseSchema, message: create(SourceResponseSchema, { kind: { case: "committed", value: { stream: pick(r, TEXTS), position: r() < 0.1 ? 0n : big() } } }) };
    case 2:
      return { schema: SinkRequestSchema, message: create(SinkRequestSchema, { kind: { case: "credits", value: { records } } }) };
    default:
      return { schema: SinkRequestSchema, message: create(SinkRequestSchema, { kind: { case: "ack", value: { sequence: r() < 0.1 ? 0n : big() } } }) };
  }
}

const controlCodec = (schema: DescMessage) =>
  schema === SourceResponseSchema
    ? { encode: encodeSourceResponse as (m: never) => Buffer | undefined, decode: decodeSourceResponse as (b: Uint8Array) => object | undefined }
    : { encode: encodeSinkRequest as (m: never) => Buffer | undefined, decode: decodeSinkRequest as (b: Uint8Array) => object | undefined };

describe("the engine's sink output (encodeSinkEntries, sinkBatchResponse)", () => {
  const expectedBatch = (sequence: bigint, values: Array<string | Uint8Array>, ids: string[], meta: Array<RecordMeta | undefined>) =>
    toBinary(
      SinkResponseSchema,
      create(SinkResponseSchema, {
        kind: {
          case: "batch",
          value: create(SinkBatchSchema, {
            sequence,
            records: values.map((value, i) => {
              const m = meta[i];
              return create(SinkRecordSchema, {
                id: ids[i]!,
                value: typeof value === "string" ? Buffer.from(value) : value,
                ...(m?.key === undefined ? {} : { key: typeof m.key === "string" ? Buffer.from(m.key) : m.key }),
                ...(m?.eventTimeMs === undefined ? {} : { eventTimeMs: BigInt(Math.trunc(m.eventTimeMs)) }),
                headers: m?.headers ?? {},
              });
            }),
          }),
        },
      }),
    );

  it("encodes string values and keys as their UTF-8, and a batch cut across several writes, as protobuf-es does", () => {
    const r = rng(17);
    for (let round = 0; round < 300; round++) {
      const writes = Array.from({ length: 1 + Math.floor(r() * 3) }, () => {
        const n = Math.floor(r() * 5);
        const values = Array.from({ length: n }, () => (r() < 0.5 ? pick(r, TEXTS) : bytesOf(r, 20)));
        const ids = Array.from({ length: n }, () => pick(r, TEXTS));
        const meta = Array.from({ length: n }, (): RecordMeta | undefined =>
          r() < 0.5 ? undefined : { ...(r() < 0.5 ? { key: r() < 0.5 ? pick(r, TEXTS) : bytesOf(r, 4) } : {}), ...(r() < 0.5 ? { eventTimeMs: Math.floor((r() - 0.2) * 2 ** 45) + 0.5 } : {}), headers: headersOf(r) },
        );
        const given = r() < 0.3 ? undefined : meta;
        return { values, ids, meta: given, entries: encodeSinkEntries(values, ids, given) };
      });
      // A batch takes each write's records from a random place on, as cut() does.
      const spans: Uint8Array[] = [];
      const values: Array<string | Uint8Array> = [];
      const ids: string[] = [];
      const meta: Array<RecordMeta | undefined> = [];
      for (const w of writes) {
        const from = Math.floor(r() * (w.values.length + 1));
        const start = from === 0 ? 0 : w.entries.ends[from - 1]!;
        spans.push(w.entries.bytes.subarray(start));
        values.push(...w.values.slice(from));
        ids.push(...w.ids.slice(from));
        meta.push(...(w.meta?.slice(from) ?? w.values.slice(from).map(() => undefined)));
      }
      const sequence = BigInt(Math.floor(r() * 1e9));
      const bytes = sinkBatchResponse(sequence, spans, spans.reduce((n, s) => n + s.length, 0));
      expect(new Uint8Array(bytes)).toEqual(expectedBatch(sequence, values, ids, meta));
    }
  });

  it("writes a negative or fractional event time as protobuf-es writes the truncated int64", () => {
    for (const eventTimeMs of [-1, -1.7, -(2 ** 40), 2.9, 2 ** 52 + 1]) {
      const meta = [{ eventTimeMs }];
      const entries = encodeSinkEntries(["v"], ["id"], meta);
      expect(new Uint8Array(sinkBatchResponse(3n, [entries.bytes], entries.bytes.length))).toEqual(expectedBatch(3n, ["v"], ["id"], meta));
    }
  });

  it("counts each record's share of a message as the limits do, and leaves a header that is not a string to its caller", () => {
    const entries = encodeSinkEntries(["abc", new Uint8Array(5)], ["é", ""], [undefined, { key: "kk", headers: { h: "vv" } }]);
    expect([...entries.counted]).toEqual([3 + 2 + 32, 5 + 0 + 32 + (2 + 32) + (1 + 2 + 32)]);
    expect(() => encodeSinkEntries(["v"], ["id"], [{ headers: { h: 7 as unknown as string } }])).toThrow();
  });
});

describe("the control messages' codec (Credits, Committed, Ack)", () => {
  it("encodes the bytes protobuf-es encodes and decodes what it decodes, for random messages", () => {
    const r = rng(11);
    for (let i = 0; i < 2000; i++) {
      const { schema, message } = randomControl(r);
      const { encode, decode } = controlCodec(schema);
      const expected = toBinary(schema, message as never);
      expect(new Uint8Array(encode(message as never)!)).toEqual(expected);
      expect(known(decode(expected))).toEqual(known(fromBinary(schema, expected)));
    }
  });

  it("leaves other kinds, unknown top-level fields and values outside its range to protobuf-es", () => {
    expect(encodeSourceResponse(create(SourceResponseSchema, { kind: { case: "ended", value: { stream: "a", position: 1n } } }))).toBeUndefined();
    expect(encodeSinkRequest(create(SinkRequestSchema, { kind: { case: "hello", value: {} } }))).toBeUndefined();
    expect(encodeSinkRequest(create(SinkRequestSchema, { kind: { case: "ack", value: { sequence: 2n ** 60n } } }))).toBeUndefined();
    const credits = toBinary(SinkRequestSchema, create(SinkRequestSchema, { kind: { case: "credits", value: { records: 5 } } }));
    expect(decodeSinkRequest(Buffer.concat([credits, credits]))).toBeUndefined();
    const wide = new BinaryWriter().tag(2, WireType.LengthDelimited).bytes(new BinaryWriter().tag(1, WireType.Varint).uint64(2n ** 33n).finish()).finish();
    expect(decodeSinkRequest(wide)).toBeUndefined();
    const late = new BinaryWriter().tag(3, WireType.LengthDelimited).bytes(new BinaryWriter().tag(1, WireType.Varint).uint64(2n ** 50n).finish()).finish();
    expect(decodeSinkRequest(late)).toBeUndefined();
    expect(known(fromBinary(SinkRequestSchema, late))).toEqual({ $typeName: "keyway.v1.SinkRequest", kind: { case: "ack", value: { $typeName: "keyway.v1.Ack", sequence: `${2n ** 50n}n` } } });
  });

  it("skips unknown fields inside the message, and never accepts bytes protobuf-es rejects", () => {
    const inner = new BinaryWriter().tag(9, WireType.LengthDelimited).string("x").tag(2, WireType.Varint).uint64(7n).tag(1, WireType.LengthDelimited).string("s").finish();
    const bytes = new BinaryWriter().tag(4, WireType.LengthDelimited).bytes(inner).finish();
    expect(known(decodeSourceResponse(bytes))).toEqual(known(fromBinary(SourceResponseSchema, bytes)));
    const r = rng(13);
    let rejected = 0;
    for (let i = 0; i < 500; i++) {
      const { schema, message } = randomControl(r);
      const bytes = toBinary(schema, message as never);
      const variants = [bytes.subarray(0, Math.floor(r() * bytes.length))];
      const corrupt = bytes.slice();
      corrupt[Math.floor(r() * corrupt.length)] = Math.floor(r() * 256);
      variants.push(corrupt);
      for (const variant of variants) if (agreesWithProtobufEs(schema, controlCodec(schema).decode, variant) === undefined) rejected++;
    }
    expect(rejected).toBeGreaterThan(50);
  });
});

describe("the server's Source deserializer", () => {
  it("answers a message over the limit, and malformed bytes, with a typed DecodeFailure", () => {
    const small = serverDefinition(ConnectorService, 10, CONNECTOR_CODECS).Source!.requestDeserialize;
    const big = toBinary(SourceRequestSchema, randomSourceRequest(rng(1)));
    const tooLarge = small(Buffer.concat([Buffer.from(big), Buffer.alloc(20)]));
    expect(isDecodeFailure(tooLarge) && tooLarge.decodeFailure).toBe("too_large");
    const truncated = sourceDeserialize(Buffer.from([(3 << 3) | 2, 50, 1, 2]));
    expect(isDecodeFailure(truncated) && truncated.decodeFailure).toBe("malformed");
  });
});

/** The top-level fields of a message's bytes, each with its tag. */
function splitFields(bytes: Uint8Array): Uint8Array[] {
  const fields: Uint8Array[] = [];
  let pos = 0;
  const varint = () => {
    let value = 0;
    let scale = 1;
    for (;;) {
      const byte = bytes[pos++]!;
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
      scale *= 128;
    }
  };
  while (pos < bytes.length) {
    const start = pos;
    const tag = varint();
    if ((tag & 7) === 0) {
      varint();
    } else {
      // Not `pos += varint()`: that adds to pos as it was before the length was read.
      const length = varint();
      pos += length;
    }
    fields.push(bytes.subarray(start, pos));
  }
  return fields;
}
