/**
 * `tcp://HOST:PORT` (newline framing) and `tcp+lp://HOST:PORT` (4-byte big-endian length-prefixed
 * framing), with an optional `?maxFrameBytes=N`.
 */
import type { ConnectorScheme } from "../scheme.ts";
import { badUri, parseAuthority, parseIntegerQuery } from "../uri.ts";
import { MAX_FRAME_BYTES_LIMIT } from "./framing.ts";
import type { Framing } from "./framing.ts";
import { tcpSink } from "./tcp-sink.ts";
import { tcpSource } from "./tcp-source.ts";

export interface TcpUri {
  scheme: "tcp" | "tcp+lp";
  framing: Framing;
  host: string;
  /** 0 asks a listening source for any free port. */
  port: number;
  maxFrameBytes?: number;
}

export const tcpScheme: ConnectorScheme<TcpUri> = {
  schemes: ["tcp", "tcp+lp"],
  forms: ["tcp://HOST:PORT", "tcp+lp://HOST:PORT"],
  description: "TCP, newline-delimited UTF-8 lines (tcp) or 4-byte big-endian length-prefixed frames (tcp+lp)",
  asSource: "the engine **listens**; any number of clients send frames",
  asSink: "the engine **connects out** and writes frames; it reconnects with backoff, buffering a bounded amount meanwhile",
  parse(uri, scheme, rest) {
    const { host, port, query } = parseAuthority(uri, scheme, rest, false);
    const { maxFrameBytes } = parseIntegerQuery(uri, query, { maxFrameBytes: MAX_FRAME_BYTES_LIMIT });
    const framing: Framing = scheme === "tcp" ? "newline" : "length-prefixed";
    const parsed: TcpUri = { scheme: scheme === "tcp" ? "tcp" : "tcp+lp", framing, host, port };
    return maxFrameBytes === undefined ? parsed : { ...parsed, maxFrameBytes };
  },
  source: (parsed, _uri, options) =>
    tcpSource({
      host: parsed.host,
      port: parsed.port,
      framing: parsed.framing,
      maxFrameBytes: parsed.maxFrameBytes ?? options.maxFrameBytes,
    }),
  sink(parsed, uri, options) {
    if (parsed.port === 0) {
      throw badUri(uri, `port 0 only means "any free port" for a listening source; a sink needs the peer's port`);
    }
    return tcpSink({
      host: parsed.host,
      port: parsed.port,
      framing: parsed.framing,
      maxFrameBytes: parsed.maxFrameBytes ?? options.maxFrameBytes,
    });
  },
};
