/** Parses a server's --listen HOST:PORT (IPv6 hosts in brackets: [::1]:7700). */
import { ErrorCode, KeywayError } from "../errors.ts";
import { formatHostPort, parseHostPort, type HostPort } from "../util/host-port.ts";

/** port 0: any free port. */
export type ListenAddress = HostPort;

export function parseListenAddress(text: string): ListenAddress {
  const address = parseHostPort(text);
  if ("error" in address) throw new KeywayError(ErrorCode.USAGE, `--listen expects HOST:PORT (port 0 to 65535), got "${text}": ${address.error}`);
  return address;
}

export const formatListenAddress = formatHostPort;
