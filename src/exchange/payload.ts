/** Records cross an exchange link as one node:v8 buffer of parallel arrays: values are whatever the app's stages produce. */
import { deserialize, serialize } from "node:v8";
import type { Payload } from "../connector/types.ts";
import type { KeyedBatch } from "../runtime/dataflow.ts";

export function encodeRecords(batch: KeyedBatch): Uint8Array {
  return serialize(batch);
}

export function decodeRecords(bytes: Uint8Array): KeyedBatch {
  return deserialize(bytes) as KeyedBatch;
}

export interface SinkRecords {
  values: Payload[];
  ids?: string[];
}

export function encodeSinkRecords(records: SinkRecords): Uint8Array {
  return serialize(records);
}

export function decodeSinkRecords(bytes: Uint8Array): SinkRecords {
  return deserialize(bytes) as SinkRecords;
}
