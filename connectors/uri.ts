/**
 * Parsing pieces shared by the network schemes (tcp, ws): the `//HOST:PORT[/PATH][?QUERY]` part and
 * integer query parameters, each failure a BAD_URI naming the URI. IPv6 hosts go in brackets:
 * `tcp://[::1]:9000`.
 */
import { ErrorCode, KeywayError } from "../src/errors.ts";
import { parseHostPort } from "../src/util/host-port.ts";

export function badUri(uri: string, why: string): KeywayError {
  return new KeywayError(ErrorCode.BAD_URI, `malformed URI "${uri}": ${why}`);
}

export interface Authority {
  host: string;
  /** 0 asks a listening connector for any free port. */
  port: number;
  /** The path after HOST:PORT, "/" when there is none (always "/" without `withPath`). */
  path: string;
  query?: string;
}

/** `rest` is what follows "SCHEME:"; without `withPath`, a path other than "/" is refused. */
export function parseAuthority(uri: string, scheme: string, rest: string, withPath: boolean): Authority {
  const form = withPath ? `${scheme}://HOST:PORT/PATH` : `${scheme}://HOST:PORT`;
  if (!rest.startsWith("//")) throw badUri(uri, `expected ${form}`);
  let authority = rest.slice(2);
  let query: string | undefined;
  const queryStart = authority.indexOf("?");
  if (queryStart >= 0) {
    query = authority.slice(queryStart + 1);
    authority = authority.slice(0, queryStart);
  }
  if (authority.includes("#")) throw badUri(uri, "unexpected fragment");
  const slash = authority.indexOf("/");
  const path = slash < 0 ? "/" : authority.slice(slash);
  if (slash >= 0) authority = authority.slice(0, slash);
  if (!withPath && path !== "/") throw badUri(uri, "unexpected path after HOST:PORT");
  if (authority.includes("@")) throw badUri(uri, "user credentials are not supported");

  const address = parseHostPort(authority);
  if ("error" in address) throw badUri(uri, address.error);
  return { host: address.host, port: address.port, path, ...(query === undefined ? {} : { query }) };
}

/**
 * The query's parameters, each a whole number in [1, max] under a known key, each key at most once.
 * Keys absent from the query are absent from the result.
 */
export function parseIntegerQuery<K extends string>(uri: string, query: string | undefined, limits: Record<K, number>): Partial<Record<K, number>> {
  const values: Partial<Record<K, number>> = {};
  if (query === undefined) return values;
  const known = Object.keys(limits) as K[];
  for (const [key, value] of new URLSearchParams(query)) {
    if (!(known as string[]).includes(key)) {
      throw badUri(uri, `unknown query parameter "${key}" (known: ${known.join(", ")})`);
    }
    const name = key as K;
    if (values[name] !== undefined) throw badUri(uri, `query parameter "${key}" given twice`);
    const number = /^\d+$/.test(value) ? Number(value) : NaN;
    if (!(number >= 1 && number <= limits[name])) {
      throw badUri(uri, `${key} must be an integer from 1 to ${limits[name]}, got "${value}"`);
    }
    values[name] = number;
  }
  return values;
}
