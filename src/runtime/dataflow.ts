/**
 * Compiles a pipeline into fused stages and runs batches through them. A stage is the run of
 * steps between two keyBy boundaries: stateless steps are fused into one closure chain, and every
 * keyBy routes through the partition map into the next stage's batch. Only a keyBy served by an
 * external partition function awaits; everything else runs synchronously per batch.
 *
 * Each record carries its origin (its index in the source batch) through the stages, so every
 * output can be given an id that is stable across replays: `<pipeline>:<origin id>:<n>`.
 *
 * With replicated state, a record also carries its upstream and place in it (a mark), so a slot
 * drops replays it has applied, and what a keyed stage applies here is sent on to the slot's
 * backups before its output may leave.
 */
import type { Key, OutputRecord, PipelineSpec, SinkSpec, SourceRecord, SourceSpec, Step } from "../app/spec.ts";
import type { Payload, RecordMeta, SourceBatch } from "../connector/types.ts";
import { ErrorCode, KeywayError } from "../errors.ts";
import { hashShift, slotOfHash } from "../routing/hash.ts";
import type { PartitionMap } from "../routing/partition-map.ts";
import { createStageStore, passMark, stateFor, type StageStore } from "./state-store.ts";

type Emit = (value: unknown) => void;
type StatefulStep = Extract<Step, { kind: "state" }>;
type KeyingStep = Extract<Step, { kind: "keyBy" | "keyByPartitioner" }>;

/**
 * Records routed into a keyed stage, as parallel arrays so a batch allocates per batch, not per
 * record. `lineage` (only when the sink wants record ids) is each record's path from its source
 * record: the origin id, then the index of each emission along the way, so an output's id is the
 * same whichever worker produced it.
 */
export interface KeyedBatch {
  keys: Key[];
  /** Each key's routing hash (createKeyHash): its slot (slotOfHash), and where its state is in the slot's table. */
  hashes: number[];
  values: unknown[];
  lineage: string[];
  /** With replicated state (else empty): each record's upstream, and its [seq, sub] place in it. */
  upstreams: string[];
  seqs: number[];
  subs: number[];
  /**
   * A replica of records its primary had applied before (replays it dropped now): a copy that
   * lacked them applies them, and keeps no output of them (that output went out before).
   */
  quiet?: true;
}

interface KeyedStage {
  keying: KeyingStep;
  step: StatefulStep;
  store: StageStore;
  emit: Emit;
  /** Seconds the stage took over one batch, when timed. */
  observe: ((seconds: number) => void) | undefined;
}

/** A stage's name in metrics: the head, then keyed stages from 1 (as failures name them). */
export const HEAD_STAGE = "head";
export const keyedStageName = (index: number): string => `keyed-${index + 1}`;

/** Asks the partition function named `name` for the keys of these encoded values, in order. */
export type PartitionFn = (name: string, values: Uint8Array[]) => Promise<Key[]>;

/**
 * The current partition map, this worker's index in it, and the slots frozen while they move;
 * the cluster swaps the map between batches.
 */
export interface Placement {
  map: PartitionMap;
  self: number;
  /** slot -> 1 while the slot moves: records routed to it wait (hold) instead of going anywhere. */
  frozen?: Uint8Array;
  /** slot -> indexes into map.workers this worker sends what it applies to (the backups, and copies being made). */
  replicaTargets?: ReadonlyArray<readonly number[] | undefined>;
}

/** Records applied here, on their way to one backup: output waits for `acked`; `delivered` says the output left. */
export interface Replica {
  acked: Promise<void>;
  delivered(): void;
}

/** Where records go that this worker does not run now; each promise settles when they are done. */
export interface RouteOut {
  /** To the worker at index `owner` of the map, for stage `stage` onwards. */
  send(owner: number, stage: number, batch: KeyedBatch, hops: number): Promise<void>;
  /** Records of frozen slots, until the slots thaw. */
  hold(stage: number, batch: KeyedBatch): Promise<void>;
  /** Records just applied here by the run numbered `outputSeq`, to the backup at index `target` of the map. */
  replicate?(target: number, stage: number, batch: KeyedBatch, outputSeq: number): Replica;
}

export interface Routing {
  /** The routing hash (createKeyHash). */
  hashOf: (key: Key) => number;
  placement: Placement;
  /** Required when the pipeline keys by a partitioner. */
  partition?: PartitionFn;
  /** Required when another worker owns slots. */
  out?: RouteOut;
  /** Records carry marks, and slots drop replays (replicated state). */
  marking?: boolean;
  /** With marking: numbers each run that applies records here, in the order it applies them (its output leaves in that order). */
  outputSeq?: () => number;
  /** Where records go that a function of the app threw on (the run goes on); absent, such a record stops the run. */
  deadLetter?: (failed: FailedRecord) => Promise<void>;
  /**
   * Times each stage per batch: called once per stage at compile time (HEAD_STAGE, keyedStageName),
   * so a batch costs two clock reads and one call, and a record nothing.
   */
  observeStage?: (stage: string) => (seconds: number) => void;
}

/** A record a function of the app threw on. */
export interface FailedRecord {
  pipeline: string;
  /** "head ..." (the steps before the first keyBy) or "keyed stage N" (its state step and the steps after it). */
  stage: string;
  /** The source record's id or position, as far as it is known where it failed. */
  position: string;
  key: Key | undefined;
  value: unknown;
  error: string;
}

/** What one run produced here: sink-bound output, and the promises of records sent elsewhere. */
export interface StageRun {
  values: Payload[];
  /** Present when asked for: one stable id per output value. */
  ids?: string[];
  /** Present once an output carries metadata (output()): one entry per output value, undefined for those without. */
  meta?: (RecordMeta | undefined)[];
  /** A backup's run: the slot each output value came from (a promoted backup resends only its slots'). */
  slots?: number[];
  pending: Promise<void>[];
  /** Records that reached this worker for a slot it does not own, and were forwarded. */
  forwarded: number;
  /** What this run applied, on its way to the backups: the output may leave once all are acked. */
  replicas: Replica[];
  /** Replays dropped: records at or below their slot's mark. */
  replays: number;
  /** With marking, once the run applied records here: its place in this worker's output order (else -1). */
  outputSeq: number;
}

export interface RunOptions {
  withIds: boolean;
  /** Records that arrived from another worker: run those this worker owns even while frozen. */
  inbound: boolean;
  hops: number;
}

export interface Dataflow {
  readonly pipeline: PipelineSpec;
  /** One store per state step, in pipeline order. */
  readonly stores: readonly StageStore[];
  /**
   * Runs a source batch through the stateless head and routes it on; `upstream` names the
   * source for marks when the batch carries none of its own.
   */
  process(batch: SourceBatch, withIds: boolean, upstream?: string): Promise<StageRun>;
  /** Records run through keyed stages on this worker so far. */
  recordsRun(): number;
  /** Runs records through stage `stage` and the rest of the pipeline, here or where they belong. */
  runStage(stage: number, input: KeyedBatch, options: RunOptions): Promise<StageRun>;
  /** Applies records a slot's primary applied (this worker is a backup): the output it produced, not sent anywhere. */
  applyReplica(stage: number, input: KeyedBatch): StageRun;
}

/** A record forwarded this often by workers that did not own its slot is a routing bug, not a race. */
export const FORWARD_HOPS_MAX = 4;

const utf8 = new TextDecoder();

function decoderOf(source: SourceSpec): (payload: Payload) => unknown {
  const decode = source.decode;
  if (decode === undefined) return (p) => (typeof p === "string" ? p : utf8.decode(p));
  return (p) => decode(typeof p === "string" ? Buffer.from(p) : p);
}

/** A source record as the app's steps see it with `source(name, { records: true })`. */
function sourceRecord(value: unknown, meta: RecordMeta | undefined): SourceRecord<unknown> {
  const record: SourceRecord<unknown> = { value, headers: meta?.headers ?? {} };
  if (meta?.key !== undefined) record.key = typeof meta.key === "string" ? Buffer.from(meta.key) : meta.key;
  if (meta?.eventTimeMs !== undefined) record.eventTimeMs = meta.eventTimeMs;
  return record;
}

function isOutputRecord(value: unknown): value is OutputRecord {
  return typeof value === "object" && value !== null && (value as OutputRecord).kind === "keyway.output";
}

function metaOf(record: OutputRecord): RecordMeta {
  const meta: RecordMeta = {};
  if (record.key !== undefined) meta.key = record.key;
  if (record.eventTimeMs !== undefined) meta.eventTimeMs = record.eventTimeMs;
  if (record.headers !== undefined) meta.headers = record.headers;
  return meta;
}

/** The default encoding of a value leaving the app: text and bytes as they are, the rest as JSON. */
export function defaultEncode(value: unknown): Payload {
  return typeof value === "string" || value instanceof Uint8Array ? value : JSON.stringify(value);
}

function encoderOf(sink: SinkSpec): (value: unknown) => Payload {
  return sink.encode ?? defaultEncode;
}

function toBytes(value: unknown): Uint8Array {
  const payload = defaultEncode(value);
  return typeof payload === "string" ? Buffer.from(payload) : payload;
}

/** Steps run synchronously, record by record: a Promise from one is an app error, not a value. */
function refuseAsync(pipeline: string, step: string): never {
  throw new KeywayError(ErrorCode.BAD_APP, `pipeline "${pipeline}": its ${step} function returned a Promise; steps must be synchronous (do I/O in a connector or a partition function)`);
}

/** Fuses stateless steps in front of a terminal into one emit function. */
function fuse(pipeline: string, steps: readonly Step[], terminal: Emit): Emit {
  let emit = terminal;
  for (let i = steps.length - 1; i >= 0; i--) {
    const step = steps[i]!;
    const next = emit;
    switch (step.kind) {
      case "map": {
        const fn = step.fn;
        emit = (v) => {
          const out = fn(v);
          if (out instanceof Promise) refuseAsync(pipeline, "map");
          next(out);
        };
        break;
      }
      case "flatMap": {
        const fn = step.fn;
        emit = (v) => {
          const outs = fn(v);
          // Arrays are the common case; an indexed loop skips the iterator protocol.
          if (Array.isArray(outs)) {
            for (let j = 0; j < outs.length; j++) next(outs[j]);
          } else {
            if (outs instanceof Promise) refuseAsync(pipeline, "flatMap");
            for (const out of outs) next(out);
          }
        };
        break;
      }
      case "filter": {
        const fn = step.fn;
        emit = (v) => {
          const keep: unknown = fn(v);
          if (keep instanceof Promise) refuseAsync(pipeline, "filter");
          if (keep) next(v);
        };
        break;
      }
      default:
        throw new KeywayError(ErrorCode.INTERNAL, `step ${step.kind} cannot be fused`);
    }
  }
  return emit;
}

interface StagePlan {
  keying: KeyingStep;
  state: StatefulStep;
  tail: Step[];
}

/** Splits steps at each keyBy: a stateless head, then per keyBy its state step and stateless tail. */
function splitStages(steps: readonly Step[]): { head: Step[]; keyed: StagePlan[] } {
  const head: Step[] = [];
  const keyed: StagePlan[] = [];
  for (let i = 0; i < steps.length; i++) {
    const step = steps[i]!;
    if (step.kind !== "keyBy" && step.kind !== "keyByPartitioner") {
      (keyed.length === 0 ? head : keyed[keyed.length - 1]!.tail).push(step);
      continue;
    }
    const state = steps[i + 1];
    if (state?.kind !== "state") throw new KeywayError(ErrorCode.BAD_APP, "keyBy must be followed by state");
    keyed.push({ keying: step, state, tail: [] });
    i++;
  }
  return { head, keyed };
}

/** Whether a keyBy served by a partition function follows a keyed stage (it then runs where that stage's slots are). */
export function partitionerAfterKeyedStage(pipeline: PipelineSpec): boolean {
  const first = pipeline.steps.findIndex((s) => s.kind === "keyBy" || s.kind === "keyByPartitioner");
  return pipeline.steps.some((s, i) => i > first && s.kind === "keyByPartitioner");
}

/** The partitioner names a pipeline keys by. */
export function partitionerNames(pipeline: PipelineSpec): string[] {
  return pipeline.steps.flatMap((s) => (s.kind === "keyByPartitioner" ? [s.partitioner] : []));
}

export function compileDataflow(pipeline: PipelineSpec, routing: Routing): Dataflow {
  const { head, keyed } = splitStages(pipeline.steps);
  const { hashOf, placement, partition, out } = routing;
  const shift = hashShift(placement.map.slotCount);
  const marking = routing.marking === true;
  if (partition === undefined && partitionerNames(pipeline).length > 0) {
    throw new KeywayError(ErrorCode.BAD_APP, `pipeline "${pipeline.name}" keys by a partitioner, but no partitioner service runs`);
  }
  const encode = encoderOf(pipeline.sink);
  const idPrefix = `${pipeline.name}:`;
  // Where the synchronous part of a stage run writes: the run's sink output, or the next stage's
  // input. Swapped before each run, which never awaits, so concurrent runs cannot mix.
  let sinkOut: StageRun = emptyRun(false);
  let stageIn: KeyedBatch = emptyKeyedBatch();
  // The lineage of the record being processed and how many records it has emitted, set by each
  // loop and used only when the sink wants record ids. The head separates with ":", stages with ".".
  let lineage = "";
  let separator = ":";
  let emitted = 0;
  let tracking = false;
  // The mark of the source record being processed; records it emits rank by `emitted`.
  let upstream = "";
  let seq = 0;
  let subBase = 0;
  let recordsRun = 0;
  const toSink: Emit = (v) => {
    if (isOutputRecord(v)) {
      sinkOut.meta ??= new Array<RecordMeta | undefined>(sinkOut.values.length).fill(undefined);
      sinkOut.meta.push(metaOf(v));
      sinkOut.values.push(encode(v.value));
    } else {
      sinkOut.values.push(encode(v));
      sinkOut.meta?.push(undefined);
    }
    if (tracking) sinkOut.ids!.push(`${idPrefix}${lineage}${separator}${emitted++}`);
  };

  const route = (input: KeyedBatch, key: Key): void => {
    if (typeof key !== "string" && !(key instanceof Uint8Array)) {
      throw new KeywayError(ErrorCode.BAD_APP, `pipeline "${pipeline.name}": a key must be a string or bytes, got ${typeof key}`);
    }
    input.keys.push(key);
    input.hashes.push(hashOf(key));
  };

  const admit = (v: unknown): void => {
    stageIn.values.push(v);
    if (marking) {
      stageIn.upstreams.push(upstream);
      stageIn.seqs.push(seq);
      stageIn.subs.push(subBase + emitted);
    }
    if (tracking) stageIn.lineage.push(`${lineage}${separator}${emitted}`);
    emitted++;
  };
  const router = (keying: KeyingStep): Emit => {
    // Keys by a partition function come later, for the whole batch at once.
    if (keying.kind === "keyByPartitioner") return admit;
    const keyBy = keying.fn;
    return (v) => {
      route(stageIn, keyBy(v));
      admit(v);
    };
  };

  // Built back to front: each stage's terminal is the next stage's router, the last one's the sink.
  const stages: KeyedStage[] = [];
  let terminal = toSink;
  for (let i = keyed.length - 1; i >= 0; i--) {
    const { keying, state, tail } = keyed[i]!;
    stages.unshift({ keying, step: state, store: createStageStore(placement.map.slotCount, hashOf, state.codec), emit: fuse(pipeline.name, tail, terminal), observe: routing.observeStage?.(keyedStageName(i)) });
    terminal = router(keying);
  }
  const decode = decoderOf(pipeline.source);
  const records = pipeline.source.records === true;
  const headEmit = fuse(pipeline.name, head, terminal);
  const observeHead = routing.observeStage?.(HEAD_STAGE);

  // Where the batch being run came from, for a failure's message when a record carries no id.
  let batchPlace = "";
  /**
   * A function of the app threw on a record: with a dead-letter hook the record goes there (its
   * partial output dropped) and the run goes on; without, the run stops, naming the record.
   */
  const failed = (run: StageRun, err: unknown, stage: string, position: string, key: Key | undefined, value: unknown): void => {
    if (err instanceof KeywayError && (err.code === ErrorCode.BAD_APP || err.code === ErrorCode.RECORD_FAILED)) throw err;
    const error = err instanceof Error ? err.message : String(err);
    if (routing.deadLetter !== undefined) {
      run.pending.push(routing.deadLetter({ pipeline: pipeline.name, stage, position, key, value, error }));
      return;
    }
    const shownKey = key === undefined ? "" : `, key ${JSON.stringify(typeof key === "string" ? key : Buffer.from(key).toString("hex"))}`;
    throw new KeywayError(
      ErrorCode.RECORD_FAILED,
      `pipeline "${pipeline.name}", ${stage}, record ${position}${shownKey}: ${error} (run with --dead-letter URI to send failing records there and go on)`,
      { cause: err },
    );
  };
  /** Drops what a failed record emitted: everything past the lengths taken before it. */
  const truncate = (batch: KeyedBatch, length: number): void => {
    for (const list of [batch.keys, batch.hashes, batch.values, batch.lineage, batch.upstreams, batch.seqs, batch.subs]) if (list.length > length) list.length = length;
  };

  /** Applies records to this worker's copy of their slots; returns how many were replays it dropped. */
  const runLocal = (stage: KeyedStage, input: KeyedBatch, only: number[] | undefined, run: StageRun, replayed?: number[]): number => {
    const { store, emit } = stage;
    const stageName = `keyed stage ${stages.indexOf(stage) + 1}`;
    const { init, update } = stage.step;
    const { keys, hashes, values } = input;
    const marked = marking && input.upstreams.length > 0;
    const n = only === undefined ? keys.length : only.length;
    let replays = 0;
    recordsRun += n;
    separator = ".";
    // A backup's run: outputs so far came from the previous record's slot.
    const outSlots = run.slots;
    let previousSlot = -1;
    for (let j = 0; j < n; j++) {
      const i = only === undefined ? j : only[j]!;
      const slot = slotOfHash(hashes[i]!, shift);
      if (outSlots !== undefined) {
        while (outSlots.length < sinkOut.values.length) outSlots.push(previousSlot);
        previousSlot = slot;
      }
      const key = keys[i]!;
      if (marked && !passMark(store, slot, input.upstreams[i]!, input.seqs[i]!, input.subs[i]!)) {
        replays++;
        replayed?.push(i);
        continue;
      }
      if (tracking) {
        lineage = input.lineage[i]!;
        emitted = 0;
      }
      const outputs = sinkOut.values.length;
      const ids = sinkOut.ids?.length ?? 0;
      const onward = stageIn.values.length;
      try {
        const result = update(values[i], stateFor(store, hashes[i]!, key, init), key);
        if (result === undefined) continue;
        if (result instanceof Promise) refuseAsync(pipeline.name, "state update");
        if (Array.isArray(result)) {
          for (const r of result) emit(r);
        } else {
          emit(result);
        }
      } catch (err) {
        sinkOut.values.length = outputs;
        if (sinkOut.ids !== undefined) sinkOut.ids.length = ids;
        if (sinkOut.meta !== undefined) sinkOut.meta.length = outputs;
        truncate(stageIn, onward);
        const position = tracking ? input.lineage[i]! : input.upstreams.length > 0 ? `${input.upstreams[i]}@${input.seqs[i]}` : batchPlace;
        failed(run, err, stageName, position, key, values[i]);
      }
    }
    if (outSlots !== undefined) while (outSlots.length < sinkOut.values.length) outSlots.push(previousSlot);
    return replays;
  };

  /** Sends what was just applied here to each slot's backups, grouped by backup. */
  const replicate = (s: number, input: KeyedBatch, local: number[] | undefined, run: StageRun, replayed: readonly number[]): void => {
    const targets = placement.replicaTargets;
    if (targets === undefined || out?.replicate === undefined) return;
    let groups: Map<number, number[]> | undefined;
    const n = local === undefined ? input.hashes.length : local.length;
    for (let j = 0; j < n; j++) {
      const i = local === undefined ? j : local[j]!;
      const to = targets[slotOfHash(input.hashes[i]!, shift)];
      if (to === undefined) continue;
      groups ??= new Map();
      for (const t of to) {
        let indexes = groups.get(t);
        if (indexes === undefined) groups.set(t, (indexes = []));
        indexes.push(i);
      }
    }
    if (groups === undefined) return;
    const quiet = replayed.length === 0 ? undefined : new Set(replayed);
    for (const [t, indexes] of groups) {
      if (quiet !== undefined) {
        // Replays go first: this worker applied them before the records it applied now.
        const again = indexes.filter((i) => quiet.has(i));
        if (again.length > 0) run.replicas.push(out.replicate(t, s, { ...pickRecords(input, again), quiet: true }, run.outputSeq));
        indexes.splice(0, indexes.length, ...indexes.filter((i) => !quiet.has(i)));
        if (indexes.length === 0) continue;
      }
      run.replicas.push(out.replicate(t, s, pickRecords(input, indexes), run.outputSeq));
    }
  };
  // Records the last runLocal dropped as replays (reused: filled and read in one synchronous step).
  const replayedHere: number[] = [];

  const resolveKeys = async (input: KeyedBatch, name: string): Promise<void> => {
    if (input.values.length === 0 || input.keys.length === input.values.length) return;
    const keys = await partition!(name, input.values.map(toBytes));
    if (keys.length !== input.values.length) {
      throw new KeywayError(ErrorCode.INTERNAL, `partitioner "${name}" returned ${keys.length} keys for ${input.values.length} records`);
    }
    for (const key of keys) route(input, key);
  };

  const outOrFail = (): RouteOut => {
    if (out === undefined) throw new KeywayError(ErrorCode.INTERNAL, `slots owned by other workers, but this worker cannot forward`);
    return out;
  };

  /** Runs stage s and every later one over input: here what this worker runs, elsewhere the rest. */
  const dispatch = async (s: number, input: KeyedBatch, run: StageRun, options: RunOptions): Promise<void> => {
    const stage = stages[s];
    if (stage === undefined) throw new KeywayError(ErrorCode.INTERNAL, `pipeline "${pipeline.name}" has no stage ${s}`);
    if (stage.keying.kind === "keyByPartitioner") await resolveKeys(input, stage.keying.partitioner);
    // The stage's synchronous part (split by owner, apply, replicate): the partitioner's wait is not its work.
    const startedAt = stage.observe === undefined ? 0 : performance.now();
    const { owners } = placement.map;
    const { self, frozen } = placement;
    const { inbound } = options;
    // Most batches are wholly local (always so on one worker): check before splitting.
    let local: number[] | undefined;
    let remote: Map<number, number[]> | undefined;
    let held: number[] | undefined;
    const { hashes } = input;
    for (let i = 0; i < hashes.length; i++) {
      const slot = slotOfHash(hashes[i]!, shift);
      const owner = owners[slot]!;
      const here = owner === self && (inbound || frozen === undefined || frozen[slot] === 0);
      if (here && local === undefined) continue;
      if (local === undefined) local = Array.from({ length: i }, (_, j) => j);
      if (here) local.push(i);
      else if (frozen !== undefined && frozen[slot] === 1) (held ??= []).push(i);
      else {
        remote ??= new Map();
        let indexes = remote.get(owner);
        if (indexes === undefined) remote.set(owner, (indexes = []));
        indexes.push(i);
      }
    }
    if (remote !== undefined) {
      const routeOut = outOrFail();
      const hops = inbound ? options.hops + 1 : 0;
      for (const [owner, indexes] of remote) {
        if (inbound) {
          run.forwarded += indexes.length;
          if (hops > FORWARD_HOPS_MAX) {
            throw new KeywayError(ErrorCode.EPOCH_MISMATCH, `pipeline "${pipeline.name}": records for slot ${slotOfHash(input.hashes[indexes[0]!]!, shift)} forwarded ${hops} times without reaching its owner`);
          }
        }
        run.pending.push(routeOut.send(owner, s, pickRecords(input, indexes), hops));
      }
    }
    if (held !== undefined) run.pending.push(outOrFail().hold(s, pickRecords(input, held)));
    const last = s === stages.length - 1;
    const next = emptyKeyedBatch();
    if (last) sinkOut = run;
    else stageIn = next;
    if (local === undefined || local.length > 0) {
      if (run.outputSeq < 0 && routing.outputSeq !== undefined) run.outputSeq = routing.outputSeq();
      replayedHere.length = 0;
      run.replays += runLocal(stage, input, local, run, replayedHere);
      replicate(s, input, local, run, replayedHere);
    }
    stage.observe?.((performance.now() - startedAt) / 1000);
    if (!last && next.values.length > 0) await dispatch(s + 1, next, run, { ...options, inbound: false, hops: 0 });
  };

  return {
    pipeline,
    stores: stages.map((s) => s.store),
    recordsRun: () => recordsRun,
    async process(batch, withIds, source = "") {
      const run = emptyRun(withIds);
      tracking = withIds;
      const values = batch.values;
      if (stages.length === 0) sinkOut = run;
      else stageIn = emptyKeyedBatch();
      const first = stageIn;
      separator = ":";
      const { upstreams, seqs } = batch;
      const ownMarks = marking && upstreams !== undefined && seqs !== undefined;
      // Without marks of its own, a record ranks by its index in the batch: 2^20 emissions each at most.
      if (marking && !ownMarks) {
        upstream = source;
        seq = Number(batch.position);
      }
      batchPlace = `in the source batch ending at position ${batch.position}`;
      const startedAt = observeHead === undefined ? 0 : performance.now();
      for (let i = 0; i < values.length; i++) {
        if (withIds) lineage = batch.recordIds?.[i] ?? `${batch.position}#${i}`;
        if (ownMarks) {
          upstream = upstreams[i]!;
          seq = seqs[i]!;
        } else if (marking) {
          subBase = i * 0x100000;
        }
        emitted = 0;
        const outputs = run.values.length;
        const onward = first.values.length;
        try {
          headEmit(records ? sourceRecord(decode(values[i]!), batch.meta?.[i]) : decode(values[i]!));
        } catch (err) {
          run.values.length = outputs;
          if (run.ids !== undefined) run.ids.length = outputs;
          if (run.meta !== undefined) run.meta.length = outputs;
          truncate(first, onward);
          failed(run, err, "head (the steps before the first keyBy)", batch.recordIds?.[i] ?? `${batch.position}#${i}`, undefined, values[i]);
        }
      }
      subBase = 0;
      observeHead?.((performance.now() - startedAt) / 1000);
      if (stages.length > 0 && first.values.length > 0) {
        await dispatch(0, first, run, { withIds, inbound: false, hops: 0 });
      }
      return run;
    },
    async runStage(s, input, options) {
      const run = emptyRun(options.withIds);
      tracking = options.withIds;
      batchPlace = options.inbound ? "sent by another worker" : "held while its slot moved";
      await dispatch(s, input, run, options);
      return run;
    },
    applyReplica(s, input) {
      const stage = stages[s];
      if (stage === undefined || s !== stages.length - 1) throw new KeywayError(ErrorCode.INTERNAL, `pipeline "${pipeline.name}": replicated records for stage ${s}, which is not its last keyed stage`);
      const run = emptyRun(input.lineage.length > 0);
      run.slots = [];
      tracking = input.lineage.length > 0;
      sinkOut = run;
      run.replays += runLocal(stage, input, undefined, run);
      return run;
    },
  };
}

export function emptyKeyedBatch(): KeyedBatch {
  return { keys: [], hashes: [], values: [], lineage: [], upstreams: [], seqs: [], subs: [] };
}

function emptyRun(withIds: boolean): StageRun {
  const run: StageRun = { values: [], pending: [], forwarded: 0, replicas: [], replays: 0, outputSeq: -1 };
  if (withIds) run.ids = [];
  return run;
}

/**
 * The elements at indexes, built by push: an array V8 sees as packed. (`map` arrays can turn
 * holey once optimised, and node:v8 then serialises them sparse, an index before every element.)
 */
function pickList<T>(list: readonly T[], indexes: readonly number[]): T[] {
  const out: T[] = [];
  for (let j = 0; j < indexes.length; j++) out.push(list[indexes[j]!]!);
  return out;
}

/** The records at indexes, with their keys and hashes so the receiver neither re-keys nor re-hashes. */
export function pickRecords(input: KeyedBatch, indexes: number[]): KeyedBatch {
  const withLineage = input.lineage.length > 0;
  const withMarks = input.upstreams.length > 0;
  return {
    keys: pickList(input.keys, indexes),
    hashes: pickList(input.hashes, indexes),
    values: pickList(input.values, indexes),
    lineage: withLineage ? pickList(input.lineage, indexes) : [],
    upstreams: withMarks ? pickList(input.upstreams, indexes) : [],
    seqs: withMarks ? pickList(input.seqs, indexes) : [],
    subs: withMarks ? pickList(input.subs, indexes) : [],
  };
}
