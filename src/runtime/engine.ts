/**
 * Runs an app on one worker: opens its connectors, moves batches from each source through its
 * dataflow to its sink, and closes everything when the sources end or the engine is stopped.
 * Backpressure is the await on sink.write: a pipeline reads its next batch only once the sink has
 * taken the last one, so engine memory is one batch in flight plus each sink's bounded buffer.
 *
 * With a data dir, a checkpoint is taken between batches: pipelines pause, sinks flush, state and
 * each source's progress are captured, pipelines resume, and once the file is durable the sources
 * hear that everything up to that progress is committed. Without one, a batch is committed as
 * soon as its sink has taken its output, and state dies with the process.
 */
import { toAppSpec } from "../app/pipeline.ts";
import type { AppSpec, PipelineSpec } from "../app/spec.ts";
import type { Sink, Source } from "../connector/types.ts";
import { readCheckpoint, writeCheckpoint, type Checkpoint } from "../durability/checkpoint-file.ts";
import { ErrorCode, KeywayError } from "../errors.ts";
import { silentLogger, type Logger } from "../log/logger.ts";
import { createSlotOf, SLOT_COUNT_DEFAULT } from "../routing/hash.ts";
import { equalRanges } from "../routing/partition-map.ts";
import { appSinkNames, checkBindings } from "./bindings.ts";
import { compileDataflow, type Dataflow, type ForwardFn, type PartitionFn, type Placement } from "./dataflow.ts";
import { exportSlot, importSlot, slotOccupied, type StageStore } from "./state-store.ts";

export const CHECKPOINT_INTERVAL_MS_DEFAULT = 1000;
const FLUSH_WARNING_INTERVAL_MS = 5000;

export interface EngineOptions {
  /** Routing slots; fixed for the life of the state (a power of two). */
  slotCount?: number;
  log?: Logger;
  /** Serves keyBy(partitioner(name)) stages. */
  partition?: PartitionFn;
  /** Checkpoint state and source progress here, and restore from it at start. */
  dataDir?: string;
  checkpointIntervalMs?: number;
  /** In a cluster: the shared, swappable partition map and this worker's index (0 when absent). */
  placement?: Placement;
  /** In a cluster: pipeline i's function that runs records on the worker owning their slots. */
  forwardFor?: (pipeline: number) => ForwardFn;
  /** Sources are read only once this settles (a cluster waits for its workers to join). */
  startGate?: Promise<void>;
}

export interface EngineStats {
  recordsIn: number;
  recordsOut: number;
  keys: number;
  /** Records the sinks hold that have not yet left the engine. */
  bufferedRecords: number;
  checkpoints: number;
}

export interface Engine {
  /** Settles once every source has ended (or stop() was called) and all output is flushed; rejects on failure. */
  readonly done: Promise<void>;
  readonly finite: boolean;
  stats(): EngineStats;
  /** Every state stage's store, per pipeline, in pipeline order. */
  stores(): StageStore[];
  /** Closes the sources, flushes and closes the sinks; resolves with done. */
  stop(): Promise<void>;
  /** The compiled pipelines, in app order, so a cluster can run stages for other workers. */
  readonly flows: readonly Dataflow[];
  /**
   * Runs fn while no batch is in flight anywhere: pipelines finish the batch in hand and wait.
   * The cluster moves slots inside it.
   */
  quiesce<T>(fn: () => Promise<T>): Promise<T>;
}

export interface Connectors {
  sources: ReadonlyMap<string, Source>;
  sinks: ReadonlyMap<string, Sink>;
}

const WORKER_ID = "w0";

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

async function openAll(app: AppSpec, connectors: Connectors, restored: Checkpoint | undefined, log: Logger): Promise<void> {
  const opened: Array<Source | Sink> = [];
  try {
    for (const name of appSinkNames(app)) {
      const sink = connectors.sinks.get(name)!;
      await sink.open({ name, log: log.child({ sink: name }) });
      opened.push(sink);
    }
    for (const [i, p] of app.pipelines.entries()) {
      const source = connectors.sources.get(p.source.name)!;
      const progress = restored?.sources[i]?.progress;
      await source.open({
        name: p.source.name,
        log: log.child({ source: p.source.name }),
        ...(typeof progress === "bigint" ? { resumeFrom: progress } : {}),
        ...(progress !== undefined && typeof progress !== "bigint" ? { resumeState: progress } : {}),
      });
      opened.push(source);
    }
  } catch (err) {
    await Promise.allSettled(opened.map((c) => c.close()));
    throw err;
  }
}

function restoreState(app: AppSpec, flows: Dataflow[], checkpoint: Checkpoint, dataDir: string, slotCount: number): void {
  if (checkpoint.app !== app.name || checkpoint.slotCount !== slotCount || checkpoint.slots.length !== flows.length) {
    throw new KeywayError(
      ErrorCode.BAD_CHECKPOINT,
      `checkpoint in ${dataDir} belongs to app "${checkpoint.app}" with ${checkpoint.slotCount} slots and ${checkpoint.slots.length} pipelines, ` +
        `not app "${app.name}" with ${slotCount} slots and ${flows.length} pipelines`,
    );
  }
  flows.forEach((flow, i) => {
    for (const [slot, bytes] of checkpoint.slots[i]!) importSlot(flow.stores, slot, bytes);
  });
}

export async function startEngine(spec: AppSpec | PipelineSpec, connectors: Connectors, options: EngineOptions = {}): Promise<Engine> {
  const app = toAppSpec(spec);
  if (app === undefined) throw new KeywayError(ErrorCode.BAD_APP, "startEngine needs a pipeline or an app");
  checkBindings(app, connectors.sources.keys(), connectors.sinks.keys());
  const log = options.log ?? silentLogger();
  const slotCount = options.slotCount ?? SLOT_COUNT_DEFAULT;
  const slotOf = await createSlotOf(slotCount);
  // Alone, this worker owns every slot; records still go through the map as they do in a cluster.
  const placement = options.placement ?? { map: equalRanges(slotCount, [WORKER_ID], 1), self: 0 };
  const flows = app.pipelines.map((p, i) => compileDataflow(p, { slotOf, placement, partition: options.partition, forward: options.forwardFor?.(i) }));
  const stats = { recordsIn: 0, recordsOut: 0, checkpoints: 0 };
  const sources = app.pipelines.map((p) => connectors.sources.get(p.source.name)!);
  const sinks = appSinkNames(app).map((name) => connectors.sinks.get(name)!);
  const { dataDir } = options;

  const restored = dataDir === undefined ? undefined : await readCheckpoint(dataDir);
  if (restored !== undefined) {
    restoreState(app, flows, restored, dataDir!, slotCount);
    log.info({ dataDir, keys: flows.flatMap((f) => f.stores).reduce((n, s) => n + s.keyCount, 0) }, "restored checkpoint");
  }
  // Each pipeline's source progress after its last processed batch: what a checkpoint records.
  const progress: unknown[] = app.pipelines.map((_, i) => restored?.sources[i]?.progress);

  await openAll(app, connectors, restored, log);

  // Checkpoint barrier: pipelines finish the batch in hand and wait while a checkpoint captures state.
  let barrier: Deferred | undefined;
  let busy = 0;
  let idle: Deferred | undefined;

  const pump = async (index: number, flow: Dataflow, source: Source, sink: Sink): Promise<void> => {
    const withIds = sink.wantsRecordIds === true;
    await options.startGate;
    for (;;) {
      const batch = await source.read();
      if (batch === null) return;
      while (barrier !== undefined) await barrier.promise;
      busy++;
      try {
        stats.recordsIn += batch.values.length;
        const out = await flow.process(batch, withIds);
        if (out.values.length > 0) {
          stats.recordsOut += out.values.length;
          await sink.write(out.values, out.ids);
        }
        progress[index] = source.checkpoint?.() ?? batch.position;
        if (dataDir === undefined) source.commit?.(progress[index]);
      } finally {
        busy--;
        if (busy === 0) idle?.resolve();
      }
    }
  };

  // One quiescent section at a time: a checkpoint and a slot move never overlap.
  let quiescing: Promise<unknown> = Promise.resolve();
  const quiesce = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = async (): Promise<T> => {
      barrier = deferred();
      try {
        while (busy > 0) {
          idle = deferred();
          await idle.promise;
        }
        return await fn();
      } finally {
        const released = barrier;
        barrier = undefined;
        released.resolve();
      }
    };
    const result = quiescing.then(run, run);
    quiescing = result.catch(() => undefined);
    return result;
  };

  const checkpoint = async (): Promise<void> => {
    const snapshot = await quiesce(async (): Promise<Checkpoint> => {
      // Outputs of every batch the checkpoint covers must have left the engine before it counts.
      await Promise.all(sinks.map((s) => s.flush()));
      return {
        app: app.name,
        slotCount,
        sources: progress.map((p) => (p === undefined ? undefined : { progress: p })),
        slots: flows.map((flow) => occupiedSlots(flow.stores).map((slot) => [slot, exportSlot(flow.stores, slot)] as [number, Uint8Array])),
        createdAtMs: Date.now(),
      };
    });
    await writeCheckpoint(dataDir!, snapshot);
    stats.checkpoints++;
    snapshot.sources.forEach((s, i) => {
      if (s !== undefined) sources[i]!.commit?.(s.progress);
    });
  };

  let stopping = false;
  let checkpointTimer: NodeJS.Timeout | undefined;
  let checkpointing: Promise<void> = Promise.resolve();
  let checkpointFailure: unknown;
  const scheduleCheckpoint = (): void => {
    if (dataDir === undefined || stopping) return;
    checkpointTimer = setTimeout(() => {
      checkpointing = checkpoint().then(scheduleCheckpoint, (err) => {
        checkpointFailure = err;
        void closeSources();
      });
    }, options.checkpointIntervalMs ?? CHECKPOINT_INTERVAL_MS_DEFAULT);
  };

  // A sink whose peer is gone (a connector sink with no session) can hold the end of a run: say so.
  const flushLoudly = async (): Promise<void> => {
    const names = appSinkNames(app);
    const timer = setInterval(() => {
      sinks.forEach((s, i) => {
        if (s.bufferedRecords() > 0) log.warn({ sink: names[i], bufferedRecords: s.bufferedRecords() }, "waiting for the sink to take its last records before exiting (a second signal exits without them)");
      });
    }, FLUSH_WARNING_INTERVAL_MS);
    try {
      await Promise.all(sinks.map((s) => s.flush()));
    } finally {
      clearInterval(timer);
    }
  };

  const closeSources = () => Promise.allSettled(sources.map((s) => s.close()));
  const run = async (): Promise<void> => {
    try {
      scheduleCheckpoint();
      await Promise.all(flows.map((flow, i) => pump(i, flow, sources[i]!, connectors.sinks.get(flow.pipeline.sink.name)!)));
      stopping = true;
      clearTimeout(checkpointTimer);
      await checkpointing;
      if (checkpointFailure !== undefined) throw checkpointFailure;
      await flushLoudly();
      // A last checkpoint, so a restart after a clean stop resumes exactly where this run ended.
      if (dataDir !== undefined) await checkpoint();
    } catch (err) {
      stopping = true;
      clearTimeout(checkpointTimer);
      await closeSources();
      throw err;
    } finally {
      await Promise.allSettled(sinks.map((s) => s.close()));
    }
  };
  const done = run();
  // done is awaited by the caller; this keeps an early failure from being reported as unhandled first.
  done.catch(() => undefined);

  const stores = () => flows.flatMap((f) => f.stores);
  return {
    done,
    finite: sources.every((s) => s.finite),
    stats: () => ({
      ...stats,
      keys: stores().reduce((n, s) => n + s.keyCount, 0),
      bufferedRecords: sinks.reduce((n, s) => n + s.bufferedRecords(), 0),
    }),
    stores,
    flows,
    quiesce,
    async stop() {
      await closeSources();
      return done;
    },
  };
}

function occupiedSlots(stores: readonly StageStore[]): number[] {
  const slots: number[] = [];
  const slotCount = stores[0]?.slotCount ?? 0;
  for (let slot = 0; slot < slotCount; slot++) {
    if (stores.some((s) => slotOccupied(s, slot))) slots.push(slot);
  }
  return slots;
}
