/**
 * `keyway worker APP --join HOST:PORT`: a worker that joins a running cluster, runs the stages
 * of the slots it is given, and exits when the coordinator tells it to leave.
 */
import * as grpc from "@grpc/grpc-js";
import type { AppSpec } from "../app/spec.ts";
import { ErrorCode, KeywayError } from "../errors.ts";
import type { Logger } from "../log/logger.ts";
import { JoinResponseSchema, StatusResponseSchema } from "../protocol/gen/keyway/v1/cluster_pb.ts";
import { createSlotOf } from "../routing/hash.ts";
import { equalRanges } from "../routing/partition-map.ts";
import { compileDataflow, type Placement } from "../runtime/dataflow.ts";
import { mapFromMessage } from "./codec.ts";
import { createPeerClients, grpcError, lateHandlers, serveWorker, type Handlers } from "./grpc.ts";
import { appDigest, CLUSTER_VERSION } from "./membership.ts";
import { createWorkerNode, WORKER_METHODS } from "./worker-node.ts";

export interface WorkerProcessOptions {
  app: AppSpec;
  join: string;
  listen: string;
  token?: string;
  log: Logger;
}

const COORDINATOR_METHODS = ["Join", "Shrink", "Status"] as const;

/** Resolves with the reason the coordinator gave once this worker has left the cluster. */
export async function runWorker(options: WorkerProcessOptions): Promise<string> {
  const { app, log } = options;
  const peers = createPeerClients();
  const status = await peers.call(options.join, "Status", {}, StatusResponseSchema, 10_000).catch((err: grpc.ServiceError) => {
    throw new KeywayError(ErrorCode.USAGE, `cannot reach the cluster at ${options.join}: ${err.details || err.message}`);
  });
  // Owns nothing until the coordinator's first map names it.
  const placement: Placement = { map: equalRanges(status.slotCount, ["?"], 0), self: -1 };
  let handlers: Handlers | undefined;
  const { server, address } = await serveWorker(options.listen, lateHandlers([...WORKER_METHODS, ...COORDINATOR_METHODS], (m) => handlers![m]!));
  const node = createWorkerNode(placement, [], address, log);
  const slotOf = await createSlotOf(status.slotCount);
  const noPartitioner = () => {
    throw new KeywayError(ErrorCode.BAD_APP, "partition functions serve the first worker only: a partitioner keyBy after a keyed stage cannot run in a cluster");
  };
  node.attach(app.pipelines.map((p, i) => compileDataflow(p, { slotOf, placement, partition: noPartitioner, forward: node.forwardFor(i) })));

  let left!: (reason: string) => void;
  const leaving = new Promise<string>((resolve) => (left = resolve));
  // Cluster-wide calls go to the coordinator, so any worker's address serves an operator.
  const toCoordinator = (method: string): grpc.UntypedHandleCall =>
    ((call: grpc.ServerUnaryCall<object, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      const coordinator = node.members()[0]?.address ?? options.join;
      peers.call(coordinator, method, call.request, StatusResponseSchema).then(
        (response) => callback(null, response),
        (err: grpc.ServiceError) => callback(grpcError(err.code ?? grpc.status.UNAVAILABLE, err.details || err.message)),
      );
    }) as grpc.UntypedHandleCall;
  handlers = {
    ...node.handlers((reason) => left(reason)),
    ...Object.fromEntries(COORDINATOR_METHODS.map((m) => [m, toCoordinator(m)])),
  };

  try {
    const response = await peers.call(
      options.join,
      "Join",
      { version: CLUSTER_VERSION, token: options.token ?? "", address, app: app.name, appDigest: appDigest(app) },
      JoinResponseSchema,
      10 * 60_000,
    );
    const { map, workers } = mapFromMessage(response.map!);
    if (map.epoch > placement.map.epoch) node.applyMap(map, workers);
    log.info({ worker: response.workerId, address, slots: map.owners.filter((o) => o === placement.self).length }, "joined the cluster");
  } catch (err) {
    server.forceShutdown();
    peers.close();
    const e = err as grpc.ServiceError;
    throw new KeywayError(ErrorCode.USAGE, `join refused by ${options.join}: ${e.details || e.message}`);
  }
  const reason = await leaving;
  log.info({ reason }, "leaving the cluster");
  peers.close();
  node.peers.close();
  await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
  return reason;
}
