/** Conversions between the engine's plain data and cluster.proto messages. */
import { create } from "@bufbuild/protobuf";
import { PartitionMapMessageSchema, type PartitionMapMessage } from "../protocol/gen/keyway/v1/cluster_pb.ts";
import type { PartitionMap } from "../routing/partition-map.ts";
import type { Worker } from "./membership.ts";
import type { OutputsWritten } from "./replication.ts";

/** What travels with a map: who the members are, who was fenced and how far their output got, who coordinates. */
export interface MapContext {
  members: readonly Worker[];
  fenced: readonly string[];
  written: readonly OutputsWritten[];
  /** The worker holding the coordinator role and the sinks. */
  coordinator: string;
}

/** The coordinator of a cluster whose role never moves (embedded): its first worker. */
export const FIRST_WORKER = "w0";

/** The map with every member listed, owners indexing the map's own worker list. */
export function mapToMessage(map: PartitionMap, context: MapContext): PartitionMapMessage {
  const { members, fenced, written } = context;
  const listed = [...map.workers, ...members.map((m) => m.id).filter((id) => !map.workers.includes(id))];
  return create(PartitionMapMessageSchema, {
    epoch: BigInt(map.epoch),
    slotCount: map.slotCount,
    workers: listed.map((id) => {
      const m = members.find((w) => w.id === id);
      return { id, address: m?.address ?? "", connectorAddress: m?.connectorAddress ?? "", data: m?.data ?? false };
    }),
    owners: Array.from(map.owners),
    replicas: map.replicas,
    backups: Array.from(map.backups),
    fenced: [...fenced],
    written: written.map((w) => ({ workerId: w.worker, pipeline: w.pipeline, outputSeq: BigInt(w.outputSeq), ...(w.slot === undefined ? {} : { slot: w.slot }) })),
    coordinator: context.coordinator,
  });
}

export function mapFromMessage(message: PartitionMapMessage): { map: PartitionMap; members: Worker[]; fenced: string[]; written: OutputsWritten[]; coordinator: string } {
  const workers = message.workers.map((w) => ({ id: w.id, address: w.address, connectorAddress: w.connectorAddress, data: w.data }));
  return {
    map: {
      epoch: Number(message.epoch),
      slotCount: message.slotCount,
      workers: workers.map((w) => w.id),
      owners: Uint16Array.from(message.owners),
      replicas: Math.max(1, message.replicas),
      backups: Uint16Array.from(message.backups),
    },
    members: workers.filter((w) => w.address !== ""),
    fenced: message.fenced,
    written: message.written.map((w) => ({ worker: w.workerId, pipeline: w.pipeline, outputSeq: Number(w.outputSeq), ...(w.slot === undefined ? {} : { slot: w.slot }) })),
    coordinator: message.coordinator === "" ? FIRST_WORKER : message.coordinator,
  };
}
