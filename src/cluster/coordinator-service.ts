/**
 * The coordinator's side of ControlService, served by the worker that holds it: its calls mapped
 * onto the Coordinator's operations, and its typed failures onto gRPC statuses.
 */
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { ErrorCode, KeywayError } from "../errors.ts";
import type { Logger } from "../log/logger.ts";
import {
  ClaimStreamResponseSchema,
  HeartbeatResponseSchema,
  JoinResponseSchema,
  ShrinkResponseSchema,
  SourcesDoneResponseSchema,
  StatusResponseSchema,
  type ClaimStreamRequest,
  type HeartbeatRequest,
  type JoinRequest,
  type ShrinkRequest,
  type SourcesDoneRequest,
  type StatusResponse,
} from "../protocol/gen/keyway/v1/cluster_pb.ts";
import { mapToMessage } from "./codec.ts";
import { grpcError, unary, type UnaryHandler } from "./control-rpc.ts";
import { HEARTBEAT_INTERVAL_MS, type ClusterView, type Coordinator } from "./coordinator.ts";

export interface CoordinatorServiceContext {
  appName: string;
  /** The run's bindings as JSON, handed to joining workers. */
  bindingsJson: string;
  log: Logger;
}

const statusOf = (err: unknown): grpc.status => {
  if (!(err instanceof KeywayError)) return grpc.status.ABORTED;
  if (err.code === ErrorCode.UNKNOWN_NAME) return grpc.status.NOT_FOUND;
  return err.code === ErrorCode.USAGE ? grpc.status.FAILED_PRECONDITION : grpc.status.ABORTED;
};

export function statusMessage(view: ClusterView, context: CoordinatorServiceContext): StatusResponse {
  return create(StatusResponseSchema, {
    app: context.appName,
    epoch: BigInt(view.epoch),
    slotCount: view.slotCount,
    bindingsJson: context.bindingsJson,
    replicas: view.replicas,
    underReplicated: view.underReplicated,
    fenced: view.fenced,
    workers: view.members.map((m) => ({
      id: m.id,
      address: m.address,
      connectorAddress: m.connectorAddress,
      data: m.data,
      slots: m.slots,
      backups: m.backups,
      coordinator: m.coordinator,
      reachable: m.reachable,
      ...(m.stats === undefined ? {} : { stats: m.stats }),
    })),
  });
}

export function coordinatorHandlers(c: Coordinator, context: CoordinatorServiceContext): Record<string, UnaryHandler> {
  return {
    Join: unary(async (req: JoinRequest) => {
      try {
        const joined = await c.join({ version: req.version, address: req.address, connectorAddress: req.connectorAddress, app: req.app, appDigest: req.appDigest });
        return create(JoinResponseSchema, { workerId: joined.id, map: mapToMessage(joined.map, c.context()), bindingsJson: context.bindingsJson, heartbeatIntervalMs: BigInt(HEARTBEAT_INTERVAL_MS) });
      } catch (err) {
        context.log.warn({ address: req.address, reason: (err as Error).message }, "join refused");
        throw grpcError(grpc.status.FAILED_PRECONDITION, (err as Error).message);
      }
    }),
    Heartbeat: unary((req: HeartbeatRequest) => {
      try {
        c.heartbeat(req.workerId);
      } catch (err) {
        throw grpcError(grpc.status.FAILED_PRECONDITION, `${ErrorCode.FENCED}: ${(err as Error).message}`);
      }
      return create(HeartbeatResponseSchema, { epoch: BigInt(c.map().epoch) });
    }),
    ClaimStream: unary(async (req: ClaimStreamRequest) => {
      try {
        return create(ClaimStreamResponseSchema, await c.claimStream(req.workerId, req.source, req.stream, req.connector));
      } catch (err) {
        const fencedWorker = err instanceof KeywayError && err.code === ErrorCode.FENCED;
        throw grpcError(fencedWorker ? grpc.status.FAILED_PRECONDITION : grpc.status.UNAVAILABLE, `${fencedWorker ? `${ErrorCode.FENCED}: ` : ""}${(err as Error).message}`);
      }
    }),
    SourcesDone: unary((req: SourcesDoneRequest) => {
      c.sourcesDone(req.workerId, Number(req.generation));
      return create(SourcesDoneResponseSchema, {});
    }),
    Shrink: unary(async (req: ShrinkRequest) => {
      try {
        const { map, removed } = await c.shrink(req.workerIds, req.count);
        return create(ShrinkResponseSchema, { map: mapToMessage(map, c.context()), removed });
      } catch (err) {
        throw grpcError(statusOf(err), (err as Error).message);
      }
    }),
    Status: unary(async () => statusMessage(await c.status(), context)),
  };
}
