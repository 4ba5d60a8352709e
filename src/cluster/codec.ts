/** Conversions between the engine's plain data and cluster.proto messages. */
import { create } from "@bufbuild/protobuf";
import { deserialize, serialize } from "node:v8";
import { PartitionMapMessageSchema, type PartitionMapMessage } from "../protocol/gen/keyway/v1/cluster_pb.ts";
import type { PartitionMap } from "../routing/partition-map.ts";
import type { Collected, KeyedBatch } from "../runtime/dataflow.ts";
import type { Worker } from "./membership.ts";

export function mapToMessage(map: PartitionMap, workers: readonly Worker[]): PartitionMapMessage {
  return create(PartitionMapMessageSchema, {
    epoch: BigInt(map.epoch),
    slotCount: map.slotCount,
    workers: map.workers.map((id) => ({ id, address: workers.find((w) => w.id === id)?.address ?? "" })),
    owners: Array.from(map.owners),
  });
}

export function mapFromMessage(message: PartitionMapMessage): { map: PartitionMap; workers: Worker[] } {
  return {
    map: {
      epoch: Number(message.epoch),
      slotCount: message.slotCount,
      workers: message.workers.map((w) => w.id),
      owners: Uint16Array.from(message.owners),
    },
    workers: message.workers.map((w) => ({ id: w.id, address: w.address })),
  };
}

/** Records cross the wire as one node:v8 buffer: values are whatever the app's stages produce. */
export function encodeBatch(batch: KeyedBatch): Uint8Array {
  return serialize(batch);
}

export function decodeBatch(bytes: Uint8Array): KeyedBatch {
  return deserialize(bytes) as KeyedBatch;
}

export function encodeCollected(collected: Collected): Uint8Array {
  return serialize(collected);
}

export function decodeCollected(bytes: Uint8Array): Collected {
  return deserialize(bytes) as Collected;
}
