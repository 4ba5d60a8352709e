// keyway/sdk: write sources, sinks and partition functions that attach to a Keyway engine over
// the connector protocol (docs/protocol.md), as separate processes. Guide: docs/sdk-typescript.md.
export { connectSource, type CommitListener, type SendOptions, type SourceClient, type SourceOptions, type StreamResume } from "./source.ts";
export { runSource, type RunSourceOptions, type SourceProducer } from "./run-source.ts";
export { runSink, type OutputBatch, type SinkHandler, type SinkOptions, type SinkRecord } from "./sink.ts";
export { runPartitioner, type PartitionerOptions, type PartitionFunction } from "./partitioner.ts";
export { createIdWindow, type IdWindow } from "./id-window.ts";
export { ConnectorError, GrpcStatus, isConnectorError, ProtocolErrorCode } from "./errors.ts";
export { PROTOCOL_VERSION, type ConnectOptions } from "./session.ts";
export type { BackoffOptions } from "../util/backoff.ts";
export type { Payload, Sink, SinkContext, Source, SourceBatch, SourceContext } from "../connector/types.ts";
