/** Parses a server's --listen HOST:PORT (IPv6 hosts in brackets: [::1]:7700). */
import { ErrorCode, KeywayError } from "../errors.ts";
import { formatHostPort, parseHostPort, type HostPort } from "../util/host-port.ts";

/** port 0: any free port. */
export type ListenAddress = HostPort;

export function parseListenAddress(text: string, flag = "--listen"): ListenAddress {
  const address = parseHostPort(text);
  if ("error" in address) throw new KeywayError(ErrorCode.USAGE, `${flag} expects HOST:PORT (port 0 to 65535), got "${text}": ${address.error}`);
  return address;
}

/**
 * Why a server could not listen on `requested` (for `purpose`), from the bind error's message: a
 * host that does not resolve or is not this machine's is bad usage (USAGE), anything else a port
 * that cannot be had (PORT_IN_USE). One error for every server the engine runs.
 */
export function listenError(requested: string, purpose: string, message: string): KeywayError {
  if (/Name resolution failed|ENOTFOUND|EADDRNOTAVAIL/.test(message)) {
    return new KeywayError(ErrorCode.USAGE, `cannot listen on ${requested} for ${purpose}: the host is not an address of this machine (${message})`);
  }
  const reason = message.includes("EADDRINUSE") ? "address in use" : message;
  return new KeywayError(ErrorCode.PORT_IN_USE, `cannot listen on ${requested} for ${purpose}: ${reason}`);
}

export const formatListenAddress = formatHostPort;
