// keyway: the application API and the embeddable engine.
export { app, partitioner, pipeline, isAppSpec, isPipelineSpec, toAppSpec } from "./app/pipeline.ts";
export type { KeyedStream, Outputs, PartitionerRef, PipelineStart, StateOptions, Stream } from "./app/pipeline.ts";
export type { AppSpec, Key, PipelineSpec, StateCodec } from "./app/spec.ts";
export type { Payload, Sink, SinkContext, Source, SourceBatch, SourceContext } from "./connector/types.ts";
export { ErrorCode, KeywayError, isKeywayError } from "./errors.ts";
export { startEngine } from "./runtime/engine.ts";
export type { Connectors, Engine, EngineOptions, EngineStats } from "./runtime/engine.ts";
