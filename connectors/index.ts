/**
 * The bundled connectors (file, TCP), and how a connector URI bound on the command line becomes
 * one. Each implements the same Source/Sink interface the gRPC SDK does.
 */
import type { Sink, Source } from "../src/connector/types.ts";
import { ErrorCode, KeywayError } from "../src/errors.ts";
import { directorySource, isDirectory } from "./file/directory-source.ts";
import { fileSink } from "./file/file-sink.ts";
import { fileSource } from "./file/file-source.ts";
import { tcpSink } from "./tcp/tcp-sink.ts";
import { tcpSource } from "./tcp/tcp-source.ts";
import { parseConnectorUri } from "./uri.ts";

export { fileSink, type FileSinkOptions } from "./file/file-sink.ts";
export { fileSource, type FileSourceOptions } from "./file/file-source.ts";
export { directorySource, filesOf, isDirectory } from "./file/directory-source.ts";
export type { Framing } from "./tcp/framing.ts";
export { tcpSink, type TcpSinkOptions } from "./tcp/tcp-sink.ts";
export { tcpSource, type TcpSource, type TcpSourceOptions } from "./tcp/tcp-source.ts";
export { parseConnectorUri, type ConnectorUri, type FileUri, type TcpUri } from "./uri.ts";

export interface ConnectorOptions {
  /**
   * The frame limit (for a file source, the line limit) when the URI sets none; a tcp URI's
   * `?maxFrameBytes=` wins, being the more specific.
   */
  maxFrameBytes?: number;
}

export function sourceFromUri(uri: string, options: ConnectorOptions = {}): Source {
  const parsed = parseConnectorUri(uri);
  if (parsed.scheme === "file") {
    const fileOptions = { maxLineBytes: options.maxFrameBytes };
    return isDirectory(parsed.path) ? directorySource(parsed.path, fileOptions) : fileSource(parsed.path, fileOptions);
  }
  return tcpSource({
    host: parsed.host,
    port: parsed.port,
    framing: parsed.framing,
    maxFrameBytes: parsed.maxFrameBytes ?? options.maxFrameBytes,
  });
}

export function sinkFromUri(uri: string, options: ConnectorOptions = {}): Sink {
  const parsed = parseConnectorUri(uri);
  if (parsed.scheme === "file") return fileSink(parsed.path);
  if (parsed.port === 0) {
    throw new KeywayError(
      ErrorCode.BAD_URI,
      `malformed URI "${uri}": port 0 only means "any free port" for a listening source; a sink needs the peer's port`,
    );
  }
  return tcpSink({
    host: parsed.host,
    port: parsed.port,
    framing: parsed.framing,
    maxFrameBytes: parsed.maxFrameBytes ?? options.maxFrameBytes,
  });
}
