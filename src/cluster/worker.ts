/**
 * One worker of a cluster, the first one included: the same engine as on one process, joined
 * to its peers by the exchange, answering the coordinator's control calls, heartbeating it, and
 * placing connector sessions. The first worker also holds the coordinator (embedded) and the
 * sinks; every worker reads the sources placed on it.
 *
 * With replicated state it leads some slots and follows others: what it applies to a slot it
 * leads goes to that slot's backups; what its primaries send it, it applies to its copies and
 * keeps their outputs until told they left. When a map fences a dead worker, the records this
 * worker had sent it are routed again to the slots' new primaries, and where this worker is now
 * the primary it sends the dead one's kept outputs again.
 */
import { create } from "@bufbuild/protobuf";
import { deserialize, serialize } from "node:v8";
import * as grpc from "@grpc/grpc-js";
import type { AppSpec } from "../app/spec.ts";
import type { Sink, Source } from "../connector/types.ts";
import { ErrorCode, KeywayError } from "../errors.ts";
import { createExchange, type BatchIn, type Exchange } from "../exchange/grpc-exchange.ts";
import type { LinkWindow } from "../exchange/link-state.ts";
import { decodeRecords, decodeSinkRecords, encodeRecords, encodeSinkRecords } from "../exchange/payload.ts";
import type { Logger } from "../log/logger.ts";
import {
  ClaimStreamResponseSchema,
  CopySlotsResponseSchema,
  ExportSlotsResponseSchema,
  FreezeResponseSchema,
  HeartbeatResponseSchema,
  ImportSlotsResponseSchema,
  JoinResponseSchema,
  LeaveResponseSchema,
  ReleaseStreamResponseSchema,
  ShrinkResponseSchema,
  SourceAssignmentSchema,
  SourcesDoneResponseSchema,
  StartSourcesResponseSchema,
  StatusResponseSchema,
  StopSourcesResponseSchema,
  UpdateMapResponseSchema,
  WorkerStatsResponseSchema,
  type CopySlotsRequest,
  type ExportSlotsRequest,
  type FreezeRequest,
  type ImportSlotsRequest,
  type LeaveRequest,
  type ReleaseStreamRequest,
  type SourceAssignment,
  type StartSourcesRequest,
  type UpdateMapRequest,
  type WorkerStatsResponse,
} from "../protocol/gen/keyway/v1/cluster_pb.ts";
import { backupsOf, equalRanges, type PartitionMap } from "../routing/partition-map.ts";
import type { SessionCounts, SessionPlacement } from "../protocol/index.ts";
import { partitionerNames, pickRecords, type PartitionFn, type Placement } from "../runtime/dataflow.ts";
import { startEngine, type Engine, type EngineOptions } from "../runtime/engine.ts";
import { dropSlot, exportSlot, importSlot } from "../runtime/state-store.ts";
import { deferred } from "../util/deferred.ts";
import { createOutputLedger, createReplication, entryForSlots, unwritten, type OutboxEntry, type OutputsWritten } from "./replication.ts";
import { FIRST_WORKER, mapFromMessage, type MapContext } from "./codec.ts";
import { decodeState, encodeState, type CoordinatorState } from "./coordinator-state.ts";
import type { ClusterConfig, EtcdControl } from "./etcd-control.ts";
import { grpcError, grpcTransport, unary, type ClusterTransport, type UnaryHandler } from "./control-rpc.ts";
import { createCoordinator, HEARTBEAT_INTERVAL_MS, type Coordinator, type CoordinatorTimings } from "./coordinator.ts";
import { coordinatorHandlers } from "./coordinator-service.ts";
import { createWorkerPort } from "./worker-port.ts";
import { events } from "../observe/events.ts";
import { appDigest, CLUSTER_VERSION, workerForInstance, type Worker } from "./membership.ts";
import { hashShift, slotOfHash } from "../routing/hash.ts";

const RATE_WINDOW_MS = 2000;
/** A worker whose coordinator has not answered its heartbeats for this long stops: nothing can change its map any more. */
export const COORDINATOR_LOST_MS = 10_000;
const CONTROL_DEADLINE_MS = 10 * 60_000;
const ETCD_RETRY_MS = 200;
/** How long closing waits for peers to end their calls to this worker before cutting them. */
const SHUTDOWN_GRACE_MS = 2000;

/** The connectors of one worker, built by the caller from the run's bindings. */
export interface WorkerConnectors {
  sources: Map<string, Source>;
  sinks: Map<string, Sink>;
  /** A bundled source from a URI, for sources the coordinator hands this worker. */
  sourceFromUri(uri: string): Source;
  /** App sink names bound to `connector` (they dedup by record id). */
  connectorSinks: ReadonlySet<string>;
}

/** What the worker needs of the connector-protocol server, when one runs here. */
export interface ConnectorEdge {
  readonly address: string;
  rebalance(reason: string): number;
  sessionCount(): number;
  sessionCounts(): SessionCounts;
  credits(): { source: number; sink: number };
  /** Gives up a connector source's stream once its records are committed; false while a session has it open. */
  releaseStream(source: string, stream: string): Promise<{ released: boolean; position: bigint }>;
}

export interface ClusterWorkerOptions {
  app: AppSpec;
  log: Logger;
  token?: string;
  /** Where this worker serves ControlService and ExchangeService. */
  listen: string;
  /** First worker: the slot count and the run's bindings (JSON for joiners). Joiner: the address to join. */
  role:
    | { first: { slotCount: number; bindingsJson: string; finite: boolean; expectedWorkers: number; chunkKeys?: number; replicas: number; failureTimeoutMs: number } }
    | { join: string };
  /** Builds this worker's connectors once it knows the bindings; `placement` places connector sessions. */
  connectors(bindingsJson: string, placement: ClusterSessionPlacement): Promise<{ connectors: WorkerConnectors; edge?: ConnectorEdge; partition?: PartitionFn }>;
  /** Bundled sources to spread when the run starts (the files of directory sources), by pipeline. */
  spreadSources?: () => Array<{ pipeline: number; uris: string[] }>;
  onStateLost?: (err: Error) => void;
  /**
   * The control plane on etcd: membership by lease, the coordinator role by election, its state
   * in etcd. Without it the first worker holds the coordinator for the whole run (embedded).
   */
  etcd?: { control: EtcdControl; config: ClusterConfig };
  /** How this worker reaches its peers: grpc-js, unless the simulator runs it on its own network. */
  transport?: ClusterTransport;
  /** The exchange links' window (the simulator makes it small, so backpressure comes into play). */
  exchangeWindow?: LinkWindow;
  /** Metrics' observers: the engine's stage timings, and the coordinator's moves and failovers while this worker holds it. */
  observe?: { stage?: EngineOptions["observeStage"]; coordinator?: CoordinatorTimings };
}

/** Where connector sessions belong, and where connector sources ask to open a stream (the coordinator's registry). */
export interface ClusterSessionPlacement extends SessionPlacement {
  /** `connector`: the opening session's connector_name (the stream's owner); `owner` is set when another connector owns it. */
  claimStream(source: string, stream: string, connector: string): Promise<{ granted: boolean; resumeAfter: bigint; owner?: string }>;
}

/** Slot states for a copy; after a failover, with the promoted primary's kept outputs of dead primaries for those slots. */
interface Snapshot {
  slots: Array<{ slot: number; pipelines: Uint8Array[] }>;
  orphans?: Array<{ origin: string; entries: OutboxEntry[] }>;
}

/** One promise for several sends: settles when all are done, rejects with the first failure. */
function settled(sends: Promise<void>[]): Promise<void> {
  return sends.length === 1 ? sends[0]! : Promise.all(sends).then(() => undefined);
}

/** Serialising a slot state takes about a microsecond a key: the event loop is let go this often, so other slots keep flowing. */
const SLICE_MS = 2;

/** Runs fn over items, yielding to the event loop whenever a slice of work has taken SLICE_MS; `endSlice` runs before each yield and at the end. */
async function inSlices<T>(items: readonly T[], fn: (item: T) => void, endSlice?: () => void, sliceMs = SLICE_MS): Promise<void> {
  let sliceStart = performance.now();
  for (const item of items) {
    fn(item);
    if (performance.now() - sliceStart >= sliceMs) {
      endSlice?.();
      await new Promise((resolve) => setImmediate(resolve));
      sliceStart = performance.now();
    }
  }
  endSlice?.();
}

export interface ClusterWorker {
  readonly id: () => string;
  readonly address: string;
  readonly engine: Engine;
  /** The partition map this worker routes by. */
  readonly map: () => PartitionMap;
  readonly coordinator: Coordinator | undefined;
  /** The connector server on this worker, when the run binds any connector. */
  readonly edge: () => ConnectorEdge | undefined;
  /** Records on the exchange: sent to peers and not done there (out), received and not finished here (in). */
  readonly backlog: () => { out: number; in: number };
  /** First worker: resolves once the run is over everywhere. Others: once told to leave, with the reason. */
  readonly finished: Promise<string>;
  /** First worker: stops every source in the cluster, waits for their records, and ends the run. */
  stop(): Promise<void>;
  close(): Promise<void>;
}

export async function startClusterWorker(options: ClusterWorkerOptions): Promise<ClusterWorker> {
  const { app, log, token } = options;
  const transport = options.transport ?? grpcTransport;
  const clients = transport.clients(token);
  const first = "first" in options.role ? options.role.first : undefined;
  const joinAddress = "join" in options.role ? options.role.join : undefined;

  // A joiner learns the slot count and the bindings from the cluster before it builds anything.
  let slotCount: number;
  let bindingsJson: string;
  let replicas: number;
  if (first !== undefined) {
    slotCount = first.slotCount;
    bindingsJson = first.bindingsJson;
    replicas = first.replicas;
  } else {
    const status = await clients.call(joinAddress!, "Status", {}, StatusResponseSchema, 10_000).catch((err: grpc.ServiceError) => {
      clients.close();
      throw new KeywayError(err.code === grpc.status.UNAUTHENTICATED ? ErrorCode.UNAUTHENTICATED : ErrorCode.USAGE, `cannot reach the cluster at ${joinAddress}: ${err.details || err.message}`);
    });
    slotCount = status.slotCount;
    bindingsJson = status.bindingsJson;
    replicas = Math.max(1, status.replicas);
  }

  const control = options.etcd?.control;
  // With the sinks' worker able to die, output counts as delivered only once a sink session acked it.
  const outputAcked = control !== undefined && replicas > 1;
  let selfId = first !== undefined ? FIRST_WORKER : "";
  let members: Worker[] = [];
  // The worker holding the coordinator role and the sinks, as the latest map says.
  let coordinatorId = FIRST_WORKER;
  // The coordinator's map epoch when it last froze slots here (FreezeRequest.epoch).
  let frozenUnder = 0;
  // A joiner owns nothing until a map names it.
  const placement: Placement = first !== undefined ? { map: equalRanges(slotCount, [FIRST_WORKER], 1), self: 0, frozen: new Uint8Array(slotCount) } : { map: equalRanges(slotCount, ["?"], 0), self: -1, frozen: new Uint8Array(slotCount) };
  let engine: Engine | undefined;
  let coordinator: Coordinator | undefined;
  let edge: ConnectorEdge | undefined;
  let address = "";

  const fenced = new Set<string>();
  // Copies under way: slot -> workers this primary sends it to before the map names them (CopySlots),
  // and slots whose state arrived here for a copy the map does not name yet.
  const copyingTo = new Map<number, Set<string>>();
  const copiesIn = new Set<number>();
  const replication = createReplication((to, batch) => exchange.send(to, batch));
  /**
   * Outputs this worker's copies produced for primaries that died and that did not reach the
   * sinks' worker, kept until this worker leads their slot: then they go again (what reached the
   * sinks meanwhile left out). A slot's are kept past a failover that promoted another copy, in
   * case that one dies too; that copy sends its own for the slot with its state (a resync), and
   * they replace these, since this copy's state is then its.
   */
  const orphaned = new Map<string, OutboxEntry[]>();
  const ledger = createOutputLedger();
  // How far each fenced worker's output reached the sinks, as the latest map says.
  let knownWritten: readonly OutputsWritten[] = [];
  // Per dead primary: the slots whose kept outputs came with a resync, not from this worker's copy.
  const adopted = new Map<string, Set<number>>();
  const keepOrphaned = (origin: string, entries: readonly OutboxEntry[], replacing?: ReadonlySet<number>): void => {
    const taken = adopted.get(origin);
    const own = (orphaned.get(origin) ?? []).map((e) => (replacing === undefined ? e : entryForSlots(e, (slot) => !replacing.has(slot))));
    const fresh = taken === undefined || replacing !== undefined ? entries : entries.map((e) => entryForSlots(e, (slot) => !taken.has(slot)));
    const box = [...own, ...fresh].filter((e) => e.values.length > 0).sort((a, b) => a.pipeline - b.pipeline || a.outputSeq - b.outputSeq);
    if (box.length > 0) orphaned.set(origin, box);
    else orphaned.delete(origin);
  };
  // slot -> 1 where this worker holds state: it leads or follows the slot, or a copy of it arrived.
  let heldSlots = new Uint8Array(slotCount);
  const computeHeld = (): void => {
    const { map, self: me } = placement;
    const held = new Uint8Array(map.slotCount);
    for (let slot = 0; slot < map.slotCount; slot++) if (map.owners[slot] === me || copiesIn.has(slot)) held[slot] = 1;
    const stride = map.replicas - 1;
    for (let at = 0; at < map.backups.length; at++) if (map.backups[at] === me) held[Math.floor(at / stride)] = 1;
    heldSlots = held;
  };
  const heldHere = (slot: number): boolean => heldSlots[slot] === 1;

  /** A replica: applied to this worker's copies (of slots it holds), its output kept until the primary says it left. */
  const receiveReplica = (batch: BatchIn): Promise<void> => {
    const records = decodeRecords(batch.payload);
    // Only slots this worker holds: a replica for a copy abandoned, or not begun, is no state of its.
    let keep: number[] | undefined;
    const shift = hashShift(slotCount);
    for (let i = 0; i < records.hashes.length; i++) {
      const here = heldHere(slotOfHash(records.hashes[i]!, shift));
      if (here && keep === undefined) continue;
      keep ??= Array.from({ length: i }, (_, j) => j);
      if (here) keep.push(i);
    }
    const held = keep === undefined ? records : pickRecords(records, keep);
    const run = engine!.flows[batch.pipeline]!.applyReplica(batch.stage, held);
    const kept = records.quiet === true ? { values: [], ids: undefined, slots: [] } : { values: run.values, ids: run.ids, ...(run.meta === undefined ? {} : { meta: run.meta }), slots: run.slots! };
    replication.received(batch.from, batch.replica!.seq, batch.replica!.deliveredThrough, { pipeline: batch.pipeline, outputSeq: batch.outputSeq ?? 0, ...kept });
    return Promise.resolve();
  };

  /** A snapshot: slot states for a copy here; the replicas that follow it on the link apply on top. */
  const receiveSnapshot = async (batch: BatchIn): Promise<void> => {
    const { slots, orphans } = deserialize(batch.payload) as Snapshot;
    for (const { slot, pipelines } of slots) {
      engine!.flows.forEach((flow, i) => importSlot(flow.stores, slot, pipelines[i]!));
      copiesIn.add(slot);
      heldSlots[slot] = 1;
    }
    // A resync from a promoted primary: its kept outputs for these slots replace this copy's.
    const replacing = new Set(slots.map((s) => s.slot));
    if (orphans !== undefined) log.debug({ from: batch.from, slots: [...replacing], kept: orphans.map((o) => `${o.origin}:${o.entries.reduce((n, e) => n + e.values.length, 0)}`) }, "resync: a promoted primary's state and kept outputs");
    for (const { origin, entries } of orphans ?? []) {
      keepOrphaned(origin, entries, replacing);
      const taken = adopted.get(origin) ?? new Set<number>();
      for (const slot of replacing) taken.add(slot);
      adopted.set(origin, taken);
    }
  };

  const exchange: Exchange = createExchange({
    self: () => selfId,
    token,
    log: log.child({ component: "exchange" }),
    // What reached here counts as written from the moment it arrives: this worker (the sinks') outlives the run.
    arrived: (batch) => {
      if (batch.toSink && batch.outputSeq !== undefined) ledger.record(batch.origin?.worker ?? batch.from, batch.pipeline, batch.outputSeq, batch.origin?.slots);
    },
    accepts: (from) => (fenced.has(from) ? `worker ${from} was declared dead and fenced; its links are refused` : undefined),
    dial: transport.dial,
    ...(options.exchangeWindow === undefined ? {} : { window: options.exchangeWindow }),
    receive: (batch) => {
      if (batch.replica !== undefined || batch.snapshot === true) {
        let done: Promise<void>;
        try {
          done = batch.snapshot === true ? receiveSnapshot(batch) : receiveReplica(batch);
        } catch (err) {
          done = Promise.reject(err);
        }
        return { applied: done.catch(() => undefined), done };
      }
      const inbound = batch.toSink
        ? { pipeline: batch.pipeline, stage: 0, toSink: true, hops: batch.hops, output: decodeSinkRecords(batch.payload) }
        : { pipeline: batch.pipeline, stage: batch.stage, toSink: false, hops: batch.hops, records: decodeRecords(batch.payload) };
      return engine!.receive(inbound);
    },
  });

  // The coordinator's worker holds the sinks.
  const home = (): Worker | undefined => members.find((m) => m.id === coordinatorId);
  const coordinatorAddress = (): string => home()?.address ?? joinAddress ?? address;

  /** Per slot this worker leads: where what it applies goes (the map's backups, and copies being made). */
  const computeReplicaTargets = (): void => {
    if (replicas === 1) return;
    const { map, self: me } = placement;
    const targets: Array<number[] | undefined> = new Array(map.slotCount).fill(undefined);
    for (let slot = 0; slot < map.slotCount; slot++) {
      if (map.owners[slot] !== me) continue;
      const to = backupsOf(map, slot);
      for (const id of copyingTo.get(slot) ?? []) {
        const w = map.workers.indexOf(id);
        if (w >= 0 && !to.includes(w)) to.push(w);
      }
      if (to.length > 0) targets[slot] = to;
    }
    placement.replicaTargets = targets;
  };

  /**
   * A worker declared dead: what this worker had sent it and not seen finished is routed again
   * under the new map (its slots' new primaries drop what they already applied); replicas to it
   * count as done (the copy is gone; a new one is being made).
   */
  const abandon = (dead: string): void => {
    for (const { batch, resolve, reject } of exchange.abandon(dead)) {
      if (batch.replica !== undefined) resolve();
      else if (batch.toSink && outputAcked && home() !== undefined) {
        // The sinks' worker died: output it had not seen acked goes to the sinks' new worker, in order.
        const to = home()!;
        const resent = to.id === selfId ? engine!.receive({ pipeline: batch.pipeline, stage: 0, toSink: true, hops: 0, output: decodeSinkRecords(batch.payload) }).done : exchange.send(to.id, { ...batch, epoch: placement.map.epoch, resent: true });
        resent.then(resolve, reject);
      } else if (batch.toSink || batch.snapshot === true) reject(new KeywayError(ErrorCode.WORKER_LOST, `worker ${dead} died before it finished what was sent to it`));
      else engine!.reroute(batch.pipeline, batch.stage, decodeRecords(batch.payload), batch.hops).then(resolve, reject);
    }
  };

  /** Takes a map; settles once links to workers that left have finished what they carried. */
  const applyMap = (map: PartitionMap, context: MapContext): Promise<void> => {
    const { fenced: newlyFenced } = context;
    const newMembers = [...context.members];
    // Maps are published concurrently by a failover and a rebuild; a newer one already here supersedes an older.
    if (map.epoch < placement.map.epoch) return Promise.resolve();
    const sinksMoved = context.coordinator !== coordinatorId;
    coordinatorId = context.coordinator;
    if (selfId === "") {
      selfId = newMembers.find((m) => m.address === address)?.id ?? "";
      // With etcd, a member from its first map on: a successor coordinator sees it live even if the one
      // it joins through dies before answering the join.
      if (selfId !== "" && control !== undefined) void control.register(selfId, address).catch(() => undefined);
    }
    const leaderAt = newMembers.find((m) => m.id === context.coordinator)?.address;
    if (control !== undefined && selfId !== "" && leaderAt !== undefined && leaderAt !== joinAddress) coordinatorMoved.resolve();
    if (newlyFenced.includes(selfId)) {
      lose(new KeywayError(ErrorCode.FENCED, `worker ${selfId} was declared dead by the cluster and fenced; it exits (start a new worker to rejoin)`));
      return Promise.resolve();
    }
    const previous = placement.map;
    const dead = newlyFenced.filter((id) => !fenced.has(id));
    for (const id of dead) fenced.add(id);
    members = newMembers;
    const index = map.workers.indexOf(selfId);
    placement.map = map;
    placement.self = index;
    // Only a map newer than the one a freeze was made under ends it: a failover's map of that epoch,
    // reaching this worker after the freeze, must not let the moving slots' records go to their old owner.
    if (map.epoch > frozenUnder) placement.frozen!.fill(0);
    for (const slot of copyingTo.keys()) if (map.owners[slot] !== index) copyingTo.delete(slot);
    for (const [slot, to] of copyingTo) {
      for (const id of to) if (!newMembers.some((m) => m.id === id) || backupsOf(map, slot).includes(map.workers.indexOf(id))) to.delete(id);
      if (to.size === 0) copyingTo.delete(slot);
    }
    for (const slot of copiesIn) if (map.owners[slot] === index || backupsOf(map, slot).includes(index)) copiesIn.delete(slot);
    computeReplicaTargets();
    computeHeld();
    // Synchronously, before any new record is routed: the other copies of slots this worker now leads
    // take its state (ahead of the replicas of what is routed again), and what was on its way to the
    // dead goes again, in order.
    knownWritten = context.written;
    // Not only when this map fences someone: a map published meanwhile may fence a worker before the
    // one that promotes its slots' backups arrives.
    resendOutboxes(previous, dead, sinksMoved && outputAcked);
    for (const id of dead) abandon(id);
    const retired = exchange.setPeers(members);
    for (const flow of engine?.flows ?? []) {
      for (const store of flow.stores) {
        for (let slot = 0; slot < map.slotCount; slot++) if (!heldHere(slot)) dropSlot(store, slot);
      }
    }
    engine?.thaw();
    edge?.rebalance("the cluster changed");
    // The sinks moved: what this worker sent them again (on lane 1) reaches them before its new output.
    if (sinksMoved && outputAcked) engine?.holdOutput(exchange.drained(1));
    return retired;
  };

  /**
   * Sends `to` the state of each of these slots this worker leads, for its copy there. A slice's
   * states go out before the event loop is let go, after `onSlot` ran for each of them (and the
   * replica targets were recomputed): on the link, a slot's snapshot precedes the replicas
   * applied after it. A resync (after a failover) goes in one slice, with the outputs this worker
   * keeps for dead primaries of those slots.
   */
  const shipStates = async (to: string, slots: readonly number[], onSlot?: (slot: number) => void, resync = false): Promise<void> => {
    const sends: Promise<void>[] = [];
    let states: Array<{ slot: number; pipelines: Uint8Array[] }> = [];
    await inSlices(
      slots,
      (slot) => {
        if (placement.map.owners[slot] !== placement.self) return;
        states.push({ slot, pipelines: engine!.flows.map((f) => exportSlot(f.stores, slot)) });
        onSlot?.(slot);
      },
      () => {
        if (onSlot !== undefined) computeReplicaTargets();
        if (states.length === 0) return;
        const snapshot: Snapshot = { slots: states };
        if (resync) {
          const these = new Set(states.map((st) => st.slot));
          snapshot.orphans = [...fenced].map((origin) => ({ origin, entries: (orphaned.get(origin) ?? []).map((e) => entryForSlots(e, (slot) => these.has(slot))).filter((e) => e.values.length > 0) }));
        }
        const payload = serialize(snapshot);
        sends.push(exchange.send(to, { epoch: placement.map.epoch, pipeline: 0, stage: 0, toSink: false, hops: 0, records: 0, payload, snapshot: true }));
        states = [];
      },
      // A resync ships at once, before anything is routed again.
      resync ? Infinity : SLICE_MS,
    );
    await Promise.all(sends);
  };

  const resendOutboxes = (previous: PartitionMap, dead: readonly string[], ahead: boolean): void => {
    for (const id of dead) {
      keepOrphaned(id, replication.takeOutbox(id));
      replication.forget(id);
    }
    const promoted: number[] = [];
    previous.owners.forEach((o, slot) => {
      if (fenced.has(previous.workers[o]!) && placement.map.owners[slot] === placement.self) promoted.push(slot);
    });
    if (promoted.length === 0) return;
    const resend = (): void => {
      let resent = 0;
      const sinksHere = coordinatorId === selfId;
      // Another copy of a slot may have been promoted: each slot's outputs go again from its new
      // primary only; the other slots' stay kept, in case that one dies too.
      const leads = (slot: number) => placement.map.owners[slot] === placement.self;
      for (const [id, box] of orphaned) {
        const kept: OutboxEntry[] = [];
        // Filtered now, by the latest map's figures: what another promoted worker resent for `id` meanwhile has arrived too.
        for (const whole of unwritten(box, id, knownWritten)) {
          const others = entryForSlots(whole, (slot) => !leads(slot));
          if (others.values.length > 0) kept.push(others);
          const entry = entryForSlots(whole, leads);
          if (entry.values.length === 0) continue;
          resent += entry.values.length;
          const origin = { worker: id, outputSeq: entry.outputSeq, slots: [...new Set(entry.slots)] };
          if (sinksHere) ledger.record(id, entry.pipeline, entry.outputSeq, origin.slots);
          engine!.deliverOutput(entry.pipeline, entry, ahead, origin).catch((err: Error) => log.error({ err: err.message }, "resending a dead worker's outputs failed"));
        }
        if (kept.length > 0) orphaned.set(id, kept);
        else orphaned.delete(id);
      }
      log.info({ dead, outputsResent: resent, slotsLed: placement.map.owners.filter((o) => o === placement.self).length }, "took over from dead workers");
    };
    // Other copies of these slots (three or more copies) may lack records this one applied: they take
    // its state before its resends go out, or a copy promoted next would make those outputs again.
    const copies = new Map<string, number[]>();
    for (const slot of promoted) {
      for (const w of backupsOf(placement.map, slot)) {
        const id = placement.map.workers[w]!;
        copies.set(id, [...(copies.get(id) ?? []), slot]);
      }
    }
    if (copies.size === 0) return resend();
    log.debug({ copies: [...copies].map(([id, slots]) => `${id}:${slots.length}`) }, "resync: sending this worker's state to the other copies of the slots it now leads");
    const synced = Promise.all([...copies].map(([to, slots]) => shipStates(to, slots, undefined, true))).then(
      () => undefined,
      (err: Error) => log.warn({ err: err.message }, "a copy did not take this worker's state after a failover"),
    );
    engine!.holdOutput(synced.then(resend));
  };

  const usesPartitioner = app.pipelines.some((p) => partitionerNames(p).length > 0);
  const placementForSessions: ClusterSessionPlacement = {
    addresses: () => members.map((m) => m.connectorAddress).filter((a) => a !== ""),
    redirectFor(role, _target, instanceId) {
      if (role === "sink") return home()?.connectorAddress || undefined;
      // A partition function keys records where they are read: its sessions serve the worker they
      // attach to, so source sessions stay there too rather than move to a worker without them.
      if (role === "source" && !usesPartitioner) return workerForInstance(members, instanceId)?.connectorAddress;
      return undefined;
    },
    claimStream: (source, stream, connector) =>
      clients.call(coordinatorAddress(), "ClaimStream", { workerId: selfId, source, stream, connector }, ClaimStreamResponseSchema, CONTROL_DEADLINE_MS),
  };

  // Rate over the last window: a sample taken at most every RATE_WINDOW_MS.
  let sample = { atMs: Date.now(), records: 0 };
  let recordsPerSecond = 0;
  const recordsRun = () => (engine?.flows ?? []).reduce((n, f) => n + f.recordsRun(), 0);
  const figures = (): WorkerStatsResponse => {
    const now = Date.now();
    if (now - sample.atMs >= RATE_WINDOW_MS) {
      recordsPerSecond = ((recordsRun() - sample.records) * 1000) / (now - sample.atMs);
      sample = { atMs: now, records: recordsRun() };
    }
    const stats = engine?.stats();
    const backlog = exchange.backlog();
    return create(WorkerStatsResponseSchema, {
      keys: BigInt(stats?.keys ?? 0),
      recordsProcessed: BigInt(recordsRun()),
      epoch: BigInt(placement.map.epoch),
      recordsPerSecond,
      pid: process.pid,
      connectorSessions: edge?.sessionCount() ?? 0,
      sources: engine?.sourceNames() ?? [],
      backlogOut: BigInt(backlog.out),
      backlogIn: BigInt(backlog.in),
      recordsForwarded: BigInt(stats?.recordsForwarded ?? 0),
      recordsIn: BigInt(stats?.recordsIn ?? 0),
      recordsOut: BigInt(stats?.recordsOut ?? 0),
    });
  };

  const leaving = deferred<string>();
  // The coordinator role moved while this worker joined (etcd): the join's answer may never come.
  const coordinatorMoved = deferred<void>();
  const leave = (reason: string): void => leaving.resolve(reason);
  const lose = (err: Error): void => leaving.reject(err);
  const left = leaving.promise;
  let built!: WorkerConnectors;
  // Bundled sources handed to this worker, by URI, so a worker that leaves can pass them on.
  const assigned = new Map<Source, string>();
  const stopOwnSources = async (): Promise<SourceAssignment[]> => {
    const standings = await engine!.closeSources();
    return standings.flatMap(({ pipeline, source, progress, ended }) => {
      const uri = assigned.get(source);
      if (uri === undefined || ended) return [];
      return [create(SourceAssignmentSchema, { pipeline, uri, resumeFrom: typeof progress === "bigint" ? progress : 0n })];
    });
  };

  const workerHandlers: Record<string, UnaryHandler> = {
    Freeze: unary(async (req: FreezeRequest) => {
      frozenUnder = Math.max(frozenUnder, Number(req.epoch));
      for (const slot of req.slots) placement.frozen![slot] = 1;
      await exchange.drained();
      return create(FreezeResponseSchema, {});
    }),
    ExportSlots: unary(async (req: ExportSlotsRequest) => {
      // What these slots' records produced here (outputs, next-stage records) must be applied where
      // it went before the new owner produces more, or a key's outputs could overtake each other.
      // Replicated, a run's output may still wait for its turn, behind another slot's backups' acks.
      await engine!.outputsReleased();
      await exchange.drained();
      const slots: Array<{ slot: number; pipelines: Uint8Array[] }> = [];
      await inSlices(req.slots, (slot) => slots.push({ slot, pipelines: engine!.flows.map((f) => exportSlot(f.stores, slot)) }));
      return create(ExportSlotsResponseSchema, { slots });
    }),
    ImportSlots: unary(async (req: ImportSlotsRequest) => {
      try {
        await inSlices(req.slots, (state) => engine!.flows.forEach((flow, i) => importSlot(flow.stores, state.slot, state.pipelines[i]!)));
      } catch (err) {
        throw grpcError(grpc.status.INVALID_ARGUMENT, (err as Error).message);
      }
      if (req.map !== undefined) {
        const { map, ...context } = mapFromMessage(req.map);
        await applyMap(map, context);
      }
      return create(ImportSlotsResponseSchema, { keys: BigInt(engine!.stats().keys) });
    }),
    UpdateMap: unary(async (req: UpdateMapRequest) => {
      const { map, ...context } = mapFromMessage(req.map!);
      await applyMap(map, context);
      return create(UpdateMapResponseSchema, {});
    }),
    CopySlots: unary(async (req: CopySlotsRequest) => {
      const to = req.toWorkerId;
      if (!members.some((m) => m.id === to)) throw grpcError(grpc.status.NOT_FOUND, `${ErrorCode.UNKNOWN_NAME}: no member ${to} to copy slots to`);
      // Each slot's state leaves in the same step that makes `to` a replica target.
      await shipStates(to, req.slots, (slot) => {
        let targets = copyingTo.get(slot);
        if (targets === undefined) copyingTo.set(slot, (targets = new Set()));
        targets.add(to);
      });
      // The copy holds what this worker applied; outputs of that still on their way must have left, or a
      // promoted copy would hold state whose outputs nobody has.
      await engine!.outputsSettled();
      return create(CopySlotsResponseSchema, {});
    }),
    ReleaseStream: unary(async (req: ReleaseStreamRequest) => {
      const answer = edge === undefined ? { released: true, position: 0n } : await edge.releaseStream(req.source, req.stream);
      return create(ReleaseStreamResponseSchema, answer);
    }),
    StartSources: unary(async (req: StartSourcesRequest) => {
      for (const s of req.sources) {
        const source = built.sourceFromUri(s.uri);
        assigned.set(source, s.uri);
        await engine!.addSource(s.pipeline, source, s.resumeFrom === 0n ? undefined : s.resumeFrom, s.uri);
      }
      if (req.sources.length > 0) log.info({ sources: req.sources.map((s) => s.uri) }, "reading sources placed here");
      watchSources(Number(req.generation));
      return create(StartSourcesResponseSchema, {});
    }),
    StopSources: unary(async () => create(StopSourcesResponseSchema, { sources: await stopOwnSources() })),
    Leave: unary((req: LeaveRequest) => {
      setImmediate(() => leave(req.reason));
      return create(LeaveResponseSchema, {});
    }),
    WorkerStats: unary(() => figures()),
  };

  // Coordinator-wide calls made to a worker without the coordinator go on to it.
  const forwarded = (method: string) =>
    unary(async (req: object) => {
      const output = method === "Status" ? StatusResponseSchema : method === "Shrink" ? ShrinkResponseSchema : JoinResponseSchema;
      return clients.call(coordinatorAddress(), method, req, output, CONTROL_DEADLINE_MS).catch((err: grpc.ServiceError) => {
        throw grpcError(err.code ?? grpc.status.UNAVAILABLE, err.details || err.message);
      });
    });

  let handlers: Record<string, UnaryHandler> = {};
  const server = await transport.serve(options.listen, token, (method) => handlers[method], exchange);
  address = server.address;

  const { connectors, edge: connectorEdge, partition } = await options.connectors(bindingsJson, placementForSessions);
  built = connectors;
  edge = connectorEdge;
  const self = (): Worker => ({ id: selfId, address, connectorAddress: edge?.address ?? "", data: true });
  if (first !== undefined) members = [self()];

  const port = createWorkerPort(() => selfId, workerHandlers, clients, figures);

  /** Saves the coordinator's state in etcd, retrying while etcd is down; a save another coordinator overtook deposes this one. */
  const persist = async (state: CoordinatorState): Promise<void> => {
    const text = encodeState(state, selfId);
    for (;;) {
      try {
        return await control!.saveState(text);
      } catch (err) {
        if (err instanceof KeywayError) {
          lose(err);
          throw err;
        }
        await new Promise((resolve) => setTimeout(resolve, ETCD_RETRY_MS));
      }
    }
  };
  const startCoordinator = (restored: CoordinatorState | undefined): Coordinator => {
    const settings = first ?? { ...options.etcd!.config, chunkKeys: undefined };
    const started = createCoordinator({
      app,
      self: self(),
      slotCount,
      port,
      log: log.child({ role: "coordinator" }),
      finite: settings.finite,
      chunkKeys: settings.chunkKeys,
      replicas,
      failureTimeoutMs: settings.failureTimeoutMs,
      outputsWritten: (id) => ledger.of(id),
      onStateLost: options.onStateLost ?? ((err) => lose(err)),
      ...(control === undefined ? {} : { persist, restored }),
      ...(options.observe?.coordinator === undefined ? {} : { timings: options.observe.coordinator }),
    });
    handlers = { ...workerHandlers, ...coordinatorHandlers(started, { appName: app.name, bindingsJson, log }) };
    return started;
  };

  let runOver: Promise<void> = left.then(() => undefined);
  // A joiner's run ends with `left`, whose failure its caller reports: not an unhandled rejection here.
  runOver.catch(() => undefined);
  if (first !== undefined) {
    if (control !== undefined) {
      await control.campaign(selfId, address);
      await control.register(selfId, address);
    }
    coordinator = startCoordinator(undefined);
    runOver = coordinator.runOver;
    if (control !== undefined) await control.watchMembers((id) => coordinator?.memberGone(id));
  } else {
    handlers = { ...workerHandlers, ...Object.fromEntries(["Join", "Status", "Shrink"].map((m) => [m, forwarded(m)])) };
  }

  // Sources wait until every expected worker has joined, so the run uses them all from the start.
  const startGate = first === undefined ? undefined : coordinator!.waitForWorkers(first.expectedWorkers);
  engine = await startEngine(app, { sources: built.sources, sinks: built.sinks }, {
    slotCount,
    log,
    placement,
    partition,
    startGate,
    holdOpen: runOver,
    replicated: replicas > 1,
    ...(control === undefined ? {} : { sinkHere: () => coordinatorId === selfId, outputAcked }),
    peers: {
      replicate: (target, pipeline, stage, batch, outputSeq) => replication.replicate(placement.map.workers[target]!, placement.map.epoch, pipeline, stage, batch, outputSeq),
      send: (owner, pipeline, stage, batch, hops) => {
        const to = placement.map.workers[owner]!;
        const epoch = placement.map.epoch;
        return settled(encodeRecords(batch).map(({ records, payload }) => exchange.send(to, { epoch, pipeline, stage, toSink: false, hops, records, payload })));
      },
      sendOutput: (pipeline, output, outputSeq, resent, origin) => {
        const to = home();
        if (to === undefined) return Promise.reject(new KeywayError(ErrorCode.WORKER_LOST, "no worker holds the sinks"));
        const epoch = placement.map.epoch;
        // A replicated run's output goes whole: the sinks' worker then has all of a run or none of it.
        const pieces = encodeSinkRecords(output, outputSeq === undefined ? undefined : Infinity);
        return settled(pieces.map(({ records, payload }) => exchange.send(to.id, { epoch, pipeline, stage: 0, toSink: true, hops: 0, records, payload, ...(outputSeq === undefined ? {} : { outputSeq }), ...(resent === true ? { resent } : {}), ...(origin === undefined ? {} : { origin }) })));
      },
      ready: () => exchange.ready(),
    },
    remoteSinkWantsIds: (sink) => built.connectorSinks.has(sink),
    ...(options.observe?.stage === undefined ? {} : { observeStage: options.observe.stage }),
  });

  // A worker tells the coordinator when its sources, those just placed here too, have ended (a finite run's end).
  const watchSources = (generation: number): void => {
    // A report that cannot be made (the worker was fenced, the run is over) changes nothing.
    void engine!
      .sourcesDone()
      .then(() =>
        coordinator !== undefined
          ? coordinator.sourcesDone(selfId, generation)
          : clients.call(coordinatorAddress(), "SourcesDone", { workerId: selfId, generation: BigInt(generation) }, SourcesDoneResponseSchema).then(() => undefined),
      )
      .catch(() => undefined);
  };

  /** An etcd read, tried again while etcd does not answer. */
  const fromEtcd = async <T>(read: () => Promise<T>): Promise<T> => {
    for (;;) {
      try {
        return await read();
      } catch {
        await new Promise((resolve) => setTimeout(resolve, ETCD_RETRY_MS));
      }
    }
  };

  /** Elected (etcd): this worker takes the coordinator role from the state its predecessor left. */
  const takeOver = async (): Promise<void> => {
    const text = await fromEtcd(() => control!.loadState());
    if (text === undefined) throw new KeywayError(ErrorCode.INTERNAL, "elected coordinator, but etcd holds no cluster state");
    const restored = decodeState(text);
    // Cut off from the workers but not from etcd, a fenced worker keeps its lease and can win the
    // election: it must not lead a cluster that declared it dead (it exits, and its lease with it).
    if (restored.fenced.includes(selfId)) {
      throw new KeywayError(ErrorCode.FENCED, `worker ${selfId} was elected coordinator, but the cluster had declared it dead and fenced; it steps down and exits (start a new worker to rejoin)`);
    }
    const taken = startCoordinator(restored);
    coordinator = taken;
    log.info({ worker: selfId }, "elected coordinator");
    await fromEtcd(() => control!.watchMembers((id) => taken.memberGone(id)));
    await taken.takeOver(await fromEtcd(() => control!.liveMembers()));
    void taken.runOver.then(() => leave("the run is over"));
  };

  /** The coordinator's address refuses connections: its process is gone, so its lease is ended now rather than at its expiry. */
  let revoking = false;
  const endLeaseIfGone = async (): Promise<void> => {
    const was = home();
    if (revoking || was === undefined) return;
    revoking = true;
    try {
      const leader = await control!.leader();
      if (leader === undefined || leader.id !== was.id || (await port.probe(was)) !== "refused") return;
      log.warn({ coordinator: was.id, address: was.address }, "the coordinator's process is gone: ending its etcd lease so another worker takes over");
      await control!.revoke(leader.lease);
    } catch (err) {
      log.debug({ err: (err as Error).message }, "could not end the coordinator's lease");
    } finally {
      revoking = false;
    }
  };
  control?.onLost((err) => {
    // Nothing more in or out: the cluster may promote this worker's slots elsewhere from now on.
    exchange.close();
    if (first !== undefined && options.onStateLost !== undefined) options.onStateLost(err);
    else lose(err);
  });

  let heartbeat: NodeJS.Timeout | undefined;
  if (first === undefined) {
    // With etcd, a worker a map already names stays when the coordinator it joins through dies: it
    // goes on with the next one (it holds slots the move gave it; going would take them along).
    const member = () => control !== undefined && selfId !== "" && members.some((m) => m.id === selfId);
    try {
      const joining = clients.call(
        joinAddress!,
        "Join",
        { version: CLUSTER_VERSION, address, connectorAddress: edge?.address ?? "", app: app.name, appDigest: appDigest(app), pid: process.pid },
        JoinResponseSchema,
        CONTROL_DEADLINE_MS,
      );
      joining.catch(() => undefined);
      const response = await (control === undefined ? joining : Promise.race([joining, coordinatorMoved.promise.then(() => undefined)]));
      if (response !== undefined) {
        const { map, ...context } = mapFromMessage(response.map!);
        selfId = response.workerId;
        if (map.epoch >= placement.map.epoch) await applyMap(map, { ...context, fenced: [], written: [] });
        log.info({ worker: selfId, address, slots: map.owners.filter((o) => o === placement.self).length }, "joined the cluster");
        events.record("join", `joined the cluster as ${selfId}`);
      } else log.warn({ worker: selfId, coordinator: coordinatorId }, "the coordinator changed during this worker's join: it goes on as the member its map names");
    } catch (err) {
      if (!member()) {
        leave("join refused");
        await engine.stop().catch(() => undefined);
        server.forceShutdown();
        exchange.close();
        clients.close();
        const e = err as grpc.ServiceError;
        const code = e.code === grpc.status.UNAUTHENTICATED ? ErrorCode.UNAUTHENTICATED : ErrorCode.USAGE;
        throw new KeywayError(code, `join refused by ${joinAddress}: ${e.details || e.message}`);
      }
      log.warn({ worker: selfId, err: (err as Error).message }, "the join failed after a map named this worker: it goes on as that member");
    }
    if (control !== undefined) {
      await control.register(selfId, address);
      // Every worker stands for the coordinator role; it changes hands only when its holder's lease ends.
      void control
        .campaign(selfId, address)
        .then(takeOver)
        .catch((err: Error) => lose(err));
    }
    // Silence is counted in heartbeats sent, not in time since the last answer: a worker that was itself
    // paused (a stopped process, a frozen machine) asks again before it concludes its coordinator is gone.
    let unanswered = 0;
    heartbeat = setInterval(() => {
      if (coordinatorId === selfId) return;
      clients.call(coordinatorAddress(), "Heartbeat", { workerId: selfId, epoch: BigInt(placement.map.epoch) }, HeartbeatResponseSchema, HEARTBEAT_INTERVAL_MS * 4).then(
        () => (unanswered = 0),
        (err: grpc.ServiceError) => {
          if (control !== undefined && err.code === grpc.status.UNAVAILABLE) void endLeaseIfGone();
          if (err.code === grpc.status.FAILED_PRECONDITION && err.details.startsWith(ErrorCode.FENCED)) {
            clearInterval(heartbeat);
            lose(new KeywayError(ErrorCode.FENCED, `worker ${selfId} was declared dead by the cluster and fenced (${err.details}); it exits (start a new worker to rejoin)`));
            return;
          }
          // With etcd, a coordinator that does not answer is replaced through its lease; this worker goes on.
          if (control !== undefined || ++unanswered < COORDINATOR_LOST_MS / HEARTBEAT_INTERVAL_MS) return;
          clearInterval(heartbeat);
          lose(new KeywayError(ErrorCode.WORKER_LOST, `the coordinator at ${coordinatorAddress()} has not answered for ${COORDINATOR_LOST_MS / 1000} s; this worker stops`));
        },
      );
    }, HEARTBEAT_INTERVAL_MS);
    heartbeat.unref();
  } else {
    void startGate!.then(async () => {
      const spread = options.spreadSources?.() ?? [];
      // A partition function's sessions attach to the first worker: what they key is read there.
      const data = usesPartitioner ? [self()] : coordinator!.members().filter((m) => m.data);
      const assignments = spread.flatMap(({ pipeline, uris }) => uris.map((uri, i) => ({ worker: data[i % data.length]!.id, source: { pipeline, uri, resumeFrom: 0n } as SourceAssignment })));
      await coordinator!.startSources(assignments);
    });
  }

  const finished = first !== undefined ? runOver.then(() => "the run is over") : left;
  return {
    id: () => selfId,
    address,
    engine,
    map: () => placement.map,
    edge: () => edge,
    backlog: () => exchange.backlog(),
    get coordinator() {
      return coordinator;
    },
    finished,
    async stop() {
      if (coordinator !== undefined) await coordinator.stopRun();
      else await engine!.closeSources();
    },
    async close() {
      clearInterval(heartbeat);
      if (coordinator !== undefined) await coordinator.shutdown("the run is over");
      exchange.close();
      clients.close();
      // Peers cut off from this worker never close their sessions here: the wait is bounded.
      let bound: NodeJS.Timeout | undefined;
      await Promise.race([server.shutdown(), new Promise<void>((resolve) => (bound = setTimeout(resolve, SHUTDOWN_GRACE_MS)))]);
      clearTimeout(bound);
      server.forceShutdown();
    },
  };
}
