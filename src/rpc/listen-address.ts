/** Parses the connector server's --listen HOST:PORT (IPv6 hosts in brackets: [::1]:7700). */
import { ErrorCode, KeywayError } from "../errors.ts";

export interface ListenAddress {
  host: string;
  /** 0: any free port. */
  port: number;
}

export function parseListenAddress(text: string): ListenAddress {
  const match = /^(\[[0-9A-Fa-f:.]+\]|[^:[\]\s]+):(\d{1,5})$/.exec(text);
  const port = match === null ? NaN : Number(match[2]);
  if (match === null || port > 65535) {
    throw new KeywayError(ErrorCode.USAGE, `--listen expects HOST:PORT (port 0 to 65535), got "${text}"`);
  }
  return { host: match[1]!, port };
}

export function formatListenAddress({ host, port }: ListenAddress): string {
  return `${host}:${port}`;
}
