/**
 * The table of URI schemes: one module per connector family, each declaring its schemes, forms,
 * parser and builders (connectors/scheme.ts). Everything that knows the list of schemes reads it
 * from here: the URI parser, sourceFromUri/sinkFromUri, the "known schemes" message, the CLI's
 * help and the README's table (scripts/connector-table.ts). A new scheme is its module plus its
 * line below.
 */
import type { Sink, Source } from "../src/connector/types.ts";
import { fileScheme } from "./file/scheme.ts";
import type { ConnectorOptions, ConnectorScheme } from "./scheme.ts";
import { tcpScheme } from "./tcp/scheme.ts";
import { badUri } from "./uri.ts";
import { wsScheme } from "./ws/scheme.ts";

export const CONNECTOR_SCHEMES = [fileScheme, tcpScheme, wsScheme] as const;

/** Any parsed connector URI: the union of what the schemes' parsers return. */
export type ConnectorUri = ReturnType<(typeof CONNECTOR_SCHEMES)[number]["parse"]>;

/** Every URI form, in table order, e.g. `file:PATH`. */
export function connectorForms(): string[] {
  return CONNECTOR_SCHEMES.flatMap((s) => s.forms);
}

export function parseConnectorUri(uri: string): ConnectorUri {
  return resolve(uri).parsed;
}

export function sourceFromUri(uri: string, options: ConnectorOptions = {}): Source {
  const { module, parsed } = resolve(uri);
  return module.source(parsed, uri, options);
}

export function sinkFromUri(uri: string, options: ConnectorOptions = {}): Sink {
  const { module, parsed } = resolve(uri);
  return module.sink(parsed, uri, options);
}

/**
 * The table typed loosely on purpose: the module that parsed a URI is the one that builds from it,
 * which the table's element types cannot express.
 */
const TABLE = CONNECTOR_SCHEMES as readonly unknown[] as readonly ConnectorScheme<ConnectorUri>[];

function resolve(uri: string): { module: ConnectorScheme<ConnectorUri>; parsed: ConnectorUri } {
  const match = /^([A-Za-z][A-Za-z0-9+.-]*):(.*)$/s.exec(uri);
  if (match === null) throw badUri(uri, `no scheme; expected one of ${connectorForms().join(", ")}`);
  const scheme = match[1]!.toLowerCase();
  const module = TABLE.find((s) => s.schemes.includes(scheme));
  if (module === undefined) {
    const known = TABLE.flatMap((s) => s.schemes).join(", ");
    throw badUri(uri, `unknown scheme "${scheme}"; known schemes: ${known}`);
  }
  return { module, parsed: module.parse(uri, scheme, match[2]!) };
}
