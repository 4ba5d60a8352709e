/**
 * `keyway/connectors`: the bundled connectors (file, TCP, WebSocket), the registry that turns a connector URI
 * into one, and the URI parser. Each connector implements the same Source/Sink interface the gRPC
 * SDK does.
 */
export { fileSink, type FileSinkOptions } from "./file/file-sink.ts";
export { openExactlyOnceFileSink, type ExactlyOnceFileSink } from "./file/exactly-once-file-sink.ts";
export { fileSource, type FileSourceOptions } from "./file/file-source.ts";
export { directorySource, filesOf, isDirectory } from "./file/directory-source.ts";
export type { FileUri } from "./file/scheme.ts";
export type { Framing } from "./tcp/framing.ts";
export { tcpSink, type TcpSinkOptions } from "./tcp/tcp-sink.ts";
export { tcpSource, type TcpSource, type TcpSourceOptions } from "./tcp/tcp-source.ts";
export type { TcpUri } from "./tcp/scheme.ts";
export { wsSink, CLOSE_FELL_BEHIND, type WsSink, type WsSinkOptions } from "./ws/ws-sink.ts";
export { wsSource, type WsSource, type WsSourceOptions } from "./ws/ws-source.ts";
export type { WsUri } from "./ws/scheme.ts";
export { CONNECTOR_SCHEMES, connectorForms, parseConnectorUri, sinkFromUri, sourceFromUri, type ConnectorUri } from "./registry.ts";
export type { ConnectorOptions, ConnectorScheme } from "./scheme.ts";
