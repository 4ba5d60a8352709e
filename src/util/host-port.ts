/**
 * The one HOST:PORT parser: listen addresses, engine addresses, tcp:// URIs and etcd endpoints all
 * go through it, each caller turning a refusal into its own typed error. An IPv6 host goes in
 * brackets ([::1]:7700); the host returned has none.
 */

export interface HostPort {
  host: string;
  port: number;
}

/** The address, or why it is not one. Port 0 passes; callers that cannot use it say so. */
export function parseHostPort(text: string): HostPort | { error: string } {
  let host: string;
  let portPart: string;
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    if (close < 0) return { error: "unclosed '[' in IPv6 host" };
    host = text.slice(1, close);
    portPart = text.slice(close + 1);
    if (host !== "" && !/^[0-9A-Fa-f:.]+$/.test(host)) return { error: `invalid IPv6 host "${host}"` };
  } else {
    const colon = text.lastIndexOf(":");
    host = colon < 0 ? text : text.slice(0, colon);
    portPart = colon < 0 ? "" : text.slice(colon);
    if (host.includes(":")) return { error: "an IPv6 host must be in brackets, e.g. [::1]:9000" };
    if (host !== "" && !/^[A-Za-z0-9._-]+$/.test(host)) return { error: `invalid host "${host}"` };
  }
  if (host === "") return { error: "missing host" };
  if (portPart === "" || portPart === ":") return { error: "missing port" };
  if (!portPart.startsWith(":")) return { error: `unexpected "${portPart}" after host` };
  const portText = portPart.slice(1);
  if (!/^\d+$/.test(portText)) return { error: `invalid port "${portText}"` };
  const port = Number(portText);
  if (port > 65535) return { error: `port ${portText} is out of range 0-65535` };
  return { host, port };
}

/** HOST:PORT again, an IPv6 host in brackets. */
export function formatHostPort({ host, port }: HostPort): string {
  return `${host.includes(":") ? `[${host}]` : host}:${port}`;
}
