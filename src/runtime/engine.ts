/**
 * Runs an app on one worker, alone or as one peer of a cluster: opens the connectors placed on
 * it, moves batches from each source through its dataflow, runs records other workers route to
 * it, and closes everything when the sources end or the engine is stopped. A source's loop never
 * waits for a batch's records sent to other workers: it waits for room (the local sink's write,
 * the exchange's window) and for at most MAX_INFLIGHT_BATCHES unfinished batches, and a batch's
 * position is committed once every record of it, and every earlier batch, is done everywhere.
 * Alone, every slot is local and a batch is done when its sink has taken its output.
 *
 * With replicated state, what a keyed stage applies here goes to its slots' backups, and the
 * output it produced leaves (for its sink) only once every backup has acked, in the order it was
 * applied: an output that left is never lost with its worker, and a replay cannot change it.
 *
 * With a data dir, a checkpoint is taken between batches: pipelines pause, sinks flush, the slots
 * changed since the last checkpoint and each source's progress are captured, pipelines resume, and
 * once that delta (src/durability/checkpoint-chain.ts) is durable the sources hear that everything
 * up to that progress is committed. Without one, a batch is committed as
 * soon as its sink has taken its output, and state dies with the process.
 */
import { toAppSpec } from "../app/pipeline.ts";
import type { AppSpec, PipelineSpec } from "../app/spec.ts";
import type { Sink, SinkOutput, Source } from "../connector/types.ts";
import { openCheckpointChain, type Checkpoint, type CheckpointChain, type RestoredCheckpoint } from "../durability/checkpoint-chain.ts";
import { ErrorCode, KeywayError } from "../errors.ts";
import { silentLogger, type Logger } from "../log/logger.ts";
import { checkSlotCount, createKeyHash, SLOT_COUNT_DEFAULT } from "../routing/hash.ts";
import { equalRanges } from "../routing/partition-map.ts";
import { appSinkNames, checkBindings } from "./bindings.ts";
import { createCommitTracker } from "./commit-tracker.ts";
import { compileDataflow, defaultEncode, type Dataflow, type FailedRecord, type KeyedBatch, type PartitionFn, type Placement, type Replica, type StageRun } from "./dataflow.ts";
import { captureSlots, clearDirty, importSlot, type StageStore } from "./state-store.ts";
import { deferred, type Deferred } from "../util/deferred.ts";
import { events } from "../observe/events.ts";
import { Signal } from "../util/signal.ts";
import { watchedWait, type WaitWatch } from "../util/watched-wait.ts";

export const CHECKPOINT_INTERVAL_MS_DEFAULT = 1000;
/** With a data dir: a pipeline's output since the last checkpoint at which its source waits (what a crash would send its sink again). */
export const MAX_UNCOMMITTED_RECORDS_DEFAULT = 50_000;
/** A checkpoint not done in this long is given up (and tried again at the next interval). */
export const CHECKPOINT_TIMEOUT_MS_DEFAULT = 60_000;
/** A wait logs what holds it up once past this, and again as often. */
const WAIT_WARNING_MS = 5000;
/** Unfinished batches a source may have before its loop waits: bounds what a batch's fan-out holds. */
export const MAX_INFLIGHT_BATCHES = 64;

/** How records and output leave this worker for its peers (absent alone: every slot is local). */
/** Output a promoted backup sends again for a primary that died: that primary, and the slots whose output of the run it is. */
export interface OutputOrigin {
  worker: string;
  slots: number[];
}

export interface PeerLinks {
  /** Records for pipeline p's stage s to the worker at index `owner` of the map; settles when done there. */
  send(owner: number, pipeline: number, stage: number, batch: KeyedBatch, hops: number): Promise<void>;
  /**
   * A pipeline's sink output, to the worker whose sink takes it; settles when that sink has it.
   * `outputSeq` numbers a replicated run's output (the sink's worker records how far each
   * worker's output reached, so a promoted backup resends only what did not).
   */
  /**
   * `resent`: output sent again after the sinks' worker died (it goes ahead of records).
   * `origin`: a dead primary whose run `outputSeq` this output is, sent again by a promoted backup.
   */
  sendOutput(pipeline: number, output: SinkOutput, outputSeq?: number, resent?: boolean, origin?: OutputOrigin): Promise<void>;
  /** Resolves once the links have room for more (the sources' backpressure). */
  ready(): Promise<void>;
  /** Records applied here as their slots' primary by run `outputSeq` of the pipeline, to the backup at index `target` of the map. */
  replicate?(target: number, pipeline: number, stage: number, batch: KeyedBatch, outputSeq: number): Replica;
}

export interface EngineOptions {
  /** Routing slots; fixed for the life of the state (a power of two). */
  slotCount?: number;
  log?: Logger;
  /** Serves keyBy(partitioner(name)) stages. */
  partition?: PartitionFn;
  /** Checkpoint state and source progress here, and restore from it at start. */
  dataDir?: string;
  checkpointIntervalMs?: number;
  /** A checkpoint still waiting after this long (for batches in hand, for sinks' acks) is given up. */
  checkpointTimeoutMs?: number;
  /** With a data dir: a pipeline's source waits while its output since the last checkpoint reaches this (a checkpoint is taken at once). */
  maxUncommittedRecords?: number;
  /** In a cluster: the shared, swappable partition map and this worker's index. */
  placement?: Placement;
  /** In a cluster: the exchange to the other workers. */
  peers?: PeerLinks;
  /** In a cluster: whether a sink on another worker needs record ids (it dedups by them). */
  remoteSinkWantsIds?: (sink: string) => boolean;
  /** Records a function of the app throws on go here, as JSON lines, and the run goes on (else it stops). */
  deadLetter?: Sink;
  /** Replicated state: records carry marks, slots drop replays, output waits for the backups. */
  replicated?: boolean;
  /** In a cluster whose sinks move (etcd): whether the sinks are on this worker now. */
  sinkHere?: () => boolean;
  /** Output counts as written once its sink's destination acked it, not once the sink took it: the sinks' worker may die. */
  outputAcked?: boolean;
  /** Sources are read only once this settles (a cluster waits for its workers to join). */
  startGate?: Promise<void>;
  /**
   * In a cluster: sinks stay open, and records from other workers keep running, until this
   * settles (the whole cluster's sources are done), not only this worker's.
   */
  holdOpen?: Promise<void>;
  /** Times each stage of each pipeline per batch (metrics): called once per stage when the pipelines compile. */
  observeStage?: (pipeline: string, stage: string) => (seconds: number) => void;
  /** With a data dir: how long each completed checkpoint took, barrier to durable file (metrics). */
  observeCheckpoint?: (seconds: number) => void;
}

export interface EngineStats {
  recordsIn: number;
  recordsOut: number;
  keys: number;
  /** Records the sinks hold that have not yet left the engine. */
  bufferedRecords: number;
  checkpoints: number;
  /** Checkpoints given up at --checkpoint-timeout-ms. */
  checkpointsAbandoned: number;
  /** Records that reached this worker for a slot it does not own, forwarded to the owner. */
  recordsForwarded: number;
  /** With --data-dir: each pipeline's outputs since the last checkpoint (its commit lag). */
  uncommittedOut?: number[];
}

/** One pipeline's records on this worker: read from its source here, and output for its sink by the runs here. */
export interface PipelineStats {
  pipeline: string;
  source: string;
  sink: string;
  recordsIn: number;
  recordsOut: number;
}

/** Records held inside the engine, by app name: sources' queues not read yet, sinks' not yet left. */
export interface EngineBuffers {
  sources: Map<string, number>;
  sinks: Map<string, number>;
}

/** A batch another worker sent here: records for a stage, or output for a sink. */
export interface InboundBatch {
  pipeline: number;
  stage: number;
  toSink: boolean;
  hops: number;
  records?: KeyedBatch;
  output?: SinkOutput;
}

export interface Engine {
  /** Settles once every source has ended (or stop() was called) and all output is flushed; rejects on failure. */
  readonly done: Promise<void>;
  /** Settles once this worker's sources (those added so far too) have ended and every batch they read is done. */
  sourcesDone(): Promise<void>;
  /**
   * Closes this worker's sources; resolves once every batch they read is done, with each
   * source's last committed progress and whether it had ended by itself (a file read to its end).
   */
  closeSources(): Promise<SourceStanding[]>;
  readonly finite: boolean;
  stats(): EngineStats;
  pipelineStats(): PipelineStats[];
  buffers(): EngineBuffers;
  /** Every state stage's store, per pipeline, in pipeline order. */
  stores(): StageStore[];
  /** Closes the sources, flushes and closes the sinks; resolves with done. */
  stop(): Promise<void>;
  /** The compiled pipelines, in app order. */
  readonly flows: readonly Dataflow[];
  /** Runs a batch another worker sent: `applied` once its local part ran, `done` once finished. */
  receive(batch: InboundBatch): { applied: Promise<void>; done: Promise<void> };
  /** Sends records held for frozen slots on by the current map, in the order they were held. */
  thaw(): void;
  /** Starts reading another source for pipeline `pipeline` (a bundled source moved here); `label` names it in marks. */
  addSource(pipeline: number, source: Source, resumeFrom: bigint | undefined, label: string): Promise<void>;
  /** Routes records again under the current map (their owner died before finishing them). */
  reroute(pipeline: number, stage: number, batch: KeyedBatch, hops: number): Promise<void>;
  /** Hands output to its pipeline's sink, here or on a peer (a promoted backup resending its outbox: the dead primary's run). */
  deliverOutput(pipeline: number, output: SinkOutput, resent?: boolean, origin?: OutputOrigin & { outputSeq: number }): Promise<void>;
  /**
   * Holds this worker's new output (not output sent again) until `until` settles, then sends it in
   * order: the sinks moved, and what this worker sends them again must reach them first.
   */
  holdOutput(until: Promise<void>): void;
  /** Resolves once every output produced so far has left or failed. */
  outputsSettled(): Promise<void>;
  /** Resolves once the output of every run applied so far has left in its turn (to its sink, here or on a peer). */
  outputsReleased(): Promise<void>;
  /** Sources being read on this worker, by app source name. */
  sourceNames(): string[];
}

/** Where a source stood when it was closed. */
export interface SourceStanding {
  pipeline: number;
  source: Source;
  /** Its last committed progress (a batch position, or what progressAt() returned); undefined before any. */
  progress: unknown;
  ended: boolean;
  /** The source's upstream name in marks, for batches that carry none. */
  label: string;
}

export interface Connectors {
  /** App source name -> its source on this worker; a name absent here is read on other workers. */
  sources: ReadonlyMap<string, Source>;
  /** App sink name -> its sink on this worker; output for a sink absent here goes to a peer. */
  sinks: ReadonlyMap<string, Sink>;
}

const WORKER_ID = "w0";

async function openAll(app: AppSpec, connectors: Connectors, restored: RestoredCheckpoint | undefined, checkpointed: boolean, log: Logger): Promise<void> {
  const opened: Array<Source | Sink> = [];
  try {
    for (const name of appSinkNames(app)) {
      const sink = connectors.sinks.get(name);
      if (sink === undefined) continue;
      await sink.open({ name, log: log.child({ sink: name }) });
      opened.push(sink);
    }
    for (const [i, p] of app.pipelines.entries()) {
      const source = connectors.sources.get(p.source.name);
      if (source === undefined) continue;
      const progress = restored?.sources[i]?.progress;
      await source.open({
        name: p.source.name,
        log: log.child({ source: p.source.name }),
        ...(typeof progress === "bigint" ? { resumeFrom: progress } : {}),
        ...(progress !== undefined && typeof progress !== "bigint" ? { resumeState: progress } : {}),
        checkpointed,
        wantsMeta: p.source.records === true,
      });
      opened.push(source);
    }
  } catch (err) {
    await Promise.allSettled(opened.map((c) => c.close()));
    throw err;
  }
}

async function restoreState(app: AppSpec, flows: Dataflow[], chain: CheckpointChain, dataDir: string, slotCount: number): Promise<void> {
  const checkpoint = chain.restored!;
  if (checkpoint.app !== app.name || checkpoint.slotCount !== slotCount || checkpoint.pipelines !== flows.length) {
    throw new KeywayError(
      ErrorCode.BAD_CHECKPOINT,
      `checkpoint in ${dataDir} belongs to app "${checkpoint.app}" with ${checkpoint.slotCount} slots and ${checkpoint.pipelines} pipelines, ` +
        `not app "${app.name}" with ${slotCount} slots and ${flows.length} pipelines`,
    );
  }
  await chain.load((pipeline, slot, state) => importSlot(flows[pipeline]!.stores, slot, state));
  // The stores now hold exactly what the checkpoint does: the next one writes only what changes.
  for (const flow of flows) clearDirty(flow.stores);
}

export async function startEngine(spec: AppSpec | PipelineSpec, connectors: Connectors, options: EngineOptions = {}): Promise<Engine> {
  const app = toAppSpec(spec);
  if (app === undefined) throw new KeywayError(ErrorCode.BAD_APP, "startEngine needs a pipeline or an app");
  const clustered = options.peers !== undefined;
  if (!clustered) checkBindings(app, connectors.sources.keys(), connectors.sinks.keys());
  const log = options.log ?? silentLogger();
  const slotCount = options.slotCount ?? SLOT_COUNT_DEFAULT;
  checkSlotCount(slotCount);
  const hashOf = await createKeyHash();
  // Alone, this worker owns every slot; records still go through the map as they do in a cluster.
  const placement = options.placement ?? { map: equalRanges(slotCount, [WORKER_ID], 1), self: 0 };
  const peers = options.peers;
  const held: Array<{ pipeline: number; stage: number; batch: KeyedBatch; resolve: () => void; reject: (err: unknown) => void }> = [];
  const replicate = peers?.replicate;
  // Per pipeline: the next run's output sequence (from 1), and how far outputs have been released.
  const nextOutputSeq = app.pipelines.map(() => 1);
  const flows = app.pipelines.map((p, i) =>
    compileDataflow(p, {
      hashOf,
      placement,
      partition: options.partition,
      marking: options.replicated === true,
      ...(options.deadLetter === undefined ? {} : { deadLetter: (failed: FailedRecord) => writeSink(options.deadLetter!, { values: [deadLetterLine(failed)] }) }),
      outputSeq: () => nextOutputSeq[i]!++,
      ...(options.observeStage === undefined ? {} : { observeStage: (stage: string) => options.observeStage!(p.name, stage) }),
      out:
        peers === undefined
          ? undefined
          : {
              send: (owner, stage, batch, hops) => peers.send(owner, i, stage, batch, hops),
              hold: (stage, batch) => new Promise<void>((resolve, reject) => held.push({ pipeline: i, stage, batch, resolve, reject })),
              ...(replicate === undefined ? {} : { replicate: (target: number, stage: number, batch: KeyedBatch, seq: number) => replicate(target, i, stage, batch, seq) }),
            },
    }),
  );
  const stats = { recordsIn: 0, recordsOut: 0, checkpoints: 0, checkpointsAbandoned: 0, recordsForwarded: 0 };
  const sinkNames = appSinkNames(app);
  // By name: a cluster worker holds only some sinks, and the dead-letter sink has no app name.
  const namedSinks: Array<[string, Sink]> = [
    ...sinkNames.flatMap((name): Array<[string, Sink]> => {
      const sink = connectors.sinks.get(name);
      return sink === undefined ? [] : [[name, sink]];
    }),
    ...(options.deadLetter === undefined ? [] : [["dead-letter", options.deadLetter] as [string, Sink]]),
  ];
  const sinks = namedSinks.map(([, sink]) => sink);
  // Per pipeline: its sink when the sink lives here (else output goes to a peer), and whether it wants ids.
  const localSinks = app.pipelines.map((p) => connectors.sinks.get(p.sink.name));
  const { sinkHere } = options;
  const localSink = (pipeline: number): Sink | undefined => (sinkHere === undefined || sinkHere() ? localSinks[pipeline] : undefined);
  const wantsIds = app.pipelines.map((p, i) => localSinks[i]?.wantsRecordIds ?? options.remoteSinkWantsIds?.(p.sink.name) === true);
  const { dataDir } = options;
  if (dataDir !== undefined && clustered) throw new KeywayError(ErrorCode.USAGE, "--data-dir cannot be combined with a cluster");

  const chain = dataDir === undefined ? undefined : await openCheckpointChain(dataDir, { log });
  const restored = chain?.restored;
  if (restored !== undefined) {
    await restoreState(app, flows, chain!, dataDir!, slotCount);
    const keys = flows.flatMap((f) => f.stores).reduce((n, s) => n + s.keyCount, 0);
    log.info({ dataDir, keys, checkpoint: restored.seq, files: restored.files, ...(restored.legacy ? { format: 1 } : {}) }, "restored checkpoint");
  }
  // Each pipeline's source progress after its last finished batch: what a checkpoint records.
  const progress: unknown[] = app.pipelines.map((_, i) => restored?.sources[i]?.progress);
  // Per pipeline, output records written since the last completed checkpoint: a crash sends them to
  // the sink again, so a source is read only while they stay under the bound (a sink's id window
  // covers it), and asked for no more records than fit, at the outputs per record seen so far.
  const uncommittedOut: number[] = app.pipelines.map(() => 0);
  const flowed = app.pipelines.map(() => ({ in: 0, out: 0 }));
  // Per pipeline, output of every run here (inbound records' too): flowed counts only what its source's batches output.
  const outputs: number[] = app.pipelines.map(() => 0);
  const maxUncommitted = options.maxUncommittedRecords ?? MAX_UNCOMMITTED_RECORDS_DEFAULT;
  const checkpointDone = new Signal();
  const roomFor = async (pipeline: number): Promise<number | undefined> => {
    if (dataDir === undefined) return undefined;
    while (uncommittedOut[pipeline]! >= maxUncommitted && failure === undefined) {
      checkpointSoon();
      await Promise.race([checkpointDone.wait(), failedPromise]);
    }
    const { in: read, out } = flowed[pipeline]!;
    const perRecord = read === 0 ? 1 : Math.max(out / read, 1 / maxUncommitted);
    return Math.max(1, Math.floor((maxUncommitted - uncommittedOut[pipeline]!) / perRecord));
  };
  const sources: SourceStanding[] = [];
  for (const [i, p] of app.pipelines.entries()) {
    const source = connectors.sources.get(p.source.name);
    if (source !== undefined) sources.push({ pipeline: i, source, progress: undefined, ended: false, label: p.source.name });
  }

  await openAll(app, connectors, restored, dataDir !== undefined, log);
  await options.deadLetter?.open({ name: "dead-letter", log: log.child({ sink: "dead-letter" }) });

  // Writes to one sink are serialised: local pipelines and other workers' output share it.
  const sinkChains = new Map<Sink, Promise<void>>();
  const writeSink = (sink: Sink, { values, ids, meta }: SinkOutput): Promise<void> => {
    const previous = sinkChains.get(sink) ?? Promise.resolve();
    const next = previous.then(() => sink.write(values, ids, meta));
    sinkChains.set(sink, next.catch(() => undefined));
    return options.outputAcked === true && sink.delivered !== undefined ? next.then(() => sink.delivered!()) : next;
  };

  const sendOutput = (pipeline: number, output: SinkOutput, outputSeq?: number, resent?: boolean, origin?: OutputOrigin): Promise<void> => {
    const sink = localSink(pipeline);
    return sink !== undefined ? writeSink(sink, output) : peers!.sendOutput(pipeline, output, outputSeq, resent, origin);
  };
  // While output is held: the sends waiting, in order, and how many holds are on.
  const heldOutputs: Array<() => void> = [];
  let holds = 0;
  const sendNewOutput = (pipeline: number, output: SinkOutput, outputSeq?: number): Promise<void> => {
    if (holds === 0) return sendOutput(pipeline, output, outputSeq);
    return new Promise((resolve, reject) => heldOutputs.push(() => sendOutput(pipeline, output, outputSeq).then(resolve, reject)));
  };

  // Replicated, every run's output leaves in the order the run applied its records (its output
  // sequence), each once its backups have acked: an output of a slot without backups must not
  // overtake an earlier one of the same key still waiting.
  const released = app.pipelines.map(() => 0);
  const turns = app.pipelines.map(() => new Map<number, () => void>());
  const turnOf = (pipeline: number, seq: number): Promise<void> =>
    seq === released[pipeline]! + 1 ? Promise.resolve() : new Promise((resolve) => turns[pipeline]!.set(seq, resolve));
  const releaseWaiters: Array<{ through: number[]; resolve: () => void }> = [];
  const releasedThrough = (through: readonly number[]) => through.every((seq, p) => released[p]! >= seq);
  const passTurn = (pipeline: number, seq: number): void => {
    released[pipeline] = seq;
    for (let i = releaseWaiters.length - 1; i >= 0; i--) if (releasedThrough(releaseWaiters[i]!.through)) releaseWaiters.splice(i, 1)[0]!.resolve();
    const next = turns[pipeline]!.get(seq + 1);
    if (next === undefined) return;
    turns[pipeline]!.delete(seq + 1);
    next();
  };
  const unsettled = new Set<Promise<void>>();
  const deliverReplicated = (pipeline: number, run: StageRun): Promise<void> => {
    const { replicas, outputSeq } = run;
    const acked: Promise<unknown> = replicas.length === 0 ? Promise.resolve() : replicas.length === 1 ? replicas[0]!.acked : Promise.all(replicas.map((r) => r.acked));
    let written: Promise<unknown> = acked;
    if (outputSeq > 0) {
      stats.recordsOut += run.values.length;
      outputs[pipeline]! += run.values.length;
      const turn = turnOf(pipeline, outputSeq)
        .then(() => acked)
        .then(() => {
          const write = run.values.length === 0 ? Promise.resolve() : sendNewOutput(pipeline, run, outputSeq);
          passTurn(pipeline, outputSeq);
          return { write };
        });
      written = turn.then(({ write }) => write);
    } else if (run.values.length > 0) {
      // Output of stateless steps alone: no state, no order to keep with a keyed run.
      stats.recordsOut += run.values.length;
      outputs[pipeline]! += run.values.length;
      written = sendNewOutput(pipeline, run);
    }
    const left = written.then(() => {
      for (const r of replicas) r.delivered();
    });
    const done = run.pending.length === 0 ? left : Promise.all([left, ...run.pending]).then(() => undefined);
    unsettled.add(done);
    const forget = () => unsettled.delete(done);
    done.then(forget, forget);
    return done;
  };

  /** Hands a run's output to its sink, here or on a peer. `written` is what a source loop waits for. */
  const deliver = (pipeline: number, run: StageRun): { written: Promise<void>; done: Promise<void> } => {
    stats.recordsForwarded += run.forwarded;
    // Replicated, the loop waits on its unfinished batches only: waiting for each ack would serialise it.
    if (options.replicated === true) return { written: Promise.resolve(), done: deliverReplicated(pipeline, run) };
    let written: Promise<void> = Promise.resolve();
    const pending = run.pending;
    if (run.values.length > 0) {
      stats.recordsOut += run.values.length;
      outputs[pipeline]! += run.values.length;
      const sink = localSink(pipeline);
      if (sink !== undefined) written = writeSink(sink, run);
      else pending.push(peers!.sendOutput(pipeline, run));
    }
    // Alone, a batch is done when its sink has it: no promise more than that per batch.
    const done = pending.length === 0 ? written : Promise.all([written, ...pending]).then(() => undefined);
    return { written, done };
  };

  // Checkpoint barrier: pipelines finish the batches in hand and wait while a checkpoint captures state.
  let barrier: Deferred<void> | undefined;
  let busy = 0;
  let idle: Deferred<void> | undefined;
  let failure: unknown;
  let failed: (err: unknown) => void = () => undefined;
  const failedPromise = new Promise<never>((_, reject) => (failed = reject));
  failedPromise.catch(() => undefined);
  const fail = (err: unknown): void => {
    if (failure !== undefined) return;
    failure = err;
    failed(err);
    void closeSources();
  };
  const settle = (): void => {
    busy--;
    if (busy === 0) idle?.resolve();
  };

  let closing = false;
  const pump = async (standing: SourceStanding): Promise<void> => {
    const { pipeline, source } = standing;
    const flow = flows[pipeline]!;
    const tracker = createCommitTracker((upTo) => {
      progress[pipeline] = upTo;
      standing.progress = upTo;
      if (dataDir === undefined) source.commit?.(upTo);
    }, fail);
    await options.startGate;
    for (;;) {
      if (peers !== undefined) await peers.ready();
      await tracker.room(MAX_INFLIGHT_BATCHES);
      const batch = await source.read(await roomFor(pipeline));
      if (batch === null) break;
      while (barrier !== undefined) await barrier.promise;
      busy++;
      let done: Promise<void>;
      try {
        stats.recordsIn += batch.values.length;
        const run = await flow.process(batch, wantsIds[pipeline]!, standing.label);
        uncommittedOut[pipeline]! += run.values.length;
        flowed[pipeline]!.in += batch.values.length;
        flowed[pipeline]!.out += run.values.length;
        const delivery = deliver(pipeline, run);
        done = delivery.done;
        tracker.add(done, batch.position);
        await delivery.written;
      } catch (err) {
        settle();
        throw err;
      }
      done.then(settle, settle);
    }
    if (!closing) standing.ended = true;
    await tracker.drained();
  };

  // One quiescent section at a time: checkpoints never overlap. A section that passes its watch's
  // deadline is given up: the pipelines go on, and `fn` is told (`abandoned`) before it captures anything.
  let quiescing: Promise<unknown> = Promise.resolve();
  const quiesce = <T>(fn: (abandoned: () => boolean) => Promise<T>, watch: WaitWatch): Promise<T> => {
    const run = async (): Promise<T> => {
      barrier = deferred<void>();
      let gaveUp = false;
      const section = (async () => {
        while (busy > 0) {
          idle = deferred<void>();
          await idle.promise;
        }
        return fn(() => gaveUp);
      })();
      try {
        return await watchedWait(section, watch);
      } catch (err) {
        gaveUp = true;
        section.catch(() => undefined);
        throw err;
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

  const checkpointTimeoutMs = options.checkpointTimeoutMs ?? CHECKPOINT_TIMEOUT_MS_DEFAULT;
  const checkpointWatch: WaitWatch = {
    what: "checkpoint",
    log,
    warnAfterMs: Math.min(WAIT_WARNING_MS, checkpointTimeoutMs / 2),
    describe: () => ({ batchesInHand: busy, sinks: waitingSinks() }),
    deadlineMs: checkpointTimeoutMs,
    timeout: (ms) => new KeywayError(ErrorCode.TIMED_OUT, `a checkpoint waited ${ms} ms for ${busy} batches in hand and sinks ${JSON.stringify(waitingSinks())}`),
  };
  const checkpoint = async (): Promise<void> => {
    const startedAt = performance.now();
    let covered: number[] = [];
    const snapshot = await quiesce(async (abandoned): Promise<Checkpoint> => {
      // Outputs of every batch the checkpoint covers must have left the engine before it counts.
      if (!abandoned()) await Promise.all(sinks.map((s) => s.flush()));
      // Given up meanwhile: capturing would clear the changed-slot marks of a checkpoint never written.
      if (abandoned()) throw new KeywayError(ErrorCode.TIMED_OUT, "checkpoint given up");
      // A source's progress is taken only now, as of its last finished batch; what it has
      // forgotten since (retired streams) is left out.
      for (const entry of sources) {
        const p = progressOf(entry.source, progress[entry.pipeline]);
        if (p === undefined) continue;
        progress[entry.pipeline] = entry.progress = entry.source.prune?.(p) ?? p;
      }
      covered = uncommittedOut.slice();
      // The slots changed since the last checkpoint (a delta), or every occupied one when the chain wants a base.
      const captured = flows.map((flow) => captureSlots(flow.stores, chain!.wantsBase));
      return {
        app: app.name,
        slotCount,
        sources: progress.map((p) => (p === undefined ? undefined : { progress: p })),
        slots: captured.map((c) => c.slots),
        complete: captured.every((c) => c.complete),
        createdAtMs: Date.now(),
      };
    }, checkpointWatch);
    await chain!.write(snapshot, { final: stopping });
    stats.checkpoints++;
    events.record("checkpoint", `checkpoint ${stats.checkpoints} written`, { fold: true });
    options.observeCheckpoint?.((performance.now() - startedAt) / 1000);
    covered.forEach((n, i) => (uncommittedOut[i]! -= n));
    checkpointDone.notify();
    snapshot.sources.forEach((s, i) => {
      if (s === undefined) return;
      for (const entry of sources) if (entry.pipeline === i) entry.source.commit?.(s.progress);
    });
    // The last checkpoint of a run waits for a compaction under way, so nothing writes after the engine is done.
    if (stopping) await chain!.settled();
  };

  let stopping = false;
  let checkpointTimer: NodeJS.Timeout | undefined;
  let checkpointing: Promise<void> = Promise.resolve();
  /** A source waits on the commit-lag bound: the checkpoint due next is taken now, unless one is under way. */
  const checkpointSoon = (): void => {
    if (checkpointTimer === undefined) return;
    clearTimeout(checkpointTimer);
    checkpointTimer = undefined;
    takeCheckpoint();
  };
  const scheduleCheckpoint = (): void => {
    if (dataDir === undefined || stopping) return;
    checkpointTimer = setTimeout(() => {
      checkpointTimer = undefined;
      takeCheckpoint();
    }, options.checkpointIntervalMs ?? CHECKPOINT_INTERVAL_MS_DEFAULT);
  };
  const takeCheckpoint = (): void => {
    checkpointing = checkpoint().then(scheduleCheckpoint, (err: unknown) => {
      if (!(err instanceof KeywayError && err.code === ErrorCode.TIMED_OUT)) return fail(err);
      // The records it would have covered stay uncommitted; the next checkpoint covers them.
      stats.checkpointsAbandoned++;
      log.error({ err: err.message }, "checkpoint given up; the pipelines go on and the next checkpoint tries again");
      events.record("error", `checkpoint given up: ${err.message}`);
      scheduleCheckpoint();
    });
  };


  /** Sinks holding records that have not left: what a checkpoint or the end of a run waits for. */
  const waitingSinks = (): Record<string, number> =>
    Object.fromEntries(namedSinks.flatMap(([name, s]) => (s.bufferedRecords() > 0 ? [[name, s.bufferedRecords()]] : [])));

  // A sink whose peer is gone (a connector sink with no session) can hold the end of a run: say so.
  const flushLoudly = (): Promise<void> =>
    watchedWait(
      (async () => {
        await Promise.all([...sinkChains.values()]);
        await Promise.all(sinks.map((s) => s.flush()));
      })(),
      { what: "the end of the run (a second signal exits without what the sinks hold)", log, warnAfterMs: WAIT_WARNING_MS, describe: () => ({ sinks: waitingSinks() }) },
    );

  const pumps: Promise<void>[] = sources.map(pump);
  const closeSources = () => Promise.allSettled(sources.map(({ source }) => source.close()));
  const allPumps = async (): Promise<void> => {
    // Sources added while others run are awaited too.
    for (let seen = 0; seen < pumps.length; seen = pumps.length) await Promise.all(pumps);
  };
  const sourcesDone = () => Promise.race([allPumps(), failedPromise]);
  const run = async (): Promise<void> => {
    try {
      scheduleCheckpoint();
      await sourcesDone();
      if (options.holdOpen !== undefined) await Promise.race([options.holdOpen, failedPromise]);
      stopping = true;
      clearTimeout(checkpointTimer);
      await checkpointing;
      if (failure !== undefined) throw failure;
      await flushLoudly();
      // A last checkpoint, so a restart after a clean stop resumes exactly where this run ended.
      if (dataDir !== undefined) await checkpoint();
    } catch (err) {
      stopping = true;
      clearTimeout(checkpointTimer);
      await closeSources();
      throw err;
    } finally {
      for (const h of held.splice(0)) h.reject(new KeywayError(ErrorCode.INTERNAL, "the engine stopped while records waited for a slot to move"));
      await Promise.allSettled(sinks.map((s) => s.close()));
    }
  };
  const done = run();
  // done is awaited by the caller; this keeps an early failure from being reported as unhandled first.
  done.catch(() => undefined);

  const stores = () => flows.flatMap((f) => f.stores);
  const reroute = (pipeline: number, stage: number, batch: KeyedBatch, hops: number): Promise<void> =>
    flows[pipeline]!.runStage(stage, batch, { withIds: batch.lineage.length > 0, inbound: false, hops }).then((r) => deliver(pipeline, r).done);
  return {
    done,
    sourcesDone,
    finite: sources.every(({ source }) => source.finite),
    stats: () => ({
      ...stats,
      keys: stores().reduce((n, s) => n + s.keyCount, 0),
      bufferedRecords: sinks.reduce((n, s) => n + s.bufferedRecords(), 0),
      ...(dataDir === undefined ? {} : { uncommittedOut: uncommittedOut.slice() }),
    }),
    pipelineStats: () =>
      app.pipelines.map((p, i) => ({ pipeline: p.name, source: p.source.name, sink: p.sink.name, recordsIn: flowed[i]!.in, recordsOut: outputs[i]! })),
    buffers() {
      const sum = (into: Map<string, number>, name: string, n: number) => into.set(name, (into.get(name) ?? 0) + n);
      const held: EngineBuffers = { sources: new Map(), sinks: new Map() };
      for (const { pipeline, source } of sources) if (source.queuedRecords !== undefined) sum(held.sources, app.pipelines[pipeline]!.source.name, source.queuedRecords());
      for (const [name, sink] of namedSinks) sum(held.sinks, name, sink.bufferedRecords());
      return held;
    },
    stores,
    flows,
    async stop() {
      await closeSources();
      return done;
    },
    async closeSources() {
      closing = true;
      await closeSources();
      await sourcesDone();
      for (const standing of sources) standing.progress = progressOf(standing.source, standing.progress);
      return [...sources];
    },
    receive(batch) {
      if (batch.toSink) {
        const sink = localSink(batch.pipeline);
        if (sink === undefined) {
          const err = new KeywayError(ErrorCode.INTERNAL, `output of pipeline ${batch.pipeline} arrived, but its sink is not on this worker`);
          return { applied: Promise.resolve(), done: Promise.reject(err) };
        }
        const written = writeSink(sink, batch.output!);
        return { applied: Promise.resolve(), done: written };
      }
      const flow = flows[batch.pipeline];
      if (flow === undefined) {
        const err = new KeywayError(ErrorCode.INTERNAL, `records for pipeline ${batch.pipeline}, which this app does not have`);
        return { applied: Promise.resolve(), done: Promise.reject(err) };
      }
      const records = batch.records!;
      const ran = flow.runStage(batch.stage, records, { withIds: records.lineage.length > 0, inbound: true, hops: batch.hops });
      const done = ran.then((r) => deliver(batch.pipeline, r).done);
      done.catch(fail);
      return { applied: ran.then(() => undefined), done };
    },
    thaw() {
      for (const h of held.splice(0)) reroute(h.pipeline, h.stage, h.batch, 0).then(h.resolve, h.reject);
    },
    reroute,
    deliverOutput: (pipeline, output, resent, origin) => sendOutput(pipeline, output, origin?.outputSeq, resent, origin === undefined ? undefined : { worker: origin.worker, slots: origin.slots }),
    holdOutput(until) {
      holds++;
      void until
        .catch(() => undefined)
        .then(() => {
          if (--holds > 0) return;
          // In one synchronous pass, so nothing sent meanwhile overtakes them.
          for (const send of heldOutputs.splice(0)) send();
        });
    },
    outputsSettled: () => Promise.allSettled([...unsettled]).then(() => undefined),
    outputsReleased: () => {
      // Unreplicated, output leaves as its run ends: there are no turns to wait for.
      if (options.replicated !== true) return Promise.resolve();
      const through = nextOutputSeq.map((next) => next - 1);
      return releasedThrough(through) ? Promise.resolve() : new Promise((resolve) => releaseWaiters.push({ through, resolve }));
    },
    async addSource(pipeline, source, resumeFrom, label) {
      const { name, records } = app.pipelines[pipeline]!.source;
      await source.open({ name, log: log.child({ source: name }), wantsMeta: records === true, ...(resumeFrom === undefined ? {} : { resumeFrom }) });
      const standing: SourceStanding = { pipeline, source, progress: resumeFrom, ended: false, label };
      sources.push(standing);
      pumps.push(pump(standing));
    },
    sourceNames: () => sources.map(({ pipeline }) => app.pipelines[pipeline]!.source.name),
  };
}

/** A source's progress after the batch at `position` (what the engine tracks): its progressAt() when it has one. */
function progressOf(source: Source, position: unknown): unknown {
  return typeof position === "bigint" && source.progressAt !== undefined ? source.progressAt(position) : position;
}

/** A failed record as one JSON line: what failed, where, and the record itself (text, or bytes as hex). */
function deadLetterLine({ pipeline, stage, position, key, value, error }: FailedRecord): string {
  const text = (v: unknown): string => {
    const payload = v instanceof Uint8Array || typeof v === "string" ? v : defaultEncode(v);
    return typeof payload === "string" ? payload : Buffer.from(payload).toString("hex");
  };
  return JSON.stringify({ pipeline, stage, position, ...(key === undefined ? {} : { key: text(key) }), error, value: text(value) });
}
