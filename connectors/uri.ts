/**
 * Connector URIs, as bound on the command line, parsed into plain descriptors:
 * - `file:PATH` (relative or absolute, taken literally) or `file:///abs/path` (a file URL,
 *   percent-decoded);
 * - `tcp://HOST:PORT`: newline framing;
 * - `tcp+lp://HOST:PORT`: 4-byte big-endian length-prefixed framing;
 * tcp URIs take an optional `?maxFrameBytes=N`. IPv6 hosts go in brackets: `tcp://[::1]:9000`.
 */
import { fileURLToPath } from "node:url";
import { ErrorCode, KeywayError } from "../src/errors.ts";
import { parseHostPort } from "../src/util/host-port.ts";
import { MAX_FRAME_BYTES_LIMIT } from "./tcp/framing.ts";
import type { Framing } from "./tcp/framing.ts";

export interface FileUri {
  scheme: "file";
  path: string;
}

export interface TcpUri {
  scheme: "tcp" | "tcp+lp";
  framing: Framing;
  host: string;
  /** 0 asks a listening source for any free port. */
  port: number;
  maxFrameBytes?: number;
}

export type ConnectorUri = FileUri | TcpUri;

const KNOWN_FORMS = "file:PATH, tcp://HOST:PORT, tcp+lp://HOST:PORT";
const TCP_QUERY_KEYS = ["maxFrameBytes"];

export function parseConnectorUri(uri: string): ConnectorUri {
  const match = /^([A-Za-z][A-Za-z0-9+.-]*):(.*)$/s.exec(uri);
  if (match === null) throw badUri(uri, `no scheme; expected one of ${KNOWN_FORMS}`);
  const scheme = match[1]!.toLowerCase();
  const rest = match[2]!;
  switch (scheme) {
    case "file":
      return { scheme, path: parseFilePath(uri, rest) };
    case "tcp":
      return { scheme, framing: "newline", ...parseTcpAddress(uri, scheme, rest) };
    case "tcp+lp":
      return { scheme, framing: "length-prefixed", ...parseTcpAddress(uri, scheme, rest) };
    default:
      throw badUri(uri, `unknown scheme "${scheme}"; known schemes: file, tcp, tcp+lp`);
  }
}

function parseFilePath(uri: string, rest: string): string {
  if (!rest.startsWith("//")) {
    if (rest === "") throw badUri(uri, "empty path");
    return rest;
  }
  if (rest === "//" || rest === "///") throw badUri(uri, "empty path");
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw badUri(uri, "not a valid file URL; use file:///absolute/path or file:PATH");
  }
  if (url.search !== "" || url.hash !== "") throw badUri(uri, "a file URL takes no query or fragment");
  if (url.host !== "" && url.host !== "localhost") {
    throw badUri(uri, `a file URL names no host (got "${url.host}"); use file:///absolute/path`);
  }
  try {
    return fileURLToPath(url);
  } catch (err) {
    throw badUri(uri, err instanceof Error ? err.message : String(err));
  }
}

function parseTcpAddress(
  uri: string,
  scheme: string,
  rest: string,
): { host: string; port: number; maxFrameBytes?: number } {
  if (!rest.startsWith("//")) throw badUri(uri, `expected ${scheme}://HOST:PORT`);
  let authority = rest.slice(2);
  let query: string | undefined;
  const queryStart = authority.indexOf("?");
  if (queryStart >= 0) {
    query = authority.slice(queryStart + 1);
    authority = authority.slice(0, queryStart);
  }
  if (authority.includes("#")) throw badUri(uri, "unexpected fragment");
  if (authority.endsWith("/")) authority = authority.slice(0, -1);
  if (authority.includes("/")) throw badUri(uri, "unexpected path after HOST:PORT");
  if (authority.includes("@")) throw badUri(uri, "user credentials are not supported");

  const address = parseHostPort(authority);
  if ("error" in address) throw badUri(uri, address.error);
  const { host, port } = address;

  const maxFrameBytes = query === undefined ? undefined : parseTcpQuery(uri, query);
  return maxFrameBytes === undefined ? { host, port } : { host, port, maxFrameBytes };
}

function parseTcpQuery(uri: string, query: string): number | undefined {
  let maxFrameBytes: number | undefined;
  for (const [key, value] of new URLSearchParams(query)) {
    if (!TCP_QUERY_KEYS.includes(key)) {
      throw badUri(uri, `unknown query parameter "${key}" (known: ${TCP_QUERY_KEYS.join(", ")})`);
    }
    if (maxFrameBytes !== undefined) throw badUri(uri, `query parameter "${key}" given twice`);
    const bytes = /^\d+$/.test(value) ? Number(value) : NaN;
    if (!(bytes >= 1 && bytes <= MAX_FRAME_BYTES_LIMIT)) {
      throw badUri(uri, `maxFrameBytes must be an integer from 1 to ${MAX_FRAME_BYTES_LIMIT}, got "${value}"`);
    }
    maxFrameBytes = bytes;
  }
  return maxFrameBytes;
}

function badUri(uri: string, why: string): KeywayError {
  return new KeywayError(ErrorCode.BAD_URI, `malformed URI "${uri}": ${why}`);
}
