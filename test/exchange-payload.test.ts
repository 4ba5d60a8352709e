/** The exchange's record payload: what a worker sends another comes out whole, in order, piece by piece. */
import { describe, expect, it } from "vitest";
import { ErrorCode, KeywayError } from "../src/errors.ts";
import { decodeRecords, decodeSinkRecords, encodeRecords, encodeSinkRecords, EXCHANGE_BATCH_RECORDS_MAX } from "../src/exchange/payload.ts";
import { createKeyHash } from "../src/routing/hash.ts";
import { emptyKeyedBatch, type KeyedBatch } from "../src/runtime/dataflow.ts";

const roundTrip = (batch: KeyedBatch): KeyedBatch => {
  const pieces = encodeRecords(batch);
  expect(pieces).toHaveLength(1);
  return decodeRecords(pieces[0]!.payload);
};

/** Strings of every width: ASCII, Latin-1, beyond U+00FF, surrogate pairs, a lone surrogate, and long ones. */
const TEXTS = ["", "a", "word", "café", "naïve résumé", "Ωμέγα", "日本語のテキスト", "emoji 😀 pair", "lone \ud800 surrogate", "x".repeat(12), "y".repeat(13), "long é ".repeat(40), "z".repeat(100_000)];

const malformed = (decode: () => unknown): void => expect(decode).toThrow(expect.objectContaining({ name: "KeywayError", code: ErrorCode.MALFORMED }));

describe("exchange record payload", () => {
  it("round-trips keys, hashes (both signs), values, lineage and marks, split into pieces in order", async () => {
    const hashOf = await createKeyHash();
    const n = EXCHANGE_BATCH_RECORDS_MAX * 2 + 5;
    const batch: KeyedBatch = emptyKeyedBatch();
    for (let i = 0; i < n; i++) {
      const key = i % 7 === 0 ? new Uint8Array([i & 0xff, 0, 0xff]) : `k${i}`;
      batch.keys.push(key);
      batch.hashes.push(hashOf(key));
      batch.values.push(i % 3 === 0 ? { n: i, tag: "x" } : `v${i}`);
      batch.lineage.push(`src@${i}:0`);
      batch.upstreams.push(i % 2 === 0 ? "/data/part-0.txt" : "/data/part-1.txt");
      batch.seqs.push(i * 10);
      batch.subs.push(i % 4);
    }
    expect(batch.hashes.some((h) => h < 0) && batch.hashes.some((h) => h > 0)).toBe(true);
    const pieces = encodeRecords(batch);
    expect(pieces.map((p) => p.records)).toEqual([EXCHANGE_BATCH_RECORDS_MAX, EXCHANGE_BATCH_RECORDS_MAX, 5]);
    const decoded = pieces.map((p) => decodeRecords(p.payload));
    const joined = emptyKeyedBatch();
    for (const piece of decoded) for (const field of Object.keys(joined) as (keyof KeyedBatch)[]) (joined[field] as unknown[]).push(...(piece[field] as unknown[]));
    expect(joined).toEqual(batch);
    expect(Array.isArray(decoded[0]!.hashes)).toBe(true);
  });

  it("writes marks at the narrowest width that holds them, and any mark exactly", () => {
    const withMarks = (seqs: number[]): KeyedBatch => ({ ...emptyKeyedBatch(), keys: seqs.map((_, i) => `k${i}`), hashes: seqs.map(() => 1), values: seqs.map(() => 0), upstreams: seqs.map(() => "s"), seqs, subs: seqs.map((_, i) => i) });
    const columns = [[1, 255], [256, 65_535], [65_536, 2 ** 32 - 1], [2 ** 32, Number.MAX_SAFE_INTEGER], [-1, 2], [0.5, 3]];
    const sizes = columns.map((seqs) => {
      const batch = withMarks(seqs);
      expect(roundTrip(batch)).toEqual(batch);
      return encodeRecords(batch)[0]!.payload.length;
    });
    // Two seqs a batch: each wider column costs two bytes a width step more (1, 2, 4, 8 bytes).
    expect(sizes.slice(1, 4).map((size, i) => size - sizes[i]!)).toEqual([2, 4, 8]);
    expect(sizes[4]).toBe(sizes[3]);
    expect(sizes[5]).toBe(sizes[3]);
  });

  it("keeps a replica's quiet flag", () => {
    const batch: KeyedBatch = { ...emptyKeyedBatch(), keys: ["a"], hashes: [-5], values: [1], quiet: true };
    expect(roundTrip(batch)).toEqual(batch);
  });

  it("packs string keys and values of every width exactly", () => {
    const batch: KeyedBatch = { ...emptyKeyedBatch(), keys: TEXTS.map((t, i) => `${i}:${t}`), hashes: TEXTS.map((_, i) => (i - 6) * 1_000_003), values: [...TEXTS].reverse() };
    expect(roundTrip(batch)).toEqual(batch);
    // A column of plain ASCII only: one byte a character.
    const ascii = { ...emptyKeyedBatch(), keys: ["ab", "cd"], hashes: [0, 0], values: ["ef", "gh"] };
    expect(roundTrip(ascii)).toEqual(ascii);
  });

  it("packs byte keys and byte values, and copies them out of the payload", () => {
    const batch: KeyedBatch = { ...emptyKeyedBatch(), keys: [Uint8Array.of(1, 2), new Uint8Array(0), Uint8Array.of(255)], hashes: [1, 2, 3], values: [Uint8Array.of(9), Uint8Array.of(8, 7), new Uint8Array(300).fill(6)] };
    const back = roundTrip(batch);
    expect(back).toEqual(batch);
    expect((back.keys[0] as Uint8Array).buffer.byteLength).toBe(2);
  });

  it("leaves out values that are their keys, and gives them back as their own array", () => {
    const keys = ["the", "quick", "brown", "fox", "the"];
    const batch: KeyedBatch = { ...emptyKeyedBatch(), keys, hashes: [1, -2, 3, -4, 1], values: [...keys] };
    const other: KeyedBatch = { ...batch, values: [...keys.slice(0, 4), "THE"] };
    const [same, differing] = [batch, other].map((b) => encodeRecords(b)[0]!.payload);
    expect(same!.length).toBeLessThan(differing!.length);
    const back = decodeRecords(same!);
    expect(back).toEqual(batch);
    expect(back.values).not.toBe(back.keys);
    expect(decodeRecords(differing!)).toEqual(other);
  });

  it("sends an empty batch as one empty piece", () => {
    const pieces = encodeRecords(emptyKeyedBatch());
    expect(pieces.map((p) => p.records)).toEqual([0]);
    expect(decodeRecords(pieces[0]!.payload)).toEqual(emptyKeyedBatch());
  });

  it("gives a MALFORMED KeywayError for truncated, padded, mistyped and garbled bytes", () => {
    const batch: KeyedBatch = { keys: ["a", Uint8Array.of(1)], hashes: [1, -1], values: [{ x: 1 }, "é"], lineage: ["l0", "l1"], upstreams: ["u", "v"], seqs: [1, 2], subs: [0, 1] };
    const packed: KeyedBatch = { ...emptyKeyedBatch(), keys: ["ab", "日本"], hashes: [3, 4], values: [Uint8Array.of(5), Uint8Array.of(6)], upstreams: ["u", "u"], seqs: [1, 2], subs: [0, 0] };
    for (const b of [batch, packed]) {
      const payload = encodeRecords(b)[0]!.payload;
      for (let length = 0; length < payload.length; length++) malformed(() => decodeRecords(payload.subarray(0, length)));
      malformed(() => decodeRecords(Uint8Array.of(...payload, 0)));
      malformed(() => decodeSinkRecords(payload));
    }
    const payload = encodeRecords(packed)[0]!.payload;
    // Column kind, text width, an upstream index past the names: each byte at its place.
    const garbled = (at: number, value: number) => Uint8Array.from(payload, (byte, i) => (i === at ? value : byte));
    malformed(() => decodeRecords(garbled(6, 9)));
    malformed(() => decodeRecords(garbled(7, 3)));
    let seed = 1;
    const random = () => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
    for (let round = 0; round < 2000; round++) {
      const bytes = Uint8Array.from(payload);
      for (let k = 0; k < 3; k++) bytes[Math.floor(random() * bytes.length)] = Math.floor(random() * 256);
      try {
        decodeRecords(bytes);
      } catch (err) {
        expect(err).toBeInstanceOf(KeywayError);
      }
    }
  });
});

describe("exchange sink payload", () => {
  it("round-trips string, byte and object values with ids and meta, in pieces", () => {
    const values = TEXTS;
    expect(decodeSinkRecords(encodeSinkRecords({ values })[0]!.payload)).toEqual({ values });
    const bytes = { values: [Uint8Array.of(1), Uint8Array.of(2, 3)], ids: ["p:1", "p:2"] };
    expect(decodeSinkRecords(encodeSinkRecords(bytes)[0]!.payload)).toEqual(bytes);
    const mixed = { values: ["a", Uint8Array.of(1), { o: 1 } as never], ids: ["1", "2", "3"], meta: [undefined, { key: "k", headers: { h: "v" } } as never, undefined] };
    expect(decodeSinkRecords(encodeSinkRecords(mixed)[0]!.payload)).toEqual(mixed);
    const many = { values: Array.from({ length: 10 }, (_, i) => `out ${i}`), ids: Array.from({ length: 10 }, (_, i) => `id${i}`) };
    const pieces = encodeSinkRecords(many, 4);
    expect(pieces.map((p) => p.records)).toEqual([4, 4, 2]);
    const back = pieces.map((p) => decodeSinkRecords(p.payload));
    expect({ values: back.flatMap((o) => o.values), ids: back.flatMap((o) => o.ids!) }).toEqual(many);
    expect(encodeSinkRecords(many, Infinity).map((p) => p.records)).toEqual([10]);
  });

  it("sends no piece for no output", () => {
    expect(encodeSinkRecords({ values: [] })).toEqual([]);
  });

  it("gives a MALFORMED KeywayError for truncated bytes and for a record batch", () => {
    const payload = encodeSinkRecords({ values: ["a", "bé"], ids: ["1", "2"] })[0]!.payload;
    for (let length = 0; length < payload.length; length++) malformed(() => decodeSinkRecords(payload.subarray(0, length)));
    malformed(() => decodeRecords(payload));
  });
});
