/**
 * What the dashboard pushes: workers, the slot map as a strip, connector sessions, commit lag and
 * recent events, built from one engine (one process) or from the cluster's Status (any worker:
 * a worker without the coordinator has its Status call forwarded there, as `keyway cluster
 * status` does) and the map this worker routes by.
 */
import type { AppSpec } from "../app/spec.ts";
import { statusJson } from "../cli/cluster-commands.ts";
import type { ClusterWorker } from "../cluster/worker.ts";
import type { ControlClients } from "../cluster/control-rpc.ts";
import { events, type KeywayEvent } from "../observe/events.ts";
import { StatusResponseSchema } from "../protocol/gen/keyway/v1/cluster_pb.ts";
import type { SessionCounts } from "../protocol/server.ts";
import type { PartitionMap } from "../routing/partition-map.ts";
import type { Engine } from "../runtime/engine.ts";
import type { SnapshotSource } from "./server.ts";

/** Cells in the slot strip at most: 4096 one-pixel cells say no more than 256 wider ones. */
export const STRIP_CELLS_MAX = 256;
/** A Status call slower than this leaves the page on its last view, with the failure shown. */
const STATUS_DEADLINE_MS = 3000;
/** The id a single process shows itself under: the id the first worker of a cluster has. */
const SINGLE_WORKER_ID = "w0";

export interface WorkerRow {
  id: string;
  address: string;
  coordinator: boolean;
  /** Heard from within the heartbeat timeout and not fenced. */
  alive: boolean;
  fenced: boolean;
  slots: number;
  backups: number;
  keys: number;
  recordsPerSecond: number;
  connectorSessions: number;
}

export interface DashboardSnapshot {
  atMs: number;
  app: string;
  mode: "process" | "cluster";
  /** The worker serving this page. */
  servedBy: string;
  epoch: number;
  slotCount: number;
  replicas: number;
  underReplicated: number;
  workers: WorkerRow[];
  /** The slot map in cells of `slotsPerCell` slots, each the id of the worker leading most of them. */
  strip: { slotsPerCell: number; owners: string[] };
  /** This process's connector sessions by role; absent when it serves no connector protocol. */
  sessions?: SessionCounts;
  /** With --data-dir: outputs since the last checkpoint, per pipeline. */
  commitLag?: Array<{ pipeline: string; uncommitted: number }>;
  /** This process's recent events, oldest first. */
  events: KeywayEvent[];
  /** Why the cluster's figures could not be had this time (the coordinator did not answer). */
  error?: string;
}

export function slotStrip(map: PartitionMap, cellsMax = STRIP_CELLS_MAX): DashboardSnapshot["strip"] {
  const slotsPerCell = Math.ceil(map.slotCount / cellsMax);
  const owners: string[] = [];
  for (let start = 0; start < map.slotCount; start += slotsPerCell) {
    const counts = new Map<number, number>();
    for (let slot = start; slot < Math.min(start + slotsPerCell, map.slotCount); slot++) counts.set(map.owners[slot]!, (counts.get(map.owners[slot]!) ?? 0) + 1);
    const [owner] = [...counts].reduce((best, entry) => (entry[1] > best[1] ? entry : best));
    owners.push(map.workers[owner] ?? "");
  }
  return { slotsPerCell, owners };
}

/** Records run per second over the time between two calls at least a second apart. */
function rateMeter(count: () => number): () => number {
  let sample = { atMs: Date.now(), records: count() };
  let rate = 0;
  return () => {
    const now = Date.now();
    if (now - sample.atMs >= 1000) {
      const records = count();
      rate = ((records - sample.records) * 1000) / (now - sample.atMs);
      sample = { atMs: now, records };
    }
    return rate;
  };
}

export interface ProcessSource {
  app: AppSpec;
  engine: Engine;
  slotCount: number;
  /** Where connectors reach this process, if anywhere. */
  connectorAddress?: string;
  sessions?: () => SessionCounts;
}

export function processSnapshots(source: ProcessSource): SnapshotSource {
  const { engine } = source;
  const rate = rateMeter(() => engine.flows.reduce((n, f) => n + f.recordsRun(), 0));
  const snapshot = async (): Promise<DashboardSnapshot> => {
    const stats = engine.stats();
    const sessions = source.sessions?.();
    const map: PartitionMap = { epoch: 0, slotCount: source.slotCount, workers: [SINGLE_WORKER_ID], owners: new Uint16Array(source.slotCount), replicas: 1, backups: new Uint16Array(0) };
    return {
      atMs: Date.now(),
      app: source.app.name,
      mode: "process",
      servedBy: SINGLE_WORKER_ID,
      epoch: 0,
      slotCount: source.slotCount,
      replicas: 1,
      underReplicated: 0,
      workers: [
        {
          id: SINGLE_WORKER_ID,
          address: source.connectorAddress ?? "",
          coordinator: true,
          alive: true,
          fenced: false,
          slots: source.slotCount,
          backups: 0,
          keys: stats.keys,
          recordsPerSecond: rate(),
          connectorSessions: sessions === undefined ? 0 : sessions.source + sessions.sink + sessions.partitioner,
        },
      ],
      strip: slotStrip(map),
      ...(sessions === undefined ? {} : { sessions }),
      ...(stats.uncommittedOut === undefined ? {} : { commitLag: stats.uncommittedOut.map((uncommitted, i) => ({ pipeline: source.app.pipelines[i]!.name, uncommitted })) }),
      events: events.recent(),
    };
  };
  return { snapshot };
}

export interface ClusterSource {
  app: AppSpec;
  worker: ClusterWorker;
  /** Clients of the cluster's control service, with the cluster's token and TLS; closed with the dashboard. */
  clients: ControlClients;
  sessions?: () => SessionCounts | undefined;
}

export function clusterSnapshots(source: ClusterSource): SnapshotSource {
  const { worker } = source;
  const snapshot = async (): Promise<DashboardSnapshot> => {
    const map = worker.map();
    const sessions = source.sessions?.();
    const base = {
      atMs: Date.now(),
      app: source.app.name,
      mode: "cluster" as const,
      servedBy: worker.id(),
      strip: slotStrip(map),
      ...(sessions === undefined ? {} : { sessions }),
      events: events.recent(),
    };
    let status: ReturnType<typeof statusJson>;
    try {
      status = statusJson(await source.clients.call(worker.address, "Status", {}, StatusResponseSchema, STATUS_DEADLINE_MS));
    } catch (err) {
      const message = (err as { details?: string }).details || (err as Error).message;
      return { ...base, epoch: map.epoch, slotCount: map.slotCount, replicas: map.replicas, underReplicated: 0, workers: [], error: `cluster status: ${message}` };
    }
    const workers: WorkerRow[] = status.workers.map((w) => ({
      id: w.id,
      address: w.address,
      coordinator: w.coordinator,
      alive: w.reachable,
      fenced: false,
      slots: w.slots,
      backups: w.backups,
      keys: w.keys,
      recordsPerSecond: w.recordsPerSecond,
      connectorSessions: w.connectorSessions,
    }));
    // Fenced workers are no longer members; they stay on the page so a failover is visible.
    for (const id of status.fenced) {
      if (!workers.some((w) => w.id === id)) workers.push({ id, address: "", coordinator: false, alive: false, fenced: true, slots: 0, backups: 0, keys: 0, recordsPerSecond: 0, connectorSessions: 0 });
    }
    return { ...base, epoch: status.epoch, slotCount: status.slotCount, replicas: status.replicas, underReplicated: status.underReplicated, workers };
  };
  return { snapshot, close: () => source.clients.close() };
}
