// keyway: the application API and the embeddable engine.
export { app, output, partitioner, pipeline, isAppSpec, isPipelineSpec, toAppSpec } from "./app/pipeline.ts";
export type { KeyedStream, Outputs, PartitionerRef, PipelineStart, SourceOptions, StateOptions, Stream } from "./app/pipeline.ts";
export type { AppSpec, Key, OutputRecord, PipelineSpec, SourceRecord, StateCodec } from "./app/spec.ts";
export type { Payload, RecordMeta, Sink, SinkContext, Source, SourceBatch, SourceContext } from "./connector/types.ts";
export { ErrorCode, KeywayError, isKeywayError } from "./errors.ts";
export { startEngine } from "./runtime/engine.ts";
export type { Connectors, Engine, EngineOptions, EngineStats } from "./runtime/engine.ts";
