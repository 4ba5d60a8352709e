/**
 * Compiles a pipeline into fused stages and runs batches through them. A stage is the run of
 * steps between two keyBy boundaries: stateless steps are fused into one closure chain, and every
 * keyBy routes through the partition map into the next stage's batch. Only a keyBy served by an
 * external partition function awaits; everything else runs synchronously per batch.
 *
 * Each record carries its origin (its index in the source batch) through the stages, so every
 * output can be given an id that is stable across replays: `<pipeline>:<origin id>:<n>`.
 */
import type { Key, PipelineSpec, SinkSpec, SourceSpec, Step } from "../app/spec.ts";
import type { Payload, SourceBatch } from "../connector/types.ts";
import { ErrorCode, KeywayError } from "../errors.ts";
import type { PartitionMap } from "../routing/partition-map.ts";
import { createStageStore, stateFor, type StageStore } from "./state-store.ts";

type Emit = (value: unknown) => void;
type StatefulStep = Extract<Step, { kind: "state" }>;
type KeyingStep = Extract<Step, { kind: "keyBy" | "keyByPartitioner" }>;

/** Records routed into a keyed stage, as parallel arrays so a batch allocates per batch, not per record. */
export interface KeyedBatch {
  keys: Key[];
  slots: number[];
  values: unknown[];
  origins: number[];
}

interface KeyedStage {
  keying: KeyingStep;
  step: StatefulStep;
  store: StageStore;
  emit: Emit;
}

/** Sink-bound output of a stage run: encoded values and, when tracked, their origins. */
export interface Collected {
  values: Payload[];
  origins: number[];
}

/** Asks the partition function named `name` for the keys of these encoded values, in order. */
export type PartitionFn = (name: string, values: Uint8Array[]) => Promise<Key[]>;

/** The current partition map and this worker's index in it; the cluster swaps the map between batches. */
export interface Placement {
  map: PartitionMap;
  self: number;
}

/** Runs stage `stage` and the rest of the pipeline for these records on worker `owner`. */
export type ForwardFn = (owner: number, stage: number, batch: KeyedBatch, withOrigins: boolean) => Promise<Collected>;

export interface Routing {
  slotOf: (key: Key) => number;
  placement: Placement;
  /** Required when the pipeline keys by a partitioner. */
  partition?: PartitionFn;
  /** Required when another worker owns slots. */
  forward?: ForwardFn;
}

export interface DataflowOutput {
  values: Payload[];
  /** Present when asked for: one stable id per output value. */
  ids?: string[];
}

export interface Dataflow {
  readonly pipeline: PipelineSpec;
  /** One store per state step, in pipeline order. */
  readonly stores: readonly StageStore[];
  /** Runs a source batch through every stage; returns the encoded records for the sink. */
  process(batch: SourceBatch, withIds: boolean): Promise<DataflowOutput>;
  /** Records run through keyed stages on this worker so far. */
  recordsRun(): number;
  /** Runs records another worker routed here through stage `stage` and the rest of the pipeline. */
  runStage(stage: number, input: KeyedBatch, withOrigins: boolean): Promise<Collected>;
}

const utf8 = new TextDecoder();

function decoderOf(source: SourceSpec): (payload: Payload) => unknown {
  const decode = source.decode;
  if (decode === undefined) return (p) => (typeof p === "string" ? p : utf8.decode(p));
  return (p) => decode(typeof p === "string" ? Buffer.from(p) : p);
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

/** Fuses stateless steps in front of a terminal into one emit function. */
function fuse(steps: readonly Step[], terminal: Emit): Emit {
  let emit = terminal;
  for (let i = steps.length - 1; i >= 0; i--) {
    const step = steps[i]!;
    const next = emit;
    switch (step.kind) {
      case "map": {
        const fn = step.fn;
        emit = (v) => next(fn(v));
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
            for (const out of outs) next(out);
          }
        };
        break;
      }
      case "filter": {
        const fn = step.fn;
        emit = (v) => {
          if (fn(v)) next(v);
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

/** The partitioner names a pipeline keys by. */
export function partitionerNames(pipeline: PipelineSpec): string[] {
  return pipeline.steps.flatMap((s) => (s.kind === "keyByPartitioner" ? [s.partitioner] : []));
}

export function compileDataflow(pipeline: PipelineSpec, routing: Routing): Dataflow {
  const { head, keyed } = splitStages(pipeline.steps);
  const { slotOf, placement, partition, forward } = routing;
  if (partition === undefined && partitionerNames(pipeline).length > 0) {
    throw new KeywayError(ErrorCode.BAD_APP, `pipeline "${pipeline.name}" keys by a partitioner, but no partitioner service runs`);
  }
  const encode = encoderOf(pipeline.sink);
  // Where the synchronous part of a stage run writes: the sink's collection, or the next stage's
  // input. Swapped before each run, which never awaits, so concurrent runs cannot mix.
  let sinkOut: Collected = emptyCollected();
  let stageIn: KeyedBatch = emptyKeyedBatch();
  // The source-batch index of the record being processed, set by each stage's loop, and carried
  // along only when the sink wants record ids.
  let origin = 0;
  let tracking = false;
  let recordsRun = 0;
  const toSink: Emit = (v) => {
    sinkOut.values.push(encode(v));
    if (tracking) sinkOut.origins.push(origin);
  };

  const route = (input: KeyedBatch, key: Key): void => {
    if (typeof key !== "string" && !(key instanceof Uint8Array)) {
      throw new KeywayError(ErrorCode.BAD_APP, `pipeline "${pipeline.name}": a key must be a string or bytes, got ${typeof key}`);
    }
    input.keys.push(key);
    input.slots.push(slotOf(key));
  };

  const router = (keying: KeyingStep): Emit => {
    if (keying.kind === "keyByPartitioner") {
      // Keys come later, for the whole batch at once, from the partition function.
      return (v) => {
        stageIn.values.push(v);
        if (tracking) stageIn.origins.push(origin);
      };
    }
    const keyBy = keying.fn;
    return (v) => {
      route(stageIn, keyBy(v));
      stageIn.values.push(v);
      if (tracking) stageIn.origins.push(origin);
    };
  };

  // Built back to front: each stage's terminal is the next stage's router, the last one's the sink.
  const stages: KeyedStage[] = [];
  let terminal = toSink;
  for (let i = keyed.length - 1; i >= 0; i--) {
    const { keying, state, tail } = keyed[i]!;
    stages.unshift({ keying, step: state, store: createStageStore(placement.map.slotCount, state.codec), emit: fuse(tail, terminal) });
    terminal = router(keying);
  }
  const decode = decoderOf(pipeline.source);
  const headEmit = fuse(head, terminal);

  const runLocal = (stage: KeyedStage, input: KeyedBatch, only: number[] | undefined): void => {
    const { store, emit } = stage;
    const { init, update } = stage.step;
    const { keys, slots, values, origins } = input;
    const n = only === undefined ? keys.length : only.length;
    recordsRun += n;
    for (let j = 0; j < n; j++) {
      const i = only === undefined ? j : only[j]!;
      const key = keys[i]!;
      if (tracking) origin = origins[i]!;
      const result = update(values[i], stateFor(store, slots[i]!, key, init), key);
      if (result === undefined) continue;
      if (Array.isArray(result)) {
        for (const r of result) emit(r);
      } else {
        emit(result);
      }
    }
  };

  const resolveKeys = async (input: KeyedBatch, name: string): Promise<void> => {
    if (input.values.length === 0 || input.keys.length === input.values.length) return;
    const keys = await partition!(name, input.values.map(toBytes));
    if (keys.length !== input.values.length) {
      throw new KeywayError(ErrorCode.INTERNAL, `partitioner "${name}" returned ${keys.length} keys for ${input.values.length} records`);
    }
    for (const key of keys) route(input, key);
  };

  /** Runs stage s and every later one over input, here and on the owners of other slots; collects sink output into out. */
  const runFrom = async (s: number, input: KeyedBatch, out: Collected): Promise<void> => {
    if (s === stages.length) {
      throw new KeywayError(ErrorCode.INTERNAL, `pipeline "${pipeline.name}" has no stage ${s}`);
    }
    const stage = stages[s]!;
    if (stage.keying.kind === "keyByPartitioner") {
      await resolveKeys(input, stage.keying.partitioner);
    } else if (input.keys.length < input.values.length) {
      // Forwarded without keys: every worker runs the same app, so recomputing is cheaper than sending.
      const keyBy = stage.keying.fn;
      for (const v of input.values) route(input, keyBy(v));
    }
    const { owners } = placement.map;
    const self = placement.self;
    // Most batches are wholly local (always so on one worker): check before splitting.
    let remote: Map<number, number[]> | undefined;
    let local: number[] | undefined;
    for (let i = 0; i < input.slots.length; i++) {
      const owner = owners[input.slots[i]!]!;
      if (owner === self && remote === undefined) continue;
      if (remote === undefined) {
        remote = new Map();
        local = Array.from({ length: i }, (_, j) => j);
      }
      if (owner === self) {
        local!.push(i);
      } else {
        let indexes = remote.get(owner);
        if (indexes === undefined) remote.set(owner, (indexes = []));
        indexes.push(i);
      }
    }
    const pending: Promise<Collected>[] = [];
    if (remote !== undefined) {
      if (forward === undefined) throw new KeywayError(ErrorCode.INTERNAL, `slots owned by other workers, but this worker cannot forward`);
      const withKeys = stage.keying.kind === "keyByPartitioner";
      for (const [owner, indexes] of remote) pending.push(forward(owner, s, pick(input, indexes, withKeys, tracking), tracking));
    }
    const last = s === stages.length - 1;
    const next = emptyKeyedBatch();
    if (last) sinkOut = out;
    else stageIn = next;
    runLocal(stage, input, local);
    if (!last) await runFrom(s + 1, next, out);
    for (const collected of await Promise.all(pending)) append(out, collected, tracking);
  };

  return {
    pipeline,
    stores: stages.map((s) => s.store),
    recordsRun: () => recordsRun,
    async process(batch, withIds) {
      const out = emptyCollected();
      tracking = withIds;
      const values = batch.values;
      if (stages.length === 0) {
        sinkOut = out;
      } else {
        stageIn = emptyKeyedBatch();
      }
      const first = stageIn;
      for (let i = 0; i < values.length; i++) {
        origin = i;
        headEmit(decode(values[i]!));
      }
      if (stages.length > 0) await runFrom(0, first, out);
      return withIds ? { values: out.values, ids: recordIds(pipeline.name, batch, out.origins) } : { values: out.values };
    },
    async runStage(s, input, withIds) {
      const out = emptyCollected();
      tracking = withIds;
      await runFrom(s, input, out);
      return out;
    },
  };
}

function emptyKeyedBatch(): KeyedBatch {
  return { keys: [], slots: [], values: [], origins: [] };
}

function emptyCollected(): Collected {
  return { values: [], origins: [] };
}

/** The records at indexes; keys only when the receiver cannot recompute them (a partition function's). */
function pick(input: KeyedBatch, indexes: number[], withKeys: boolean, withOrigins: boolean): KeyedBatch {
  return {
    keys: withKeys ? indexes.map((i) => input.keys[i]!) : [],
    slots: withKeys ? indexes.map((i) => input.slots[i]!) : [],
    values: indexes.map((i) => input.values[i]),
    origins: withOrigins ? indexes.map((i) => input.origins[i]!) : [],
  };
}

function append(out: Collected, more: Collected, withOrigins: boolean): void {
  for (const v of more.values) out.values.push(v);
  if (withOrigins) for (const o of more.origins) out.origins.push(o);
}

/** `<pipeline>:<origin id>:<n>`, n counting the outputs of one input record from 0. */
function recordIds(pipeline: string, batch: SourceBatch, origins: readonly number[]): string[] {
  const perOrigin = new Uint32Array(batch.values.length);
  const ids = new Array<string>(origins.length);
  for (let j = 0; j < origins.length; j++) {
    const o = origins[j]!;
    const originId = batch.recordIds?.[o] ?? `${batch.position}#${o}`;
    ids[j] = `${pipeline}:${originId}:${perOrigin[o]!++}`;
  }
  return ids;
}
