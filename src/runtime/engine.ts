/**
 * Runs an app on one worker: opens its connectors, moves batches from each source through its
 * dataflow to its sink, and closes everything when the sources end or the engine is stopped.
 * Backpressure is the await on sink.write: a pipeline reads its next batch only once the sink has
 * taken the last one, so engine memory is one batch in flight plus each sink's bounded buffer.
 */
import { toAppSpec } from "../app/pipeline.ts";
import type { AppSpec, PipelineSpec } from "../app/spec.ts";
import type { Sink, Source } from "../connector/types.ts";
import { ErrorCode, KeywayError } from "../errors.ts";
import { silentLogger, type Logger } from "../log/logger.ts";
import { createSlotOf, SLOT_COUNT_DEFAULT } from "../routing/hash.ts";
import { equalRanges } from "../routing/partition-map.ts";
import { appSinkNames, checkBindings } from "./bindings.ts";
import { compileDataflow, type Dataflow } from "./dataflow.ts";
import type { StageStore } from "./state-store.ts";

export interface EngineOptions {
  /** Routing slots; fixed for the life of the state (a power of two). */
  slotCount?: number;
  log?: Logger;
}

export interface EngineStats {
  recordsIn: number;
  recordsOut: number;
  keys: number;
  /** Records the sinks hold that have not yet left the engine. */
  bufferedRecords: number;
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
}

export interface Connectors {
  sources: ReadonlyMap<string, Source>;
  sinks: ReadonlyMap<string, Sink>;
}

const WORKER_ID = "w0";

async function openAll(app: AppSpec, connectors: Connectors, log: Logger): Promise<void> {
  const opened: Array<Source | Sink> = [];
  try {
    for (const name of appSinkNames(app)) {
      const sink = connectors.sinks.get(name)!;
      await sink.open({ name, log: log.child({ sink: name }) });
      opened.push(sink);
    }
    for (const p of app.pipelines) {
      const source = connectors.sources.get(p.source.name)!;
      await source.open({ name: p.source.name, log: log.child({ source: p.source.name }) });
      opened.push(source);
    }
  } catch (err) {
    await Promise.allSettled(opened.map((c) => c.close()));
    throw err;
  }
}

export async function startEngine(spec: AppSpec | PipelineSpec, connectors: Connectors, options: EngineOptions = {}): Promise<Engine> {
  const app = toAppSpec(spec);
  if (app === undefined) throw new KeywayError(ErrorCode.BAD_APP, "startEngine needs a pipeline or an app");
  checkBindings(app, connectors.sources.keys(), connectors.sinks.keys());
  const log = options.log ?? silentLogger();
  const slotCount = options.slotCount ?? SLOT_COUNT_DEFAULT;
  const slotOf = await createSlotOf(slotCount);
  // One worker owns every slot for now; records still go through the map as they will in a cluster.
  const map = equalRanges(slotCount, [WORKER_ID], 1);
  const flows = app.pipelines.map((p) => compileDataflow(p, { slotOf, map, self: 0 }));
  const stats = { recordsIn: 0, recordsOut: 0 };
  const sources = app.pipelines.map((p) => connectors.sources.get(p.source.name)!);
  const sinks = appSinkNames(app).map((name) => connectors.sinks.get(name)!);

  await openAll(app, connectors, log);

  const pump = async (flow: Dataflow, source: Source, sink: Sink): Promise<void> => {
    for (;;) {
      const batch = await source.read();
      if (batch === null) return;
      stats.recordsIn += batch.values.length;
      const out = flow.process(batch.values);
      if (out.length > 0) {
        stats.recordsOut += out.length;
        await sink.write(out);
      }
      // Without a data dir, committed means processed.
      source.commit?.(batch.position);
    }
  };

  const closeSources = () => Promise.allSettled(sources.map((s) => s.close()));
  const run = async (): Promise<void> => {
    try {
      await Promise.all(flows.map((flow, i) => pump(flow, sources[i]!, connectors.sinks.get(flow.pipeline.sink.name)!)));
      await Promise.all(sinks.map((s) => s.flush()));
    } catch (err) {
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
    async stop() {
      await closeSources();
      return done;
    },
  };
}
