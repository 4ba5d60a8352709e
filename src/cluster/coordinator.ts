/**
 * The coordinator, embedded in the first worker: membership and the partition map. It admits
 * joining workers, removes leaving ones, and moves slots with their state between them. Slots
 * move in chunks, each inside a quiescent section of the first worker's engine: every source
 * runs there, so while it is quiescent no record is in flight anywhere, and a chunk's state can
 * move and the map change without holding or re-routing a single record.
 */
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import type { AppSpec } from "../app/spec.ts";
import type { Logger } from "../log/logger.ts";
import {
  ExportSlotsResponseSchema,
  ImportSlotsResponseSchema,
  JoinResponseSchema,
  LeaveResponseSchema,
  ShrinkResponseSchema,
  StatusResponseSchema,
  UpdateMapResponseSchema,
  WorkerStatsResponseSchema,
  type JoinRequest,
  type ShrinkRequest,
  type SlotState,
} from "../protocol/gen/keyway/v1/cluster_pb.ts";
import type { PartitionMap } from "../routing/partition-map.ts";
import { equalRanges } from "../routing/partition-map.ts";
import { mapToMessage } from "./codec.ts";
import { grpcError, type Handlers } from "./grpc.ts";
import { appDigest, CLUSTER_VERSION, type Worker } from "./membership.ts";
import { applyMoves, chunkMoves, planMoves, type SlotMove } from "./rebalance.ts";
import type { WorkerNode } from "./worker-node.ts";

/**
 * Keys moved per quiescent section, which bounds the longest pause in output: moving a key costs
 * about a microsecond to serialise and as much to deserialise, so 25k keys pause for ~50 ms.
 */
export const MIGRATION_CHUNK_KEYS_DEFAULT = 25_000;
/** Slots per chunk at most, so an empty state still moves in a few steps, not in one. */
const MIGRATION_CHUNK_SLOTS_MAX = 512;
const MIGRATION_BREATH_MS_MIN = 10;

export interface CoordinatorOptions {
  app: AppSpec;
  token?: string;
  node: WorkerNode;
  /** Runs fn while no batch is in flight anywhere in the cluster. */
  quiesce: <T>(fn: () => Promise<T>) => Promise<T>;
  log: Logger;
  chunkKeys?: number;
  /** State was lost (a worker died holding slots mid-move): the run cannot be trusted to go on. */
  onStateLost: (err: Error) => void;
}

export interface Coordinator {
  handlers(): Handlers;
  /** Resolves once the cluster has this many workers. */
  waitForWorkers(count: number): Promise<void>;
  /** Tells every other worker to leave. */
  shutdown(reason: string): Promise<void>;
}

class MigrationError extends Error {
  constructor(
    message: string,
    readonly lost: boolean,
  ) {
    super(message);
  }
}

export function createCoordinator(options: CoordinatorOptions): Coordinator {
  const { app, node, quiesce, log } = options;
  const chunkKeys = options.chunkKeys ?? MIGRATION_CHUNK_KEYS_DEFAULT;
  const digest = appDigest(app);
  let nextId = node.members().length;
  // Membership changes one at a time.
  let changes: Promise<unknown> = Promise.resolve();
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const result = changes.then(fn, fn);
    changes = result.catch(() => undefined);
    return result;
  };
  const waiters: Array<{ count: number; resolve: () => void }> = [];
  const notifyWaiters = () => {
    for (const w of [...waiters]) {
      if (node.members().length >= w.count) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  };

  const isSelf = (id: string) => id === node.selfId();
  const addressOf = (id: string, members: readonly Worker[]) => members.find((m) => m.id === id)!.address;

  const exportFrom = async (id: string, slots: number[], members: readonly Worker[]): Promise<SlotState[]> => {
    if (isSelf(id)) return node.exportSlots(slots);
    const response = await node.peers.call(addressOf(id, members), "ExportSlots", { epoch: BigInt(node.placement.map.epoch), slots }, ExportSlotsResponseSchema);
    return response.slots;
  };

  const importInto = async (id: string, states: SlotState[], members: readonly Worker[]): Promise<void> => {
    if (isSelf(id)) {
      node.importSlots(states);
      return;
    }
    await node.peers.call(addressOf(id, members), "ImportSlots", { epoch: BigInt(node.placement.map.epoch), slots: states }, ImportSlotsResponseSchema);
  };

  const broadcast = async (map: PartitionMap, members: readonly Worker[]): Promise<void> => {
    const message = mapToMessage(map, members);
    await Promise.all(
      members.map(async (m) => {
        if (isSelf(m.id)) return node.applyMap(map, members);
        try {
          await node.peers.call(m.address, "UpdateMap", { map: message }, UpdateMapResponseSchema);
        } catch (err) {
          throw new Error(`worker ${m.id} at ${m.address} did not take map epoch ${map.epoch}: ${(err as Error).message}`);
        }
      }),
    );
  };

  const averageKeysPerSlot = async (id: string, members: readonly Worker[]): Promise<number> => {
    const owned = node.placement.map.owners.filter((o) => node.placement.map.workers[o] === id).length;
    if (owned === 0) return 0;
    const keys = isSelf(id)
      ? node.stats().keys
      : Number((await node.peers.call(addressOf(id, members), "WorkerStats", {}, WorkerStatsResponseSchema, 10_000).catch(() => ({ keys: 0n }))).keys);
    return keys / owned;
  };

  /** Moves slots towards `target` chunk by chunk; every member of `members` hears each new map. */
  const migrate = async (target: PartitionMap, members: readonly Worker[], finalWorkers: readonly Worker[]): Promise<PartitionMap> => {
    const start = node.placement.map;
    const moves = planMoves(start, target);
    const done: SlotMove[] = [];
    const startedAt = performance.now();
    let longestPauseMs = 0;
    // Size chunks by the average keys per slot of the workers giving slots away.
    const keysPerSlot = Math.max(1, ...(await Promise.all([...new Set(moves.map((m) => m.from))].map((id) => averageKeysPerSlot(id, members)))));
    const chunkSlots = Math.max(1, Math.min(MIGRATION_CHUNK_SLOTS_MAX, Math.floor(chunkKeys / keysPerSlot)));
    let lastPauseMs = 0;
    for (const chunk of chunkMoves(moves, chunkSlots)) {
      // Let records flow between chunks for as long as the last pause held them.
      if (lastPauseMs > 0) await new Promise((r) => setTimeout(r, Math.max(MIGRATION_BREATH_MS_MIN, lastPauseMs)));
      const { from, to } = chunk[0]!;
      const slots = chunk.map((m) => m.slot);
      const pausedAt = performance.now();
      await quiesce(async () => {
        let states: SlotState[];
        try {
          states = await exportFrom(from, slots, members);
        } catch (err) {
          // The exporting worker is gone, and with it the state of every slot it owned.
          throw new MigrationError(`exporting ${slots.length} slots from worker ${from} failed: ${(err as Error).message}`, true);
        }
        try {
          await importInto(to, states, members);
        } catch (err) {
          // This chunk's state is still with its old owner; earlier chunks moved to `to` are not.
          throw new MigrationError(`importing ${slots.length} slots into worker ${to} failed: ${(err as Error).message}`, done.some((m) => m.to === to));
        }
        done.push(...chunk);
        try {
          await broadcast(applyMoves(start, target, done, node.placement.map.epoch + 1), members);
        } catch (err) {
          throw new MigrationError((err as Error).message, true);
        }
      });
      lastPauseMs = performance.now() - pausedAt;
      longestPauseMs = Math.max(longestPauseMs, lastPauseMs);
    }
    const final = equalRanges(target.slotCount, finalWorkers.map((w) => w.id), node.placement.map.epoch + 1);
    await quiesce(() => broadcast(final, finalWorkers));
    log.info({ slotsMoved: moves.length, epoch: final.epoch, workers: final.workers, elapsedMs: Math.round(performance.now() - startedAt), longestPauseMs: Math.round(longestPauseMs) }, "slots moved");
    return final;
  };

  /** A failed move: if state went with it, the run is over; otherwise the cluster goes on as it was. */
  const failMove = async (what: string, err: unknown, survivors: readonly Worker[]): Promise<never> => {
    const reason = err instanceof Error ? err.message : String(err);
    if (err instanceof MigrationError && err.lost) {
      const lost = new Error(`${what} failed and slot state was lost: ${reason} (recovering it needs replicated state)`);
      log.error({ err: lost.message }, "state lost during migration");
      options.onStateLost(lost);
      throw lost;
    }
    log.error({ err: reason }, `${what} failed; the cluster goes on with ${survivors.map((w) => w.id).join(", ")}`);
    const current = node.placement.map;
    const restored = equalRanges(current.slotCount, survivors.map((w) => w.id), current.epoch + 1);
    if (planMoves(current, restored).length === 0) await quiesce(() => broadcast(restored, survivors)).catch(() => undefined);
    throw new Error(`${what} failed: ${reason}`);
  };

  const join = (req: JoinRequest): Promise<{ id: string; map: PartitionMap; members: readonly Worker[] }> =>
    serial(async () => {
      const id = `w${nextId++}`;
      const before = node.members();
      const members = [...before, { id, address: req.address }];
      log.info({ worker: id, address: req.address }, "worker joining");
      try {
        const map = await migrate(equalRanges(node.placement.map.slotCount, members.map((w) => w.id), 0), members, members);
        notifyWaiters();
        return { id, map, members };
      } catch (err) {
        return failMove(`worker ${id} joining`, err, before);
      }
    });

  const shrink = (ids: string[]): Promise<{ map: PartitionMap; removed: string[] }> =>
    serial(async () => {
      const members = node.members();
      const remaining = members.filter((m) => !ids.includes(m.id));
      const removed = members.filter((m) => ids.includes(m.id));
      log.info({ workers: ids }, "workers leaving");
      let map: PartitionMap;
      try {
        map = await migrate(equalRanges(node.placement.map.slotCount, remaining.map((w) => w.id), 0), members, remaining);
      } catch (err) {
        return failMove(`removing ${ids.join(", ")}`, err, members);
      }
      await Promise.all(
        removed.map((w) => node.peers.call(w.address, "Leave", { reason: "removed by shrink" }, LeaveResponseSchema).catch((err: Error) => log.warn({ worker: w.id, err: err.message }, "a removed worker did not hear it should leave"))),
      );
      return { map, removed: removed.map((w) => w.id) };
    });

  const checkToken = (token: string): string | undefined =>
    options.token !== undefined && options.token !== "" && token !== options.token ? "wrong or missing cluster token" : undefined;

  return {
    handlers() {
      return {
        Join(call: grpc.ServerUnaryCall<JoinRequest, unknown>, callback: grpc.sendUnaryData<unknown>) {
          const req = call.request;
          const refuse = (code: grpc.status, message: string) => {
            log.warn({ address: req.address, reason: message }, "join refused");
            callback(grpcError(code, message));
          };
          if (req.version?.major !== CLUSTER_VERSION.major) {
            return refuse(grpc.status.FAILED_PRECONDITION, `cluster protocol ${req.version?.major ?? 0}.${req.version?.minor ?? 0} is not compatible with this cluster's ${CLUSTER_VERSION.major}.${CLUSTER_VERSION.minor}`);
          }
          const tokenProblem = checkToken(req.token);
          if (tokenProblem !== undefined) return refuse(grpc.status.UNAUTHENTICATED, tokenProblem);
          if (req.app !== app.name || req.appDigest !== digest) {
            return refuse(grpc.status.FAILED_PRECONDITION, `the cluster runs app "${app.name}" (${digest}); the joining worker runs "${req.app}" (${req.appDigest})`);
          }
          join(req).then(
            ({ id, map, members }) => callback(null, create(JoinResponseSchema, { workerId: id, map: mapToMessage(map, members) })),
            (err: Error) => callback(grpcError(grpc.status.ABORTED, err.message)),
          );
        },
        Shrink(call: grpc.ServerUnaryCall<ShrinkRequest, unknown>, callback: grpc.sendUnaryData<unknown>) {
          const req = call.request;
          const tokenProblem = checkToken(req.token);
          if (tokenProblem !== undefined) return callback(grpcError(grpc.status.UNAUTHENTICATED, tokenProblem));
          const members = node.members();
          const ids = req.workerIds.length > 0 ? req.workerIds : members.slice(1).slice(-req.count).map((m) => m.id);
          const unknown = ids.find((id) => !members.some((m) => m.id === id));
          if (unknown !== undefined) return callback(grpcError(grpc.status.NOT_FOUND, `no worker ${unknown}; workers are ${members.map((m) => m.id).join(", ")}`));
          if (ids.includes(node.selfId())) {
            return callback(grpcError(grpc.status.FAILED_PRECONDITION, `worker ${node.selfId()} holds the coordinator and the sources and sinks; it cannot leave`));
          }
          if (ids.length === 0) return callback(grpcError(grpc.status.INVALID_ARGUMENT, "name workers to remove (--worker) or how many (--count)"));
          shrink(ids).then(
            ({ map, removed }) => callback(null, create(ShrinkResponseSchema, { map: mapToMessage(map, node.members()), removed })),
            (err: Error) => callback(grpcError(grpc.status.ABORTED, err.message)),
          );
        },
        Status(_call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) {
          const members = node.members();
          const map = node.placement.map;
          Promise.all(
            members.map(async (m) => {
              if (isSelf(m.id)) {
                const s = node.stats();
                return { keys: s.keys, rate: s.recordsPerSecond };
              }
              const r = await node.peers.call(m.address, "WorkerStats", {}, WorkerStatsResponseSchema, 5000).catch(() => undefined);
              return r === undefined ? { keys: -1, rate: 0 } : { keys: Number(r.keys), rate: r.recordsPerSecond };
            }),
          ).then((stats) => {
            callback(
              null,
              create(StatusResponseSchema, {
                app: app.name,
                epoch: BigInt(map.epoch),
                slotCount: map.slotCount,
                workers: members.map((m, i) => ({
                  id: m.id,
                  address: m.address,
                  slots: map.owners.filter((o) => map.workers[o] === m.id).length,
                  keys: BigInt(Math.max(0, stats[i]!.keys)),
                  recordsPerSecond: stats[i]!.rate,
                  coordinator: isSelf(m.id),
                })),
              }),
            );
          });
        },
      };
    },
    waitForWorkers(count) {
      if (node.members().length >= count) return Promise.resolve();
      return new Promise((resolve) => waiters.push({ count, resolve }));
    },
    async shutdown(reason) {
      await Promise.all(
        node.members().filter((m) => !isSelf(m.id)).map((m) => node.peers.call(m.address, "Leave", { reason }, LeaveResponseSchema, 5000).catch(() => undefined)),
      );
    },
  };
}
