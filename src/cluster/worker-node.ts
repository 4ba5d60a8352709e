/**
 * One worker's part of a cluster: the current partition map (swapped between batches), the
 * stages it runs for records other workers route to it, and the slot state it hands over or
 * takes in when slots move. I/O stays in the handlers; the rest is plain functions over flows.
 */
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "../log/logger.ts";
import {
  ExportSlotsResponseSchema,
  ImportSlotsResponseSchema,
  LeaveResponseSchema,
  ProcessResponseSchema,
  UpdateMapResponseSchema,
  WorkerStatsResponseSchema,
  type ExportSlotsRequest,
  type ImportSlotsRequest,
  type ProcessRequest,
  type SlotState,
  type UpdateMapRequest,
} from "../protocol/gen/keyway/v1/cluster_pb.ts";
import type { PartitionMap } from "../routing/partition-map.ts";
import type { Dataflow, ForwardFn, Placement } from "../runtime/dataflow.ts";
import { dropSlot, exportSlot, importSlot } from "../runtime/state-store.ts";
import { decodeBatch, decodeCollected, encodeBatch, encodeCollected, mapFromMessage } from "./codec.ts";
import { createPeerClients, grpcError, type Handlers } from "./grpc.ts";
import type { Worker } from "./membership.ts";

const RATE_WINDOW_MS = 2000;

/** The WorkerService methods every worker answers itself. */
export const WORKER_METHODS = ["Process", "ExportSlots", "ImportSlots", "UpdateMap", "Leave", "WorkerStats"] as const;

export interface WorkerNode {
  readonly placement: Placement;
  members(): readonly Worker[];
  selfId(): string;
  /** The forward function of pipeline `pipeline`'s dataflow: a Process call to the owner. */
  forwardFor(pipeline: number): ForwardFn;
  /** The worker's compiled pipelines, once built (they need forwardFor, so they come after). */
  attach(flows: readonly Dataflow[]): void;
  /** Takes a new map: slots this worker no longer owns are forgotten. */
  applyMap(map: PartitionMap, members: readonly Worker[]): void;
  exportSlots(slots: readonly number[]): SlotState[];
  importSlots(states: readonly SlotState[]): number;
  stats(): { keys: number; recordsProcessed: number; recordsPerSecond: number };
  readonly peers: ReturnType<typeof createPeerClients>;
  /** The handlers of the worker-side methods of WorkerService. */
  handlers(onLeave: (reason: string) => void): Handlers;
}

/** selfAddress identifies this worker in membership lists until it knows its id. */
export function createWorkerNode(placement: Placement, members: Worker[], selfAddress: string, log: Logger): WorkerNode {
  let flows: readonly Dataflow[] = [];
  let currentMembers = members;
  let self = members.find((m) => m.address === selfAddress)?.id ?? "";
  const recordsProcessed = () => flows.reduce((n, f) => n + f.recordsRun(), 0);
  const peers = createPeerClients();
  // Rate over the last window: a sample taken at most every RATE_WINDOW_MS.
  let sample = { atMs: Date.now(), records: 0 };
  let recordsPerSecond = 0;
  const updateRate = () => {
    const now = Date.now();
    if (now - sample.atMs < RATE_WINDOW_MS) return;
    recordsPerSecond = ((recordsProcessed() - sample.records) * 1000) / (now - sample.atMs);
    sample = { atMs: now, records: recordsProcessed() };
  };

  const addressOf = (index: number): string => {
    const id = placement.map.workers[index]!;
    const member = currentMembers.find((m) => m.id === id);
    if (member === undefined) throw new Error(`worker ${id} is not a member`);
    return member.address;
  };

  const node: WorkerNode = {
    placement,
    members: () => currentMembers,
    selfId: () => self,
    peers,
    forwardFor(pipeline) {
      return async (owner, stage, batch, withOrigins) => {
        const address = addressOf(owner);
        try {
          const response = await peers.call(address, "Process", {
            epoch: BigInt(placement.map.epoch),
            pipeline,
            stage,
            withOrigins,
            records: encodeBatch(batch),
          }, ProcessResponseSchema);
          return decodeCollected(response.output);
        } catch (err) {
          throw new Error(`worker ${placement.map.workers[owner]} at ${address} failed to process records: ${(err as Error).message}`);
        }
      };
    },
    attach(compiled) {
      flows = compiled;
    },
    applyMap(map, newMembers) {
      self = newMembers.find((m) => m.address === selfAddress)?.id ?? self;
      const index = map.workers.indexOf(self);
      placement.map = map;
      placement.self = index;
      currentMembers = [...newMembers];
      for (const flow of flows) {
        for (const store of flow.stores) {
          for (let slot = 0; slot < map.slotCount; slot++) {
            if (map.owners[slot] !== index) dropSlot(store, slot);
          }
        }
      }
    },
    exportSlots(slots) {
      return slots.map((slot) => ({ $typeName: "keyway.v1.SlotState", slot, pipelines: flows.map((f) => exportSlot(f.stores, slot)) }) as SlotState);
    },
    importSlots(states) {
      let keys = 0;
      for (const state of states) {
        flows.forEach((flow, i) => importSlot(flow.stores, state.slot, state.pipelines[i]!));
      }
      for (const flow of flows) for (const store of flow.stores) keys += store.keyCount;
      return keys;
    },
    stats() {
      updateRate();
      const keys = flows.reduce((n, f) => n + f.stores.reduce((m, s) => m + s.keyCount, 0), 0);
      return { keys, recordsProcessed: recordsProcessed(), recordsPerSecond };
    },
    handlers(onLeave) {
      return {
        Process(call: grpc.ServerUnaryCall<ProcessRequest, unknown>, callback: grpc.sendUnaryData<unknown>) {
          const req = call.request;
          if (Number(req.epoch) !== placement.map.epoch) {
            callback(grpcError(grpc.status.FAILED_PRECONDITION, `records routed under epoch ${req.epoch}, this worker is at epoch ${placement.map.epoch}`));
            return;
          }
          const flow = flows[req.pipeline];
          if (flow === undefined) {
            callback(grpcError(grpc.status.INVALID_ARGUMENT, `no pipeline ${req.pipeline}`));
            return;
          }
          flow.runStage(req.stage, decodeBatch(req.records), req.withOrigins).then(
            (collected) => callback(null, create(ProcessResponseSchema, { output: encodeCollected(collected) })),
            (err: Error) => {
              log.error({ err: err.message, pipeline: req.pipeline, stage: req.stage }, "stage failed on behalf of another worker");
              callback(grpcError(grpc.status.INTERNAL, err.message));
            },
          );
        },
        ExportSlots(call: grpc.ServerUnaryCall<ExportSlotsRequest, unknown>, callback: grpc.sendUnaryData<unknown>) {
          callback(null, create(ExportSlotsResponseSchema, { slots: node.exportSlots(call.request.slots) }));
        },
        ImportSlots(call: grpc.ServerUnaryCall<ImportSlotsRequest, unknown>, callback: grpc.sendUnaryData<unknown>) {
          try {
            callback(null, create(ImportSlotsResponseSchema, { keys: BigInt(node.importSlots(call.request.slots)) }));
          } catch (err) {
            callback(grpcError(grpc.status.INVALID_ARGUMENT, (err as Error).message));
          }
        },
        UpdateMap(call: grpc.ServerUnaryCall<UpdateMapRequest, unknown>, callback: grpc.sendUnaryData<unknown>) {
          const { map, workers } = mapFromMessage(call.request.map!);
          node.applyMap(map, workers);
          callback(null, create(UpdateMapResponseSchema, {}));
        },
        Leave(call: grpc.ServerUnaryCall<{ reason: string }, unknown>, callback: grpc.sendUnaryData<unknown>) {
          callback(null, create(LeaveResponseSchema, {}));
          onLeave(call.request.reason);
        },
        WorkerStats(_call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) {
          const stats = node.stats();
          callback(null, create(WorkerStatsResponseSchema, { keys: BigInt(stats.keys), recordsProcessed: BigInt(stats.recordsProcessed), epoch: BigInt(placement.map.epoch), recordsPerSecond: stats.recordsPerSecond }));
        },
      };
    },
  };
  return node;
}
