/**
 * The coordinator: membership, the partition map and its epoch, slot moves, the registry of
 * connector streams, heartbeats and the end of a run. It talks to workers only through a
 * WorkerPort (itself included), so its decisions run without sockets; the etcd coordinator will
 * implement the same surface.
 *
 * A slot moves without pausing any other: every worker freezes it (records routed to it wait at
 * their sender) and answers once what it sent before is applied; its state then goes from the
 * old owner to the new one; the new map reaches the new owner first, then everyone, and each
 * worker sends the held records on to the new owner in the order they were held.
 *
 * With replicated state it also watches heartbeats: a worker silent for the failure timeout is
 * declared dead and fenced, each slot it led is led by a surviving backup (a new map, published
 * at once, not behind a move under way), and copies lost with it are made again on survivors in
 * the background, one chunk at a time, until every slot has R copies.
 */
import type { AppSpec } from "../app/spec.ts";
import { ErrorCode, KeywayError } from "../errors.ts";
import type { Logger } from "../log/logger.ts";
import type { SlotState, SourceAssignment, WorkerStatsResponse } from "../protocol/gen/keyway/v1/cluster_pb.ts";
import { equalRanges, type PartitionMap } from "../routing/partition-map.ts";
import { deferred } from "../util/deferred.ts";
import type { MapContext } from "./codec.ts";
import type { CoordinatorState } from "./coordinator-state.ts";
import { appDigest, CLUSTER_VERSION, dataRanges, type Worker } from "./membership.ts";
import { applyMoves, chunkMoves, planMoves, type SlotMove } from "./rebalance.ts";
import { mergeWritten, type OutputsWritten } from "./replication.ts";
import { events } from "../observe/events.ts";
import { FAILURE_TIMEOUT_MS_DEFAULT } from "./failure-timeouts.ts";
import { addBackups, copiesPerWorker, lostSlots, planCopies, promote, pruneBackups, reindex, underReplicated, type CopyPlan } from "./replicas.ts";

/**
 * Keys moved per chunk, which bounds how long the moving slots wait and how long the old owner's
 * event loop is busy serialising (every other slot it owns waits that long): a key costs about a
 * microsecond each way, so 5k keys take ~5 ms, beside a few round trips per chunk.
 */
export const MIGRATION_CHUNK_KEYS_DEFAULT = 5_000;
/** Slots per chunk at most, so an empty state still moves in a few steps, not in one. */
const MIGRATION_CHUNK_SLOTS_MAX = 512;
export const HEARTBEAT_INTERVAL_MS = 500;
/** A worker silent this long shows as unreachable: four missed heartbeats, to ride out a GC pause. */
export const UNREACHABLE_AFTER_MS = 2000;
const FAILURE_CHECK_MS = 100;
/** A failure check this much later than due means the coordinator's own process was paused. */
const SELF_PAUSE_MS = 500;
/**
 * A worker this late with its heartbeat is probed: if its address refuses connections, its
 * process is gone and it is declared dead at once, without waiting for the failure timeout
 * (which remains for a worker that hangs, or a network that drops packets).
 */
const SUSPECT_AFTER_MS = 750;
/** A failed copy is tried again after this long (the failure that caused it is handled meanwhile). */
const COPY_RETRY_MS = 500;
const COPY_CHUNK_FACTOR = 4;

/** What the coordinator asks of a worker. */
export interface WorkerPort {
  freeze(worker: Worker, epoch: number, slots: number[]): Promise<void>;
  exportSlots(worker: Worker, slots: number[]): Promise<SlotState[]>;
  /** Imports the states, then takes the map that gives them to the worker. */
  importSlots(worker: Worker, states: SlotState[], map: PartitionMap, context: MapContext): Promise<void>;
  updateMap(worker: Worker, map: PartitionMap, context: MapContext): Promise<void>;
  /** Whether a worker answers at all: "refused" when nothing listens at its address (its process is gone). */
  probe(worker: Worker): Promise<"answered" | "refused" | "silent">;
  /** The primary `worker` copies these slots to worker `to`; settles once the copies are complete there. */
  copySlots(worker: Worker, slots: number[], to: string): Promise<void>;
  releaseStream(worker: Worker, source: string, stream: string): Promise<{ released: boolean; position: bigint }>;
  startSources(worker: Worker, sources: SourceAssignment[], generation: number): Promise<void>;
  stopSources(worker: Worker): Promise<SourceAssignment[]>;
  leave(worker: Worker, reason: string): Promise<void>;
  stats(worker: Worker): Promise<WorkerStatsResponse | undefined>;
}

export interface JoinRequestData {
  version?: { major: number; minor: number };
  address: string;
  connectorAddress: string;
  app: string;
  appDigest: string;
}

export interface CoordinatorOptions {
  app: AppSpec;
  self: Worker;
  slotCount: number;
  port: WorkerPort;
  log: Logger;
  chunkKeys?: number;
  /** State was lost (a worker died holding slots mid-move): the run cannot be trusted to go on. */
  onStateLost: (err: Error) => void;
  /** The bundled sources of a finite run, for its end: true when every source binding is finite. */
  finite: boolean;
  /** Copies of each slot, the primary's included (1: no replication). */
  replicas?: number;
  /** How far a worker's output reached the sinks (the sinks' worker keeps the ledger). */
  outputsWritten?: (worker: string) => OutputsWritten[];
  failureTimeoutMs?: number;
  /** A coordinator taking over from one that died: the state it left in the control plane. */
  restored?: CoordinatorState;
  /** Saves the state where a successor finds it (etcd); every map is saved before any worker sees it. */
  persist?: (state: CoordinatorState) => Promise<void>;
  /** Told how long each completed move and failover took (metrics), as the log says it. */
  timings?: CoordinatorTimings;
}

export interface CoordinatorTimings {
  slotsMoved?(seconds: number): void;
  failover?(seconds: number): void;
}

export interface ClusterView {
  epoch: number;
  slotCount: number;
  replicas: number;
  /** Slots with fewer copies than they should have (being rebuilt). */
  underReplicated: number;
  fenced: string[];
  members: Array<Worker & { slots: number; backups: number; coordinator: boolean; reachable: boolean; stats: WorkerStatsResponse | undefined }>;
  /** What the workers removed by a shrink had done, for a run's totals. */
  departed: DepartedFigures;
}

export interface DepartedFigures {
  recordsIn: bigint;
  recordsOut: bigint;
  recordsForwarded: bigint;
}

export interface Coordinator {
  readonly map: () => PartitionMap;
  readonly members: () => readonly Worker[];
  /** What goes with the map to workers. */
  readonly context: () => MapContext;
  /**
   * Taking over from a coordinator that died (etcd): members without a live lease are declared
   * dead and everyone learns the new coordinator (then it resolves); a move or a rebuild under
   * way carries on.
   */
  takeOver(live: ReadonlySet<string>): Promise<void>;
  /** A member's lease ended (etcd): its process is gone or cut off. */
  memberGone(id: string): void;
  join(request: JoinRequestData): Promise<{ id: string; map: PartitionMap; members: readonly Worker[] }>;
  shrink(ids: string[], count: number): Promise<{ map: PartitionMap; removed: string[] }>;
  heartbeat(id: string): void;
  /** `connector`: the opening session's connector_name; refused with `owner` when another connector owns the stream. */
  claimStream(worker: string, source: string, stream: string, connector?: string): Promise<{ granted: boolean; resumeAfter: bigint; owner?: string }>;
  /** A worker's sources, as placed by its StartSources of this generation, have ended. */
  sourcesDone(worker: string, generation: number): void;
  /** Resolves once the cluster has this many members. */
  waitForWorkers(count: number): Promise<void>;
  /** Hands bundled sources to workers (a directory's files spread over the data workers). */
  startSources(assignments: Array<{ worker: string; source: SourceAssignment }>): Promise<void>;
  /** Resolves when a finite run is over: every member's sources ended and their batches are done. */
  readonly runOver: Promise<void>;
  /** Stops every worker's sources and waits for their batches; then the run is over. */
  stopRun(): Promise<void>;
  status(): Promise<ClusterView>;
  /** Tells every other worker to leave. */
  shutdown(reason: string): Promise<void>;
  /** Resolves once every slot has min(R, data workers) copies and no copy is being made. */
  replicated(): Promise<void>;
}

class MigrationError extends Error {
  constructor(
    message: string,
    readonly lost: boolean,
  ) {
    super(message);
  }
}

function refused(code: ErrorCode, message: string): KeywayError {
  return new KeywayError(code, message);
}

export function createCoordinator(options: CoordinatorOptions): Coordinator {
  const { app, port, log, self } = options;
  const chunkKeys = options.chunkKeys ?? MIGRATION_CHUNK_KEYS_DEFAULT;
  const replicas = options.replicas ?? 1;
  const failureTimeoutMs = options.failureTimeoutMs ?? FAILURE_TIMEOUT_MS_DEFAULT;
  const digest = appDigest(app);
  const { restored } = options;
  let members: Worker[] = restored?.members ?? [self];
  let map: PartitionMap = restored?.map ?? equalRanges(options.slotCount, [self.id], 1, replicas);
  const fenced: string[] = [...(restored?.fenced ?? [])];
  // For each fenced worker: how far its output had reached the sinks, for the backups that take over.
  const written: OutputsWritten[] = [...(restored?.written ?? [])];
  // Per worker, the bundled sources placed on it, so a dead worker's are read elsewhere.
  const sourcesOf = new Map<string, SourceAssignment[]>(restored?.sourcesOf.map((s) => [s.worker, s.sources]));
  let nextId = restored?.nextId ?? 1;
  const lastSeen = new Map<string, number>(members.map((m) => [m.id, Date.now()]));
  const streams = new Map<string, { holder: string | undefined; position: bigint; owner?: string }>(
    restored?.streams.map((s) => [`${s.source}\u0000${s.stream}`, { holder: s.holder, position: s.position, ...(s.owner === undefined ? {} : { owner: s.owner }) }]),
  );
  let moving = false;
  const departed: DepartedFigures = { recordsIn: 0n, recordsOut: 0n, recordsForwarded: 0n };
  // The highest epoch a worker may hold: a slot move shows the new owner its map before it is
  // published, and if the move fails that epoch must not name a different map later.
  let shown = map.epoch;
  const nextEpoch = (): number => Math.max(map.epoch, shown) + 1;
  const context = (): MapContext => ({ members, fenced, written, coordinator: self.id });
  // What goes with a map is what held when it was made: a failover meanwhile must not fence, in an
  // older map, a worker that map still gives slots to (its peers would have no link to send them on).
  const frozenContext = (): MapContext => ({ members: [...members], fenced: [...fenced], written: written.map((w) => ({ ...w })), coordinator: self.id });
  // Saves run one at a time, each with the state as it is when it runs.
  let saving: Promise<void> = Promise.resolve();
  const save = (): Promise<void> => {
    const persist = options.persist;
    if (persist === undefined) return Promise.resolve();
    const run = () =>
      persist({
        map,
        members,
        fenced,
        written,
        nextId,
        moving,
        streams: [...streams].map(([key, entry]) => ({ source: key.split("\u0000")[0]!, stream: key.slice(key.indexOf("\u0000") + 1), ...entry })),
        sourcesOf: [...sourcesOf].map(([worker, sources]) => ({ worker, sources })),
      });
    saving = saving.then(run, run);
    return saving;
  };
  const done = new Set<string>();
  // Per worker, the generation of its latest StartSources: an older SourcesDone is stale.
  const placed = new Map<string, number>();
  const place = async (worker: Worker, sources: SourceAssignment[]): Promise<void> => {
    sourcesOf.set(worker.id, [...(sourcesOf.get(worker.id) ?? []), ...sources]);
    const generation = (placed.get(worker.id) ?? 0) + 1;
    placed.set(worker.id, generation);
    done.delete(worker.id);
    if (sources.length > 0) await save();
    return port.startSources(worker, sources, generation);
  };
  const ending = deferred<void>();
  const endRun = (): void => ending.resolve();
  const runOver = ending.promise;
  void runOver.then(() => {
    runEnded = true;
    clearInterval(detector);
  });
  let sourcesStarted = false;

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
      if (members.length >= w.count) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  };
  const member = (id: string) => members.find((m) => m.id === id);

  /**
   * The new map reaches `first` before anyone else (or `first` already has it), so records sent
   * under it find their state there.
   */
  const publish = async (next: PartitionMap, first: Worker | undefined, to: readonly Worker[], firstHasIt = false): Promise<void> => {
    if (next.epoch <= map.epoch) throw new KeywayError(ErrorCode.EPOCH_MISMATCH, `map epoch ${next.epoch} is not above ${map.epoch}`);
    map = next;
    const sent = frozenContext();
    await save();
    if (first !== undefined && !firstHasIt) await port.updateMap(first, next, sent);
    await Promise.all(
      to.filter((m) => m.id !== first?.id).map((m) =>
        port.updateMap(m, next, sent).catch((err: Error) => {
          // A worker that died meanwhile is the failure detector's to handle, not this change's.
          if (fenced.includes(m.id)) return;
          throw new MigrationError(`worker ${m.id} at ${m.address} did not take map epoch ${next.epoch}: ${err.message}`, true);
        }),
      ),
    );
  };
  /** A new epoch to everyone, for a failover or a copy: a worker that does not take it is left to the failure detector. */
  const announce = async (next: PartitionMap): Promise<void> => {
    map = next;
    const sent = frozenContext();
    await save();
    await Promise.all(
      members.map((m) => port.updateMap(m, next, sent).catch((err: Error) => log.warn({ worker: m.id, epoch: next.epoch, err: err.message }, "a worker did not take the new map"))),
    );
  };

  const averageKeysPerSlot = async (id: string): Promise<number> => {
    const copies = copiesPerWorker(map).get(id);
    const owned = (copies?.primaries ?? 0) + (copies?.backups ?? 0);
    if (owned === 0) return 0;
    const stats = await port.stats(member(id)!).catch(() => undefined);
    return stats === undefined ? 0 : Number(stats.keys) / owned;
  };

  /** Moves slots towards the equal ranges of the data workers, chunk by chunk. */
  const migrate = async (): Promise<void> => {
    moving = true;
    try {
      await migrateSlots();
    } finally {
      moving = false;
    }
  };
  const migrateSlots = async (): Promise<void> => {
    const start = map;
    // A failover during the move changes the map under it: the move stops rather than undo it.
    const generation = failoverGeneration;
    const unchanged = (): void => {
      if (failoverGeneration !== generation) throw new MigrationError("a worker was declared dead during the move", false);
    };
    const target = dataRanges(map.slotCount, members, 0);
    const moves = planMoves(start, target);
    const finished: SlotMove[] = [];
    const startedAt = performance.now();
    let longestPauseMs = 0;
    const keysPerSlot = Math.max(1, ...(await Promise.all([...new Set(moves.map((m) => m.from))].map(averageKeysPerSlot))));
    const chunkSlots = Math.max(1, Math.min(MIGRATION_CHUNK_SLOTS_MAX, Math.floor(chunkKeys / keysPerSlot)));
    // The longest time each step of a chunk took, for the log: where a move's pauses go.
    const slowest = { freezeMs: 0, exportMs: 0, importMs: 0, publishMs: 0 };
    let stepAt = 0;
    const step = (name: keyof typeof slowest): void => {
      const now = performance.now();
      slowest[name] = Math.max(slowest[name], now - stepAt);
      stepAt = now;
    };
    for (const chunk of chunkMoves(moves, chunkSlots)) {
      const from = member(chunk[0]!.from)!;
      const to = member(chunk[0]!.to)!;
      const slots = chunk.map((m) => m.slot);
      const pausedAt = (stepAt = performance.now());
      try {
        await Promise.all(members.map((m) => port.freeze(m, map.epoch, slots)));
      } catch (err) {
        throw new MigrationError(`freezing ${slots.length} slots failed: ${(err as Error).message}`, false);
      }
      step("freezeMs");
      let states: SlotState[];
      try {
        states = await port.exportSlots(from, slots);
      } catch (err) {
        throw new MigrationError(`exporting ${slots.length} slots from worker ${from.id} failed: ${(err as Error).message}`, true);
      }
      step("exportMs");
      unchanged();
      const next = applyMoves(start, target, [...finished, ...chunk], nextEpoch());
      shown = next.epoch;
      try {
        // `to` takes this map before it is saved, so the state it names is there first; a successor
        // that never saw it skips its epoch (takeOver).
        await port.importSlots(to, states, next, context());
      } catch (err) {
        // This chunk's state is still with its old owner; earlier chunks moved to `to` are not.
        throw new MigrationError(`importing ${slots.length} slots into worker ${to.id} failed: ${(err as Error).message}`, finished.some((m) => m.to === to.id));
      }
      step("importMs");
      finished.push(...chunk);
      unchanged();
      await publish(next, to, members, true);
      step("publishMs");
      longestPauseMs = Math.max(longestPauseMs, performance.now() - pausedAt);
    }
    // The workers that keep a data role, and the copies on them.
    const data = members.filter((m) => m.data).map((m) => m.id);
    unchanged();
    const final = reindex(pruneBackups(map, data), data, nextEpoch());
    await publish(final, undefined, members);
    const longestSteps = Object.fromEntries(Object.entries(slowest).map(([k, v]) => [k, Math.round(v)]));
    const elapsedMs = performance.now() - startedAt;
    options.timings?.slotsMoved?.(elapsedMs / 1000);
    log.info({ slotsMoved: moves.length, epoch: final.epoch, workers: final.workers, elapsedMs: Math.round(elapsedMs), longestPauseMs: Math.round(longestPauseMs), longestSteps }, "slots moved");
    events.record("move", `${moves.length} slots moved, epoch ${final.epoch}, in ${Math.round(elapsedMs)} ms`);
  };

  /** A failed move: if state went with it, the run is over; otherwise the cluster goes on as it was. */
  const failMove = async (what: string, err: unknown, survivors: readonly Worker[]): Promise<never> => {
    const reason = err instanceof Error ? err.message : String(err);
    events.record("error", `${what} failed: ${reason}`);
    if (replicas > 1) {
      // Copies elsewhere cover what moved: a worker that died is fenced by the failure detector, and its
      // slots' backups lead them. The members stay; whatever was frozen thaws.
      log.error({ err: reason }, `${what} failed; the slots stay where the move left them`);
      await announce({ ...map, epoch: nextEpoch() });
      throw new KeywayError(ErrorCode.WORKER_LOST, `${what} failed: ${reason}`);
    }
    if (err instanceof MigrationError && err.lost) {
      const lost = new KeywayError(ErrorCode.WORKER_LOST, `${what} failed and slot state was lost: ${reason} (recovering it needs replicated state)`);
      log.error({ err: lost.message }, "state lost during migration");
      options.onStateLost(lost);
      throw lost;
    }
    log.error({ err: reason }, `${what} failed; the cluster goes on with ${survivors.map((w) => w.id).join(", ")}`);
    members = [...survivors];
    // Thaw whatever was frozen: the same owners, a new epoch.
    await publish({ ...map, epoch: nextEpoch() }, undefined, members).catch(() => undefined);
    throw new KeywayError(ErrorCode.WORKER_LOST, `${what} failed: ${reason}`);
  };

  /** Every stream a leaving worker holds is given up there (once its records are committed). */
  const releaseStreamsOf = async (worker: Worker): Promise<void> => {
    for (const [key, entry] of streams) {
      if (entry.holder !== worker.id) continue;
      const [source, stream] = key.split("\u0000") as [string, string];
      const answer = await port.releaseStream(worker, source, stream).catch(() => undefined);
      // The session may have moved on meanwhile and its new worker claimed the stream: that claim stands.
      if (answer === undefined || streams.get(key) !== entry || entry.holder !== worker.id) continue;
      entry.position = answer.position;
      entry.holder = undefined;
    }
  };

  // A run ends after any membership change under way, never in its middle.
  const allDone = () => options.finite && sourcesStarted && members.every((m) => done.has(m.id));
  const checkDone = () => {
    // Checked again once the change is over: it may have handed a worker more to read.
    if (allDone()) {
      void serial(async () => {
        if (allDone()) endRun();
      });
    }
  };

  /** Slot numbers as ranges, for messages: "0-2047, 3000". */
  const slotRanges = (slots: readonly number[]): string => {
    const parts: string[] = [];
    for (let i = 0; i < slots.length; ) {
      let j = i;
      while (j + 1 < slots.length && slots[j + 1] === slots[j]! + 1) j++;
      parts.push(i === j ? `${slots[i]}` : `${slots[i]}-${slots[j]}`);
      i = j + 1;
    }
    return parts.join(", ");
  };

  // Failovers run one at a time, apart from membership changes: a move under way must not delay them.
  let failovers: Promise<void> = Promise.resolve();
  let failoverGeneration = 0;
  let runEnded = false;
  /** Declares workers dead: fences them, promotes backups of their slots, reads their sources elsewhere. */
  const declareDead = (ids: string[], reason: string): Promise<void> => {
    for (const id of ids) lastSeen.delete(id);
    const run = async (): Promise<void> => {
      const dead = ids.filter((id) => member(id) !== undefined && !fenced.includes(id));
      if (dead.length === 0) return;
      fenced.push(...dead);
      failoverGeneration++;
      // Every fenced worker's, not only the new ones': what promoted backups resent for earlier ones has arrived since.
      for (const id of fenced) mergeWritten(written, options.outputsWritten?.(id) ?? []);
      const startedAt = performance.now();
      log.warn({ workers: dead, reason }, "workers declared dead and fenced");
      events.record("failover", `${dead.join(", ")} declared dead and fenced: ${reason}`);
      const lost = lostSlots(map, new Set(dead));
      if (lost.length > 0) {
        const err = new KeywayError(
          ErrorCode.STATE_LOST,
          `workers ${dead.join(", ")} died holding the only copies of ${lost.length} slots (${slotRanges(lost)}); with --replicas ${replicas} the cluster survives ${replicas - 1} lost workers at once, so the run stops rather than give wrong results`,
        );
        log.error({ err: err.message, slots: lost.length }, "state lost");
        options.onStateLost(err);
        return;
      }
      members = members.filter((m) => !dead.includes(m.id));
      // A shrink cut short (its coordinator died) may have left only workers it was removing: they keep
      // the data role, since the slots and sources need a holder.
      if (!members.some((m) => m.data)) members = members.map((m) => ({ ...m, data: true }));
      const suspects = new Set(members.filter((m) => late(m.id, SUSPECT_AFTER_MS)).map((m) => m.id));
      const next = promote(map, new Set(dead), nextEpoch(), suspects);
      await announce(next);
      for (const [key, entry] of streams) if (entry.holder !== undefined && dead.includes(entry.holder)) streams.set(key, { ...entry, holder: undefined });
      // Their bundled sources are read again elsewhere, from their start: slots drop what they already applied.
      const orphans = dead.flatMap((id) => sourcesOf.get(id) ?? []);
      for (const id of dead) sourcesOf.delete(id);
      const heirs = members.filter((m) => m.data);
      if (orphans.length > 0 && heirs.length > 0) await Promise.all(orphans.map((s, i) => place(heirs[i % heirs.length]!, [s]).catch(() => undefined)));
      const promotedIn = performance.now() - startedAt;
      options.timings?.failover?.(promotedIn / 1000);
      log.info({ dead, epoch: next.epoch, promotedIn: Math.round(promotedIn), sourcesMoved: orphans.length, underReplicated: underReplicated(next, heirs.length) }, "failover done: backups lead the dead workers' slots");
      events.record("failover", `backups lead ${dead.join(", ")}'s slots, epoch ${next.epoch}`);
      checkDone();
      restoreCopies();
    };
    const result = failovers.then(run, run);
    failovers = result.catch(() => undefined);
    return result;
  };

  const probing = new Set<string>();
  const joiningIds = new Set<string>();
  const late = (id: string, ms: number) => Date.now() - (lastSeen.get(id) ?? Date.now()) > ms;
  let checkedAt = Date.now();
  const detector = setInterval(() => {
    const now = Date.now();
    // A tick this late means this process was itself paused (stopped, a frozen machine, a long GC or a
    // blocked event loop): the heartbeats sent meanwhile are still unread, so silence counts from now.
    if (now - checkedAt > SELF_PAUSE_MS) for (const id of lastSeen.keys()) lastSeen.set(id, now);
    checkedAt = now;
    if (runEnded) return;
    const others = members.filter((m) => m.id !== self.id && !joiningIds.has(m.id));
    // With etcd a worker's lease says whether it lives: silence alone proves nothing there, since a
    // coordinator cut off from the workers (but not from etcd) would declare every one of them dead.
    const silent = options.persist !== undefined ? [] : others.filter((m) => late(m.id, failureTimeoutMs)).map((m) => m.id);
    if (silent.length > 0) void declareDead(silent, `no heartbeat for ${failureTimeoutMs} ms`);
    for (const m of others) {
      if (probing.has(m.id) || !late(m.id, SUSPECT_AFTER_MS) || silent.includes(m.id)) continue;
      probing.add(m.id);
      void port
        .probe(m)
        .then((answer) => {
          if (answer !== "refused" || member(m.id) === undefined || !late(m.id, SUSPECT_AFTER_MS)) return;
          return declareDead([m.id], `heartbeat late and its address ${m.address} refuses connections: its process is gone`);
        })
        .finally(() => probing.delete(m.id));
    }
  }, FAILURE_CHECK_MS);
  detector.unref();

  // One rebuild at a time; a request while one runs makes it look again when it ends.
  let rebuilding: Promise<void> | undefined;
  let rebuildAgain = false;
  let copiesMade = 0;
  const replicatedWaiters: Array<() => void> = [];
  const dataIds = () => members.filter((m) => m.data).map((m) => m.id);
  const fullyReplicated = () => rebuilding === undefined && underReplicated(map, dataIds().length) === 0;
  const restoreCopies = (): void => {
    if (replicas === 1) return;
    if (rebuilding !== undefined) {
      rebuildAgain = true;
      return;
    }
    rebuilding = (async () => {
      const startedAt = performance.now();
      let copied = 0;
      do {
        rebuildAgain = false;
        for (;;) {
          if (runEnded) return;
          // Under the membership lock, one chunk at a time: joins and shrinks wait at most one chunk.
          const result = await serial(async () => {
            const holders = dataIds();
            const plan = planCopies(pruneBackups(map, holders), holders);
            if (plan.length === 0) return "done" as const;
            const chunk = await copyChunk(plan);
            log.debug({ from: chunk[0]!.primary, to: chunk[0]!.to, slots: chunk.length, left: plan.length }, "copying slots");
            try {
              await port.copySlots(member(chunk[0]!.primary)!, chunk.map((c) => c.slot), chunk[0]!.to);
            } catch (err) {
              // A run that ended meanwhile (its workers leaving) needs no copies any more.
              if (runEnded) return "done" as const;
              log.warn({ from: chunk[0]!.primary, to: chunk[0]!.to, slots: chunk.length, err: (err as Error).message }, "a copy failed; trying again");
              return "retry" as const;
            }
            if (runEnded) return "done" as const;
            // Only copies still valid: the primary still leads the slot and the copy's holder lives.
            const valid = chunk.filter((c) => member(c.to) !== undefined && map.workers[map.owners[c.slot]!] === c.primary);
            await announce(addBackups(pruneBackups(map, dataIds()), valid, nextEpoch()));
            copied += valid.length;
            copiesMade += valid.length;
            return "copied" as const;
          });
          if (result === "done") break;
          // Unref'd: a retry still waiting when the run ends must not hold the process open.
          if (result === "retry") await new Promise((r) => setTimeout(r, COPY_RETRY_MS).unref());
        }
      } while (rebuildAgain);
      if (copied > 0) {
        log.info({ slotsCopied: copied, elapsedMs: Math.round(performance.now() - startedAt), epoch: map.epoch, replicas }, "copies restored: every slot has its replicas");
        events.record("copies", `${copied} slot copies restored, epoch ${map.epoch}`);
      }
    })().finally(() => {
      rebuilding = undefined;
      if (fullyReplicated()) for (const w of replicatedWaiters.splice(0)) w();
    });
  };

  /** The first (primary, target) pair's copies, as many slots as make about chunkKeys keys. */
  const copyChunk = async (plan: CopyPlan[]): Promise<CopyPlan[]> => {
    const { primary, to } = plan[0]!;
    const pair = plan.filter((c) => c.primary === primary && c.to === to);
    const keysPerSlot = Math.max(1, await averageKeysPerSlot(primary));
    // A copy freezes nothing (the primary exports in slices while records flow), so larger chunks than a
    // move's and no cap on slots: each chunk waits for the primary's outputs in flight (~0.5 s under load).
    const chunkSlots = Math.max(1, Math.floor((COPY_CHUNK_FACTOR * chunkKeys) / keysPerSlot));
    return pair.slice(0, chunkSlots);
  };

  return {
    map: () => map,
    members: () => members,
    context,
    async takeOver(live) {
      const gone = members.filter((m) => m.id !== self.id && !live.has(m.id)).map((m) => m.id);
      log.info({ epoch: map.epoch, members: members.map((m) => m.id), gone }, "took over the coordinator role");
      events.record("coordinator", `${self.id} took over the coordinator role`);
      // The previous coordinator may have shown one worker a map (an import) it had not saved yet: skip its epoch.
      map = { ...map, epoch: map.epoch + 1 };
      if (gone.length > 0) await declareDead(gone, "its etcd lease ended while the coordinator role changed hands");
      else await announce({ ...map, epoch: nextEpoch() });
      // A move the previous coordinator left half done goes on towards equal ranges, in the background.
      if (restored?.moving === true) {
        void serial(async () => {
          try {
            await migrate();
          } catch (err) {
            await failMove("finishing the previous coordinator's move", err, members).catch(() => undefined);
          }
        });
      }
      restoreCopies();
    },
    memberGone(id) {
      if (id !== self.id && member(id) !== undefined && !fenced.includes(id)) void declareDead([id], "its etcd lease ended");
    },
    join(req) {
      if (req.version?.major !== CLUSTER_VERSION.major) {
        return Promise.reject(refused(ErrorCode.USAGE, `cluster protocol ${req.version?.major ?? 0}.${req.version?.minor ?? 0} is not compatible with this cluster's ${CLUSTER_VERSION.major}.${CLUSTER_VERSION.minor}`));
      }
      if (req.app !== app.name || req.appDigest !== digest) {
        return Promise.reject(refused(ErrorCode.USAGE, `the cluster runs app "${app.name}" (${digest}); the joining worker runs "${req.app}" (${req.appDigest})`));
      }
      return serial(async () => {
        const id = `w${nextId++}`;
        const before = members;
        const joining: Worker = { id, address: req.address, connectorAddress: req.connectorAddress, data: true };
        members = [...members, joining];
        // It heartbeats once it has joined: until then a failed step of the move says it is gone.
        joiningIds.add(id);
        log.info({ worker: id, address: req.address }, "worker joining");
        events.record("join", `${id} joining from ${req.address}`);
        try {
          // Everyone learns the member first (links open), then slots move to it.
          await publish({ ...map, epoch: nextEpoch() }, joining, members);
          await migrate();
        } catch (err) {
          const holds = map.owners.some((o) => map.workers[o] === id);
          if (replicas === 1 || !holds || fenced.includes(id)) return failMove(`worker ${id} joining`, err, before);
          // Slots that already moved to it are only there now: it stays a member (their copies are
          // made again) rather than be told to go and take them with it.
          await failMove(`worker ${id} joining`, err, before).catch(() => undefined);
        } finally {
          joiningIds.delete(id);
          lastSeen.set(id, Date.now());
        }
        notifyWaiters();
        // A worker joining a run under way reads no bundled source, but its end counts too.
        if (sourcesStarted) await place(joining, []).catch(() => undefined);
        restoreCopies();
        return { id, map, members };
      });
    },
    shrink(ids, count) {
      return serial(async () => {
        const chosen = ids.length > 0 ? ids : members.filter((m) => m.id !== self.id).slice(-count).map((m) => m.id);
        const unknown = chosen.find((id) => member(id) === undefined);
        if (unknown !== undefined) throw refused(ErrorCode.UNKNOWN_NAME, `no worker ${unknown}; workers are ${members.map((m) => m.id).join(", ")}`);
        if (chosen.length === 0) throw refused(ErrorCode.USAGE, "name workers to remove (--worker) or how many (--count)");
        const remainingData = members.filter((m) => m.data && !chosen.includes(m.id));
        if (remainingData.length === 0) throw refused(ErrorCode.USAGE, `removing ${chosen.join(", ")} would leave no worker to hold the slots`);
        const leaving = members.filter((m) => chosen.includes(m.id) && m.id !== self.id);
        log.info({ workers: chosen }, "workers leaving");
        events.record("leave", `${chosen.join(", ")} leaving`);
        const before = members;
        // The coordinator's own process stays; only its data role goes.
        members = members.map((m) => (chosen.includes(m.id) ? { ...m, data: false } : m));
        try {
          await migrate();
        } catch (err) {
          return failMove(`removing ${chosen.join(", ")}`, err, before);
        }
        for (const worker of leaving) {
          const moved = await port.stopSources(worker).catch((err: Error) => {
            log.warn({ worker: worker.id, err: err.message }, "a leaving worker did not stop its sources cleanly");
            return [] as SourceAssignment[];
          });
          await releaseStreamsOf(worker);
          const heirs = members.filter((m) => m.data);
          await Promise.all(moved.map((s, i) => place(heirs[i % heirs.length]!, [s])));
        }
        for (const worker of leaving) {
          const stats = await port.stats(worker).catch(() => undefined);
          if (stats === undefined) continue;
          departed.recordsIn += stats.recordsIn;
          departed.recordsOut += stats.recordsOut;
          departed.recordsForwarded += stats.recordsForwarded;
        }
        members = members.filter((m) => !leaving.some((w) => w.id === m.id));
        checkDone();
        await publish({ ...map, epoch: nextEpoch() }, undefined, members);
        await Promise.all(
          leaving.map((w) => port.leave(w, "removed by shrink").catch((err: Error) => log.warn({ worker: w.id, err: err.message }, "a removed worker did not hear it should leave"))),
        );
        restoreCopies();
        return { map, removed: chosen };
      });
    },
    heartbeat(id) {
      if (fenced.includes(id)) throw new KeywayError(ErrorCode.FENCED, `worker ${id} was declared dead after ${failureTimeoutMs} ms without a heartbeat and is fenced`);
      if (member(id) !== undefined) lastSeen.set(id, Date.now());
    },
    async claimStream(worker, source, stream, connector = "") {
      const key = `${source}\u0000${stream}`;
      const entry = streams.get(key);
      if (entry === undefined) {
        streams.set(key, { holder: worker, position: 0n, owner: connector });
        await save();
        return { granted: true, resumeAfter: 0n };
      }
      if (fenced.includes(worker)) throw new KeywayError(ErrorCode.FENCED, `worker ${worker} is fenced`);
      if (entry.owner !== undefined && entry.owner !== connector) return { granted: false, resumeAfter: 0n, owner: entry.owner };
      entry.owner = connector;
      if (entry.holder !== undefined && entry.holder !== worker) {
        const holder = member(entry.holder);
        if (holder !== undefined) {
          const answer = await port.releaseStream(holder, source, stream).catch(async (err: Error) => {
            // A holder that cannot answer may be dead: once the failure detector says so, the stream is free.
            if (replicas === 1) throw err;
            const deadline = Date.now() + 2 * failureTimeoutMs;
            while (!fenced.includes(holder.id) && Date.now() < deadline) await new Promise((r) => setTimeout(r, FAILURE_CHECK_MS));
            if (!fenced.includes(holder.id)) throw err;
            return { released: true, position: entry.position };
          });
          if (!answer.released) return { granted: false, resumeAfter: 0n };
          entry.position = answer.position;
        }
      }
      entry.holder = worker;
      await save();
      return { granted: true, resumeAfter: entry.position };
    },
    sourcesDone(worker, generation) {
      if (placed.get(worker) !== generation || fenced.includes(worker)) return;
      done.add(worker);
      checkDone();
    },
    waitForWorkers(count) {
      if (members.length >= count) return Promise.resolve();
      return new Promise((resolve) => waiters.push({ count, resolve }));
    },
    async startSources(assignments) {
      sourcesStarted = true;
      await Promise.all(members.map((m) => place(m, assignments.filter((a) => a.worker === m.id).map((a) => a.source))));
      checkDone();
    },
    runOver,
    async stopRun() {
      await serial(async () => {
        await Promise.all(members.map((m) => port.stopSources(m).catch((err: Error) => log.warn({ worker: m.id, err: err.message }, "a worker did not stop its sources cleanly"))));
      });
      endRun();
    },
    async status() {
      const now = Date.now();
      const stats = await Promise.all(members.map((m) => port.stats(m).catch(() => undefined)));
      const copies = copiesPerWorker(map);
      return {
        epoch: map.epoch,
        slotCount: map.slotCount,
        replicas,
        underReplicated: underReplicated(map, dataIds().length),
        fenced: [...fenced],
        members: members.map((m, i) => ({
          ...m,
          slots: copies.get(m.id)?.primaries ?? 0,
          backups: copies.get(m.id)?.backups ?? 0,
          coordinator: m.id === self.id,
          reachable: m.id === self.id || now - (lastSeen.get(m.id) ?? 0) < UNREACHABLE_AFTER_MS,
          stats: stats[i],
        })),
        departed: { ...departed },
      };
    },
    replicated() {
      if (fullyReplicated()) return Promise.resolve();
      return new Promise((resolve) => replicatedWaiters.push(resolve));
    },
    async shutdown(reason) {
      runEnded = true;
      clearInterval(detector);
      await Promise.all(members.filter((m) => m.id !== self.id).map((m) => port.leave(m, reason).catch(() => undefined)));
    },
  };
}
