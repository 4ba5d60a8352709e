/**
 * The plain-data description of an application that the builder produces and the runtime
 * executes. Nothing here names a worker count: the same spec runs on one process or many.
 */
import type { Payload } from "../connector/types.ts";

/** A partition key: text, or bytes. Routing hashes its UTF-8 (or raw) bytes. */
export type Key = string | Uint8Array;

/** Turns one key's state into bytes and back, to migrate or replicate it. */
export interface StateCodec<S> {
  encode(state: S): Uint8Array;
  decode(bytes: Uint8Array): S;
}

export type Step =
  | { kind: "map"; fn: (value: unknown) => unknown }
  | { kind: "flatMap"; fn: (value: unknown) => Iterable<unknown> }
  | { kind: "filter"; fn: (value: unknown) => boolean }
  | { kind: "keyBy"; fn: (value: unknown) => Key }
  /** Keys computed by a partition function attached over gRPC under this name. */
  | { kind: "keyByPartitioner"; partitioner: string }
  | {
      kind: "state";
      init: (key: Key) => object;
      update: (value: unknown, state: object, key: Key) => unknown;
      codec?: StateCodec<object>;
    };

export interface SourceSpec {
  name: string;
  /** Absent: bytes are decoded as UTF-8 text. */
  decode?: (bytes: Uint8Array) => unknown;
  /** The steps see each record as a SourceRecord (value and metadata), not the value alone. */
  records?: boolean;
}

/** A source's record with its metadata, as steps see it with `source(name, { records: true })`. */
export interface SourceRecord<T> {
  value: T;
  /** The key the source sent, as its bytes (keyBy may return them: bytes route as their text would); absent when none. */
  key?: Uint8Array;
  /** Milliseconds since the Unix epoch; absent when the source did not say. */
  eventTimeMs?: number;
  /** Always present; empty when the source sent none. */
  headers: Record<string, string>;
}

/** An output with metadata for its sink, made by output(): the sink encodes `value` as usual. */
export interface OutputRecord<T = unknown> {
  readonly kind: "keyway.output";
  value: T;
  key?: Payload;
  eventTimeMs?: number;
  headers?: Record<string, string>;
}

export interface SinkSpec {
  name: string;
  /** Absent: strings and bytes pass as they are, anything else as JSON. */
  encode?: (value: unknown) => Payload;
}

export interface PipelineSpec {
  readonly kind: "keyway.pipeline";
  name: string;
  source: SourceSpec;
  steps: readonly Step[];
  sink: SinkSpec;
}

export interface AppSpec {
  readonly kind: "keyway.app";
  name: string;
  pipelines: readonly PipelineSpec[];
}
