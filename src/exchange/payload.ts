/** Records cross an exchange link as one node:v8 buffer of parallel arrays: values are whatever the app's stages produce. */
import { deserialize, serialize } from "node:v8";
import type { SinkOutput } from "../connector/types.ts";
import type { KeyedBatch } from "../runtime/dataflow.ts";

/**
 * Records per exchange batch at most. A source batch (a 64 KiB file chunk is ~9k words) goes
 * out in pieces: several in a link's window at once keep both ends busy, and a receiver starts on
 * the first piece while the rest travel.
 */
export const EXCHANGE_BATCH_RECORDS_MAX = 4096;

/**
 * A batch as it travels: each record's upstream as an index into the batch's few distinct names
 * (node:v8 writes every string in full, and a file source's name is its path), and the hashes as
 * raw int32s (4 bytes each, where node:v8 writes a number of that size in 6).
 */
interface WireBatch extends Omit<KeyedBatch, "upstreams" | "hashes"> {
  hashes: Int32Array;
  upstreamNames: string[];
  upstreamOf: number[];
}

function toWire(batch: KeyedBatch): WireBatch {
  const { upstreams, hashes, ...rest } = batch;
  const upstreamNames: string[] = [];
  const upstreamOf: number[] = [];
  let last = "";
  let lastIndex = -1;
  for (let i = 0; i < upstreams.length; i++) {
    const name = upstreams[i]!;
    if (name !== last || lastIndex < 0) {
      lastIndex = upstreamNames.indexOf(name);
      if (lastIndex < 0) lastIndex = upstreamNames.push(name) - 1;
      last = name;
    }
    upstreamOf.push(lastIndex);
  }
  return { ...rest, hashes: new Int32Array(hashes), upstreamNames, upstreamOf };
}

/** The batch as payloads of at most EXCHANGE_BATCH_RECORDS_MAX records each, in order. */
export function encodeRecords(batch: KeyedBatch): Array<{ records: number; payload: Uint8Array }> {
  const n = batch.values.length;
  if (n <= EXCHANGE_BATCH_RECORDS_MAX) return [{ records: n, payload: serialize(toWire(batch)) }];
  const pieces: Array<{ records: number; payload: Uint8Array }> = [];
  for (let from = 0; from < n; from += EXCHANGE_BATCH_RECORDS_MAX) {
    const to = Math.min(n, from + EXCHANGE_BATCH_RECORDS_MAX);
    const part = <T>(list: T[]) => (list.length === 0 ? [] : list.slice(from, to));
    const piece: KeyedBatch = {
      keys: batch.keys.slice(from, to),
      hashes: batch.hashes.slice(from, to),
      values: batch.values.slice(from, to),
      lineage: part(batch.lineage),
      upstreams: part(batch.upstreams),
      seqs: part(batch.seqs),
      subs: part(batch.subs),
      ...(batch.quiet === true ? { quiet: true as const } : {}),
    };
    pieces.push({ records: to - from, payload: serialize(toWire(piece)) });
  }
  return pieces;
}

export function decodeRecords(bytes: Uint8Array): KeyedBatch {
  const { hashes, upstreamNames, upstreamOf, ...rest } = deserialize(bytes) as WireBatch;
  const upstreams: string[] = [];
  for (let i = 0; i < upstreamOf.length; i++) upstreams.push(upstreamNames[upstreamOf[i]!]!);
  // By push: Array.from of a typed array takes the iterator protocol, 4x slower.
  const hashList: number[] = [];
  for (let i = 0; i < hashes.length; i++) hashList.push(hashes[i]!);
  return { ...rest, hashes: hashList, upstreams };
}

/** Sink output as payloads of at most `maxRecords` records each, in order. */
export function encodeSinkRecords({ values, ids, meta }: SinkOutput, maxRecords = EXCHANGE_BATCH_RECORDS_MAX): Array<{ records: number; payload: Uint8Array }> {
  const pieces: Array<{ records: number; payload: Uint8Array }> = [];
  for (let from = 0; from < values.length; from += maxRecords) {
    const to = Math.min(values.length, from + maxRecords);
    const whole = values.length <= maxRecords;
    const piece: SinkOutput = { values: whole ? values : values.slice(from, to) };
    if (ids !== undefined) piece.ids = whole ? ids : ids.slice(from, to);
    if (meta !== undefined) piece.meta = whole ? meta : meta.slice(from, to);
    pieces.push({ records: to - from, payload: serialize(piece) });
  }
  return pieces;
}

export function decodeSinkRecords(bytes: Uint8Array): SinkOutput {
  return deserialize(bytes) as SinkOutput;
}
