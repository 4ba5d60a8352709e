/**
 * `ws://HOST:PORT/PATH` and `wss://HOST:PORT/PATH` (PATH "/" when absent). A source takes
 * `?maxFrameBytes=N`, a sink `?maxLagMessages=N`. wss serves TLS with the engine's --tls-cert and
 * --tls-key (ConnectorOptions.tls).
 */
import { ErrorCode, KeywayError } from "../../src/errors.ts";
import type { ConnectorOptions, ConnectorScheme } from "../scheme.ts";
import { MAX_FRAME_BYTES_LIMIT } from "../tcp/framing.ts";
import { badUri, parseAuthority, parseIntegerQuery } from "../uri.ts";
import { wsSink } from "./ws-sink.ts";
import { wsSource } from "./ws-source.ts";

export interface WsUri {
  scheme: "ws" | "wss";
  host: string;
  /** 0 picks a free port. */
  port: number;
  path: string;
  maxFrameBytes?: number;
  maxLagMessages?: number;
}

const MAX_LAG_MESSAGES_LIMIT = 1_000_000_000;

export const wsScheme: ConnectorScheme<WsUri> = {
  schemes: ["ws", "wss"],
  forms: ["ws://HOST:PORT/PATH", "wss://HOST:PORT/PATH"],
  description: "WebSocket messages; wss over TLS with the engine's `--tls-cert` and `--tls-key`",
  asSource: "the engine **listens** on PATH; any number of clients send messages, each a record (text or binary); at most once",
  asSink: "the engine **listens** on PATH: a live feed, every output goes to each client connected then; a client that falls behind is dropped (close 4000)",
  parse(uri, scheme, rest) {
    const { host, port, path, query } = parseAuthority(uri, scheme, rest, true);
    const limits = parseIntegerQuery(uri, query, { maxFrameBytes: MAX_FRAME_BYTES_LIMIT, maxLagMessages: MAX_LAG_MESSAGES_LIMIT });
    return { scheme: scheme === "ws" ? "ws" : "wss", host, port, path, ...limits };
  },
  source(parsed, uri, options) {
    if (parsed.maxLagMessages !== undefined) throw badUri(uri, "maxLagMessages is for a ws sink; a source takes maxFrameBytes");
    return wsSource({
      host: parsed.host,
      port: parsed.port,
      path: parsed.path,
      maxFrameBytes: parsed.maxFrameBytes ?? options.maxFrameBytes,
      ...tlsFor(parsed, uri, options),
    });
  },
  sink(parsed, uri, options) {
    if (parsed.maxFrameBytes !== undefined) throw badUri(uri, "maxFrameBytes is for a ws source; a sink takes maxLagMessages");
    return wsSink({
      host: parsed.host,
      port: parsed.port,
      path: parsed.path,
      ...(parsed.maxLagMessages === undefined ? {} : { maxLagMessages: parsed.maxLagMessages }),
      ...tlsFor(parsed, uri, options),
    });
  },
};

function tlsFor(parsed: WsUri, uri: string, options: ConnectorOptions): { tls?: NonNullable<ConnectorOptions["tls"]> } {
  if (parsed.scheme === "ws") return {};
  if (options.tls === undefined) throw new KeywayError(ErrorCode.USAGE, `${uri}: wss:// serves TLS with the engine's certificate: give --tls-cert and --tls-key`);
  return { tls: options.tls };
}
