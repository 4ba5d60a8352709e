/**
 * The first worker's cluster side: it serves WorkerService, holds the coordinator, and lends its
 * engine's quiescent sections to slot moves. The engine is built with this host's placement and
 * forward functions, then attached.
 */
import type { AppSpec } from "../app/spec.ts";
import type { Logger } from "../log/logger.ts";
import { equalRanges } from "../routing/partition-map.ts";
import type { ForwardFn, Placement } from "../runtime/dataflow.ts";
import type { Engine } from "../runtime/engine.ts";
import { createCoordinator, type Coordinator } from "./coordinator.ts";
import { lateHandlers, serveWorker, type Handlers } from "./grpc.ts";
import { createWorkerNode, WORKER_METHODS, type WorkerNode } from "./worker-node.ts";

export const COORDINATOR_ID = "w0";

export interface ClusterHost {
  readonly address: string;
  readonly placement: Placement;
  forwardFor(pipeline: number): ForwardFn;
  attach(engine: Engine): void;
  readonly coordinator: Coordinator;
  /** Tells the other workers to leave, then stops serving. */
  close(reason: string): Promise<void>;
}

export interface ClusterHostOptions {
  app: AppSpec;
  slotCount: number;
  listen: string;
  token?: string;
  log: Logger;
  /** Called when a failed move lost slot state: the run must stop. */
  onStateLost: (err: Error) => void;
}

export async function startClusterHost(options: ClusterHostOptions): Promise<ClusterHost> {
  const { app, slotCount, log } = options;
  const placement: Placement = { map: equalRanges(slotCount, [COORDINATOR_ID], 1), self: 0 };
  let node: WorkerNode | undefined;
  let coordinator: Coordinator | undefined;
  let engine: Engine | undefined;
  let nodeHandlers: Handlers | undefined;
  let coordinatorHandlers: Handlers | undefined;
  // The server binds first so the address is known; handlers reach node and coordinator lazily.
  const coordinatorMethods = ["Join", "Shrink", "Status"];
  const { server, address } = await serveWorker(
    options.listen,
    lateHandlers([...coordinatorMethods, ...WORKER_METHODS], (method) =>
      (coordinatorMethods.includes(method) ? coordinatorHandlers : nodeHandlers)![method]!,
    ),
  );
  node = createWorkerNode(placement, [{ id: COORDINATOR_ID, address }], address, log);
  coordinator = createCoordinator({
    app,
    token: options.token,
    node,
    quiesce: (fn) => (engine === undefined ? fn() : engine.quiesce(fn)),
    log: log.child({ role: "coordinator" }),
    onStateLost: options.onStateLost,
  });
  // The first worker never leaves: the coordinator and every source live on it.
  nodeHandlers = node.handlers(() => undefined);
  coordinatorHandlers = coordinator.handlers();
  log.info({ address }, "serving workers");
  return {
    address,
    placement,
    forwardFor: (pipeline) => node!.forwardFor(pipeline),
    attach(attached) {
      engine = attached;
      node!.attach(attached.flows);
    },
    coordinator,
    async close(reason) {
      await coordinator!.shutdown(reason);
      node!.peers.close();
      await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    },
  };
}
