/**
 * Compiles a pipeline into fused stages and runs batches through them synchronously. A stage is
 * the run of steps between two keyBy boundaries: stateless steps are fused into one closure
 * chain, and every keyBy routes through the partition map into the next stage's batch.
 */
import type { Key, PipelineSpec, SinkSpec, SourceSpec, Step } from "../app/spec.ts";
import type { Payload } from "../connector/types.ts";
import { ErrorCode, KeywayError } from "../errors.ts";
import type { PartitionMap } from "../routing/partition-map.ts";
import { createStageStore, stateFor, type StageStore } from "./state-store.ts";

type Emit = (value: unknown) => void;
type StatefulStep = Extract<Step, { kind: "state" }>;

/** Records routed into a keyed stage, as parallel arrays so a batch allocates per batch, not per record. */
interface KeyedBatch {
  keys: Key[];
  slots: number[];
  values: unknown[];
}

interface KeyedStage {
  step: StatefulStep;
  store: StageStore;
  input: KeyedBatch;
  emit: Emit;
}

export interface Routing {
  slotOf: (key: Key) => number;
  map: PartitionMap;
  /** This worker's index in map.workers. */
  self: number;
}

export interface Dataflow {
  readonly pipeline: PipelineSpec;
  /** One store per state step, in pipeline order. */
  readonly stores: readonly StageStore[];
  /** Runs a source batch through every stage; returns the encoded records for the sink. */
  process(values: readonly Payload[]): Payload[];
}

const utf8 = new TextDecoder();

function decoderOf(source: SourceSpec): (payload: Payload) => unknown {
  const decode = source.decode;
  if (decode === undefined) return (p) => (typeof p === "string" ? p : utf8.decode(p));
  return (p) => decode(typeof p === "string" ? Buffer.from(p) : p);
}

function encoderOf(sink: SinkSpec): (value: unknown) => Payload {
  const encode = sink.encode;
  if (encode !== undefined) return encode;
  return (v) => (typeof v === "string" || v instanceof Uint8Array ? v : JSON.stringify(v));
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
          for (const out of fn(v)) next(out);
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

/** Splits steps at keyBy: [stateless head, then per keyBy: its key fn, state step and stateless tail]. */
function splitStages(steps: readonly Step[]): { head: Step[]; keyed: Array<{ keyBy: (v: unknown) => Key; state: StatefulStep; tail: Step[] }> } {
  const head: Step[] = [];
  const keyed: Array<{ keyBy: (v: unknown) => Key; state: StatefulStep; tail: Step[] }> = [];
  for (let i = 0; i < steps.length; i++) {
    const step = steps[i]!;
    if (step.kind !== "keyBy") {
      (keyed.length === 0 ? head : keyed[keyed.length - 1]!.tail).push(step);
      continue;
    }
    const state = steps[i + 1];
    if (state?.kind !== "state") throw new KeywayError(ErrorCode.BAD_APP, "keyBy must be followed by state");
    keyed.push({ keyBy: step.fn, state, tail: [] });
    i++;
  }
  return { head, keyed };
}

export function compileDataflow(pipeline: PipelineSpec, routing: Routing): Dataflow {
  const { head, keyed } = splitStages(pipeline.steps);
  const { slotOf, map, self } = routing;
  const owners = map.owners;
  const encode = encoderOf(pipeline.sink);
  let out: Payload[] = [];
  const toSink: Emit = (v) => {
    out.push(encode(v));
  };

  const router = (keyBy: (v: unknown) => Key, input: KeyedBatch): Emit => (v) => {
    const key = keyBy(v);
    if (typeof key !== "string" && !(key instanceof Uint8Array)) {
      throw new KeywayError(ErrorCode.BAD_APP, `pipeline "${pipeline.name}": keyBy returned ${typeof key}, not a string or bytes`);
    }
    const slot = slotOf(key);
    if (owners[slot] !== self) {
      throw new KeywayError(ErrorCode.INTERNAL, `slot ${slot} is owned by worker ${map.workers[owners[slot]!]}, not this one`);
    }
    input.keys.push(key);
    input.slots.push(slot);
    input.values.push(v);
  };

  // Built back to front: each stage's terminal is the next stage's router, the last one's the sink.
  const stages: KeyedStage[] = [];
  let terminal = toSink;
  for (let i = keyed.length - 1; i >= 0; i--) {
    const { keyBy, state, tail } = keyed[i]!;
    const stage: KeyedStage = {
      step: state,
      store: createStageStore(map.slotCount, state.codec),
      input: { keys: [], slots: [], values: [] },
      emit: fuse(tail, terminal),
    };
    stages.unshift(stage);
    terminal = router(keyBy, stage.input);
  }
  const decode = decoderOf(pipeline.source);
  const headEmit = fuse(head, terminal);

  return {
    pipeline,
    stores: stages.map((s) => s.store),
    process(values) {
      out = [];
      for (let i = 0; i < values.length; i++) headEmit(decode(values[i]!));
      for (const stage of stages) runKeyedStage(stage);
      return out;
    },
  };
}

function runKeyedStage(stage: KeyedStage): void {
  const { input, store, emit } = stage;
  const { init, update } = stage.step;
  const { keys, slots, values } = input;
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!;
    const result = update(values[i], stateFor(store, slots[i]!, key, init), key);
    if (result === undefined) continue;
    if (Array.isArray(result)) {
      for (const r of result) emit(r);
    } else {
      emit(result);
    }
  }
  keys.length = 0;
  slots.length = 0;
  values.length = 0;
}
