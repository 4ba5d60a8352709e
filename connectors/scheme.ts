/**
 * What one URI scheme module declares for the registry (connectors/registry.ts): the schemes it
 * answers to, its URI forms and what it does (for the CLI's help, the "unknown scheme" message and
 * the README's table, all generated from the registry), how it parses a URI, and how it builds its
 * source and sink.
 */
import type { Sink, Source } from "../src/connector/types.ts";

/** What the command line passes to every connector a URI builds. */
export interface ConnectorOptions {
  /**
   * The frame limit (for a file source, the line limit) when the URI sets none; a URI's
   * `?maxFrameBytes=` wins, being the more specific.
   */
  maxFrameBytes?: number;
  /** The engine's certificate and key (--tls-cert, --tls-key), for schemes that listen over TLS (wss). */
  tls?: { cert: Buffer | string; key: Buffer | string };
}

export interface ConnectorScheme<Parsed extends { scheme: string }> {
  /** Lower-case scheme names, as matched before the ":". */
  readonly schemes: readonly string[];
  /** The URI forms a user types, e.g. `tcp://HOST:PORT`, in the order of `schemes`. */
  readonly forms: readonly string[];
  /** One line: what the connector carries. */
  readonly description: string;
  /** One line each for the README's table: what the URI does as a source and as a sink. */
  readonly asSource: string;
  readonly asSink: string;
  /** `scheme` is lower-cased, `rest` is everything after the ":". Throws BAD_URI. */
  parse(uri: string, scheme: string, rest: string): Parsed;
  source(parsed: Parsed, uri: string, options: ConnectorOptions): Source;
  sink(parsed: Parsed, uri: string, options: ConnectorOptions): Sink;
}
