/**
 * HTTP/2 keepalive for both ends of the connector protocol: a peer that does not answer a ping
 * (a stopped process, a host gone without closing its connections) ends the connection and its
 * sessions within a bounded time, instead of holding what they hold for ever.
 */

/** A connector silent to the engine's pings this long loses its sessions (--session-timeout-ms), and an engine silent to a connector's this long ends them from its side. */
export const SESSION_TIMEOUT_MS_DEFAULT = 20_000;

/** gRPC options that end a connection silent for `timeoutMs`: a ping every half, answered within the other half. */
export function keepaliveOptions(timeoutMs: number): Record<string, number> {
  const half = Math.max(1, Math.floor(timeoutMs / 2));
  return { "grpc.keepalive_time_ms": half, "grpc.keepalive_timeout_ms": half, "grpc.keepalive_permit_without_calls": 1 };
}
