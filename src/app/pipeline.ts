/**
 * The application API. Each call returns a new immutable builder holding plain data, so a
 * partially built pipeline can be shared and extended without aliasing surprises.
 */
import type { Payload } from "../connector/types.ts";
import { ErrorCode, KeywayError } from "../errors.ts";
import type { AppSpec, Key, OutputRecord, PipelineSpec, SinkSpec, SourceRecord, SourceSpec, StateCodec, Step } from "./spec.ts";

/** What a state update may return: nothing, one output, or several as an array. */
export type Outputs<O> = O | readonly O[] | undefined | void;

export interface StateOptions<S> {
  /** Serialises this stage's state for migration and replication; node:v8 when absent. */
  codec?: StateCodec<S>;
}

export interface Stream<T> {
  map<U>(fn: (value: T) => U): Stream<U>;
  flatMap<U>(fn: (value: T) => Iterable<U>): Stream<U>;
  filter<U extends T>(fn: (value: T) => value is U): Stream<U>;
  filter(fn: (value: T) => boolean): Stream<T>;
  /** Routes each value by the key fn extracts; the next stage keeps state per key. */
  keyBy<K extends Key>(fn: (value: T) => K): KeyedStream<T, K>;
  /** Routes each value by the key a partition function attached over gRPC returns. */
  keyBy(partitioner: PartitionerRef): KeyedStream<T, Key>;
  sink(name: string, encode?: (value: T) => Payload): PipelineSpec;
}

export interface KeyedStream<T, K extends Key> {
  /**
   * Keeps one state object per key, created by init the first time a key is seen and mutated in
   * place by update. An array returned by update is several outputs; wrap it to emit one array.
   */
  state<S extends object, O>(
    init: (key: K) => S,
    update: (value: T, state: S, key: K) => Outputs<O>,
    options?: StateOptions<S>,
  ): Stream<O>;
}

export interface SourceOptions<T> {
  /** Absent: bytes are decoded as UTF-8 text. */
  decode?: (bytes: Uint8Array) => T;
  /** The steps see each record as a SourceRecord: its value with the key, event time and headers the source sent. */
  records: true;
}

export interface PipelineStart {
  source(name: string): Stream<string>;
  source<T>(name: string, decode: (bytes: Uint8Array) => T): Stream<T>;
  source(name: string, options: { records: true }): Stream<SourceRecord<string>>;
  source<T>(name: string, options: SourceOptions<T> & { decode: (bytes: Uint8Array) => T }): Stream<SourceRecord<T>>;
}

/**
 * An output carrying a key, an event time or headers to its sink (a connector sink passes them on
 * in SinkRecord; file and TCP sinks write the value alone). Return it from any step.
 */
export function output<T>(value: T, meta: { key?: Payload; eventTimeMs?: number; headers?: Record<string, string> } = {}): OutputRecord<T> {
  const { key, eventTimeMs, headers } = meta;
  const bad = (what: string) => new KeywayError(ErrorCode.BAD_APP, `output(): ${what}`);
  if (key !== undefined && typeof key !== "string" && !(key instanceof Uint8Array)) throw bad(`a key must be a string or bytes, got ${typeof key}`);
  if (eventTimeMs !== undefined && !Number.isFinite(eventTimeMs)) throw bad(`eventTimeMs must be a finite number of milliseconds, got ${String(eventTimeMs)}`);
  for (const [name, text] of Object.entries(headers ?? {})) {
    if (typeof text !== "string") throw bad(`header ${JSON.stringify(name)} must be a string, got ${typeof text}`);
  }
  const record: OutputRecord<T> = { kind: "keyway.output", value };
  if (key !== undefined) record.key = key;
  if (eventTimeMs !== undefined) record.eventTimeMs = eventTimeMs;
  if (headers !== undefined) record.headers = headers;
  return record;
}

/** A partition function served over gRPC, bound by name when the app runs. */
export interface PartitionerRef {
  readonly kind: "keyway.partitioner";
  readonly name: string;
}

export function partitioner(name: string): PartitionerRef {
  checkName("partitioner", name);
  return { kind: "keyway.partitioner", name };
}

function isPartitionerRef(value: unknown): value is PartitionerRef {
  return typeof value === "object" && value !== null && (value as PartitionerRef).kind === "keyway.partitioner";
}

const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

function checkName(what: string, name: string): void {
  if (typeof name !== "string" || !NAME_PATTERN.test(name)) {
    throw new KeywayError(
      ErrorCode.BAD_APP,
      `${what} name ${JSON.stringify(name)} must start with a letter or digit and hold only letters, digits, '_', '.', '-'`,
    );
  }
}

export function pipeline(name: string): PipelineStart {
  checkName("pipeline", name);
  return {
    source(sourceName: string, how?: ((bytes: Uint8Array) => unknown) | SourceOptions<unknown>) {
      checkName("source", sourceName);
      const spec: SourceSpec = typeof how === "object" ? { name: sourceName, decode: how.decode, records: how.records === true } : { name: sourceName, decode: how };
      return stream(name, spec, []) as Stream<never>;
    },
  };
}

function stream(name: string, source: SourceSpec, steps: readonly Step[]): Stream<unknown> {
  const then = (step: Step) => stream(name, source, [...steps, step]);
  return {
    map: (fn) => then({ kind: "map", fn }),
    flatMap: (fn) => then({ kind: "flatMap", fn }),
    filter: (fn: (value: unknown) => boolean) => then({ kind: "filter", fn }),
    keyBy: (by: ((value: unknown) => Key) | PartitionerRef) => ({
      state: (init: unknown, update: unknown, options?: StateOptions<object>) =>
        stream(name, source, [
          ...steps,
          isPartitionerRef(by) ? { kind: "keyByPartitioner", partitioner: by.name } : { kind: "keyBy", fn: by },
          {
            kind: "state",
            init: init as unknown as (key: Key) => object,
            update: update as unknown as (value: unknown, state: object, key: Key) => unknown,
            codec: options?.codec as unknown as StateCodec<object> | undefined,
          },
        ]),
    }),
    sink(sinkName: string, encode?: (value: unknown) => Payload): PipelineSpec {
      checkName("sink", sinkName);
      const sink: SinkSpec = { name: sinkName, encode };
      return { kind: "keyway.pipeline", name, source, steps, sink };
    },
  } as Stream<unknown>;
}

/** Groups pipelines into one app; they run side by side and may share sinks, not sources. */
export function app(name: string, ...pipelines: PipelineSpec[]): AppSpec {
  checkName("app", name);
  const spec: AppSpec = { kind: "keyway.app", name, pipelines };
  validateApp(spec);
  return spec;
}

export function isPipelineSpec(value: unknown): value is PipelineSpec {
  return typeof value === "object" && value !== null && (value as PipelineSpec).kind === "keyway.pipeline";
}

export function isAppSpec(value: unknown): value is AppSpec {
  return typeof value === "object" && value !== null && (value as AppSpec).kind === "keyway.app";
}

/** Accepts what an app module may export by default: an app, or a single pipeline. */
export function toAppSpec(value: unknown): AppSpec | undefined {
  if (isAppSpec(value)) return value;
  if (isPipelineSpec(value)) return app(value.name, value);
  return undefined;
}

function validateApp(spec: AppSpec): void {
  if (spec.pipelines.length === 0) {
    throw new KeywayError(ErrorCode.BAD_APP, `app "${spec.name}" has no pipelines`);
  }
  const pipelineNames = new Set<string>();
  const sourceNames = new Map<string, string>();
  for (const p of spec.pipelines) {
    if (!isPipelineSpec(p)) {
      throw new KeywayError(ErrorCode.BAD_APP, `app "${spec.name}" holds something that is not a pipeline`);
    }
    if (pipelineNames.has(p.name)) {
      throw new KeywayError(ErrorCode.BAD_APP, `app "${spec.name}" has two pipelines named "${p.name}"`);
    }
    pipelineNames.add(p.name);
    const other = sourceNames.get(p.source.name);
    if (other !== undefined) {
      throw new KeywayError(
        ErrorCode.BAD_APP,
        `pipelines "${other}" and "${p.name}" both read source "${p.source.name}"; give each its own source`,
      );
    }
    sourceNames.set(p.source.name, p.name);
  }
}
