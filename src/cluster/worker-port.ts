/** The coordinator's WorkerPort over ControlService: its own worker's handlers directly, the others over gRPC. */
import * as grpc from "@grpc/grpc-js";
import {
  CopySlotsResponseSchema,
  ExportSlotsResponseSchema,
  FreezeResponseSchema,
  ImportSlotsResponseSchema,
  LeaveResponseSchema,
  ReleaseStreamResponseSchema,
  StartSourcesResponseSchema,
  StopSourcesResponseSchema,
  UpdateMapResponseSchema,
  WorkerStatsResponseSchema,
  type SlotState,
  type SourceAssignment,
  type WorkerStatsResponse,
} from "../protocol/gen/keyway/v1/cluster_pb.ts";
import { mapToMessage } from "./codec.ts";
import type { ControlClients, UnaryHandler } from "./control-rpc.ts";
import type { WorkerPort } from "./coordinator.ts";
import type { Worker } from "./membership.ts";

/** A step of a slot move: one that takes longer means a worker stopped answering, and the move fails rather than hangs. */
const MOVE_STEP_DEADLINE_MS = 60_000;
/** Stopping sources and giving up a stream wait for records to be committed: longer. */
const DRAIN_DEADLINE_MS = 10 * 60_000;
/**
 * A copy holds the membership lock for its chunk: a worker stopped mid-copy (SIGSTOP) delays
 * joins and shrinks this long at most, while the failure detector fences it meanwhile.
 */
const COPY_DEADLINE_MS = 20_000;
/** A probe of a worker that missed a heartbeat: a live process answers well within this. */
const PROBE_DEADLINE_MS = 300;
/** Status asks every worker for its figures; one that does not answer this fast shows without them. */
const STATS_DEADLINE_MS = 2000;

export function createWorkerPort(
  selfId: () => string,
  handlers: Record<string, UnaryHandler>,
  clients: ControlClients,
  figures: () => WorkerStatsResponse,
): WorkerPort {
  const local = (method: string, request: object): Promise<unknown> =>
    new Promise((resolve, reject) => handlers[method]!({ request, metadata: new grpc.Metadata() } as never, (err, res) => (err ? reject(err) : resolve(res))));
  const call = <T>(worker: Worker, method: string, request: object, output: Parameters<ControlClients["call"]>[3], deadlineMs = MOVE_STEP_DEADLINE_MS): Promise<T> =>
    (worker.id === selfId() ? local(method, request) : clients.call(worker.address, method, request, output, deadlineMs)) as Promise<T>;
  return {
    freeze: (w, epoch, slots) => call(w, "Freeze", { epoch: BigInt(epoch), slots }, FreezeResponseSchema).then(() => undefined),
    exportSlots: (w, slots) => call<{ slots: SlotState[] }>(w, "ExportSlots", { slots }, ExportSlotsResponseSchema).then((r) => r.slots),
    importSlots: (w, slots, map, context) => call(w, "ImportSlots", { slots, map: mapToMessage(map, context) }, ImportSlotsResponseSchema).then(() => undefined),
    updateMap: (w, map, context) => call(w, "UpdateMap", { map: mapToMessage(map, context) }, UpdateMapResponseSchema).then(() => undefined),
    copySlots: (w, slots, to) => call(w, "CopySlots", { slots, toWorkerId: to }, CopySlotsResponseSchema, COPY_DEADLINE_MS).then(() => undefined),
    releaseStream: (w, source, stream) => call(w, "ReleaseStream", { source, stream }, ReleaseStreamResponseSchema, DRAIN_DEADLINE_MS),
    startSources: (w, sources, generation) => call(w, "StartSources", { sources, generation: BigInt(generation) }, StartSourcesResponseSchema).then(() => undefined),
    stopSources: (w) => call<{ sources: SourceAssignment[] }>(w, "StopSources", {}, StopSourcesResponseSchema, DRAIN_DEADLINE_MS).then((r) => r.sources),
    leave: (w, reason) => call(w, "Leave", { reason }, LeaveResponseSchema).then(() => undefined),
    probe: (w) =>
      clients.call(w.address, "WorkerStats", {}, WorkerStatsResponseSchema, PROBE_DEADLINE_MS).then(
        () => "answered" as const,
        // Refused: nothing listens there any more (the process is gone). A timeout proves nothing.
        (err: grpc.ServiceError) => (err.code === grpc.status.UNAVAILABLE ? ("refused" as const) : ("silent" as const)),
      ),
    stats: (w) => (w.id === selfId() ? Promise.resolve(figures()) : clients.call(w.address, "WorkerStats", {}, WorkerStatsResponseSchema, STATS_DEADLINE_MS)),
  };
}
