/** The exchange's record payload: what a worker sends another comes out whole, in order, piece by piece. */
import { describe, expect, it } from "vitest";
import { decodeRecords, encodeRecords, EXCHANGE_BATCH_RECORDS_MAX } from "../src/exchange/payload.ts";
import { createKeyHash } from "../src/routing/hash.ts";
import { emptyKeyedBatch, type KeyedBatch } from "../src/runtime/dataflow.ts";

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

  it("keeps a replica's quiet flag", () => {
    const batch: KeyedBatch = { ...emptyKeyedBatch(), keys: ["a"], hashes: [-5], values: [1], quiet: true };
    expect(decodeRecords(encodeRecords(batch)[0]!.payload)).toEqual(batch);
  });
});
