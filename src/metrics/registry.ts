/**
 * The Prometheus metric families of one keyway process, in a registry of its own (never
 * prom-client's global one, so an app or a test that embeds the engine twice gets two sets).
 *
 * Counters and gauges are read from the engine's existing figures when a scrape asks (prom-client's
 * `collect`), so they add nothing to the hot path; only durations are observed as they happen: a
 * stage's batch, a checkpoint, a slot move, a failover. docs/operations.md lists every family.
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { CoordinatorTimings } from "../cluster/coordinator.ts";
import type { SessionCounts } from "../protocol/server.ts";
import { keyedStageName } from "../runtime/dataflow.ts";
import type { Engine, EngineOptions } from "../runtime/engine.ts";

/** What a scrape reads. Absent providers leave their families without samples. */
export interface StatsProviders {
  engine: Engine;
  slots: () => { owned: number; backups: number };
  sessions?: () => SessionCounts | undefined;
  credits?: () => { source: number; sink: number } | undefined;
  backlog?: () => { out: number; in: number };
}

export interface Metrics {
  readonly registry: Registry;
  /** For startEngine: the observers of stage batches and checkpoints. */
  readonly engineOptions: Pick<EngineOptions, "observeStage" | "observeCheckpoint">;
  /** For a cluster worker: its engine's stage observer, and the coordinator's while it holds it. */
  readonly workerObservers: { stage: NonNullable<EngineOptions["observeStage"]>; coordinator: CoordinatorTimings };
  /** From now on, scrapes read these. */
  bind(providers: StatsProviders): void;
}

// A stage's batch takes microseconds to milliseconds; a stall (a slow partitioner, a GC) shows in the top buckets.
const STAGE_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];
// A checkpoint pauses the pipelines: tens of milliseconds for a small delta, seconds for a large base.
const CHECKPOINT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
// Moves and failovers take from a fraction of a second to minutes with millions of keys.
const MIGRATION_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

export function createMetrics(): Metrics {
  const registry = new Registry();
  let stats: StatsProviders | undefined;
  const registers = [registry];

  /** Sums per name: pipelines may share a source or a sink. */
  const byName = (rows: Array<[string, number]>): Map<string, number> => {
    const sums = new Map<string, number>();
    for (const [name, n] of rows) sums.set(name, (sums.get(name) ?? 0) + n);
    return sums;
  };

  new Counter({
    name: "keyway_source_records_total",
    help: "Records read from each source on this process.",
    labelNames: ["source"],
    registers,
    collect() {
      this.reset();
      if (stats === undefined) return;
      for (const [source, n] of byName(stats.engine.pipelineStats().map((p) => [p.source, p.recordsIn]))) this.inc({ source }, n);
    },
  });
  new Counter({
    name: "keyway_sink_records_total",
    help: "Records this process's pipelines output for each sink (written here, or sent to the worker holding the sink).",
    labelNames: ["sink"],
    registers,
    collect() {
      this.reset();
      if (stats === undefined) return;
      for (const [sink, n] of byName(stats.engine.pipelineStats().map((p) => [p.sink, p.recordsOut]))) this.inc({ sink }, n);
    },
  });
  const stageDuration = new Histogram({
    name: "keyway_stage_batch_duration_seconds",
    help: "Time one batch took in one stage of a pipeline: the head (stateless steps before the first keyBy), or a keyed stage (keyed-N).",
    labelNames: ["pipeline", "stage"],
    buckets: STAGE_BUCKETS,
    registers,
  });
  new Gauge({
    name: "keyway_state_keys",
    help: "Keys held in each keyed stage's state on this process (primaries and backup copies).",
    labelNames: ["pipeline", "stage"],
    registers,
    collect() {
      this.reset();
      if (stats === undefined) return;
      for (const flow of stats.engine.flows) flow.stores.forEach((store, i) => this.set({ pipeline: flow.pipeline.name, stage: keyedStageName(i) }, store.keyCount));
    },
  });
  new Gauge({
    name: "keyway_slots_owned",
    help: "Routing slots this process is the primary of.",
    registers,
    collect() {
      this.reset();
      if (stats !== undefined) this.set(stats.slots().owned);
    },
  });
  new Gauge({
    name: "keyway_slots_backup",
    help: "Routing slots this process holds a backup copy of.",
    registers,
    collect() {
      this.reset();
      if (stats !== undefined) this.set(stats.slots().backups);
    },
  });
  new Gauge({
    name: "keyway_source_queued_records",
    help: "Records a source has received and holds for the engine to read (connector and TCP sources).",
    labelNames: ["source"],
    registers,
    collect() {
      this.reset();
      if (stats === undefined) return;
      for (const [source, n] of stats.engine.buffers().sources) this.set({ source }, n);
    },
  });
  new Gauge({
    name: "keyway_sink_buffered_records",
    help: "Records a sink on this process has taken and not yet delivered (not written, not sent, or not acked by a sink session).",
    labelNames: ["sink"],
    registers,
    collect() {
      this.reset();
      if (stats === undefined) return;
      for (const [sink, n] of stats.engine.buffers().sinks) this.set({ sink }, n);
    },
  });
  new Gauge({
    name: "keyway_connector_credits",
    help: "Connector protocol credits outstanding: role=source, granted to source connectors and not yet spent; role=sink, granted by sink connectors and not yet used by the engine.",
    labelNames: ["role"],
    registers,
    collect() {
      this.reset();
      const credits = stats?.credits?.();
      if (credits === undefined) return;
      this.set({ role: "source" }, credits.source);
      this.set({ role: "sink" }, credits.sink);
    },
  });
  new Gauge({
    name: "keyway_connector_sessions",
    help: "Live connector sessions on this process, by role (source, sink, partitioner).",
    labelNames: ["role"],
    registers,
    collect() {
      this.reset();
      const counts = stats?.sessions?.();
      if (counts === undefined) return;
      for (const [role, n] of Object.entries(counts)) this.set({ role }, n);
    },
  });
  new Gauge({
    name: "keyway_exchange_backlog_records",
    help: "Records on the cluster exchange: direction=out, sent to other workers and not yet done there; direction=in, received and not yet finished here.",
    labelNames: ["direction"],
    registers,
    collect() {
      this.reset();
      const backlog = stats?.backlog?.();
      if (backlog === undefined) return;
      this.set({ direction: "out" }, backlog.out);
      this.set({ direction: "in" }, backlog.in);
    },
  });
  const checkpointDuration = new Histogram({
    name: "keyway_checkpoint_duration_seconds",
    help: "Time each completed checkpoint took (with --data-dir), from raising the barrier to the file being durable.",
    buckets: CHECKPOINT_BUCKETS,
    registers,
  });
  const moveDuration = new Histogram({
    name: "keyway_slot_move_duration_seconds",
    help: "Time each completed redistribution of slots took (a join or a shrink), on the worker holding the coordinator.",
    buckets: MIGRATION_BUCKETS,
    registers,
  });
  const failoverDuration = new Histogram({
    name: "keyway_failover_duration_seconds",
    help: "Time from declaring workers dead to their slots' backups leading them, on the worker holding the coordinator.",
    buckets: MIGRATION_BUCKETS,
    registers,
  });

  // One child per stage, bound when the pipelines compile: a batch's observation is one call.
  const observeStage = (pipeline: string, stage: string) => stageDuration.labels({ pipeline, stage }).observe;
  return {
    registry,
    engineOptions: { observeStage, observeCheckpoint: (seconds) => checkpointDuration.observe(seconds) },
    workerObservers: {
      stage: observeStage,
      coordinator: {
        slotsMoved: (seconds) => moveDuration.observe(seconds),
        failover: (seconds) => failoverDuration.observe(seconds),
      },
    },
    bind(providers) {
      stats = providers;
    },
  };
}
