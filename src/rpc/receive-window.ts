/**
 * The HTTP/2 window a grpc-js server receives on. grpc-js lets a client widen the window it
 * receives on (`grpc-node.flow_control_window`) but gives a server no option: its streams keep
 * HTTP/2's 64 KiB. On a link whose data flows client -> server (the exchange), the sender then
 * stalls every 64 KiB until the receiver's event loop has read it, and a worker busy for
 * milliseconds with its own batch holds its peers to a trickle (both workers sat ~40% idle).
 */
import type { Server } from "@grpc/grpc-js";
import type { Http2Server, ServerHttp2Session } from "node:http2";

/** Per stream; the connection's window is twice it. Above the exchange's byte window (link-state.ts), so that window, not HTTP/2's, is what bounds a link. */
export const RECEIVE_WINDOW_BYTES = 64 * 1024 * 1024;

/**
 * Asks every connection `server` accepts from now on for `bytes` of window per stream. Call it
 * once bound (grpc-js makes its http2 servers in bindAsync). It reaches into grpc-js's
 * `http2Servers`; a grpc-js without it keeps the default window: slower, still correct.
 */
export function widenReceiveWindow(server: Server, bytes = RECEIVE_WINDOW_BYTES): void {
  const http2Servers = (server as unknown as { http2Servers?: unknown }).http2Servers;
  if (!(http2Servers instanceof Map)) return;
  for (const http2Server of (http2Servers as Map<Http2Server, unknown>).keys()) {
    http2Server.on("session", (session: ServerHttp2Session) => {
      session.settings({ initialWindowSize: bytes });
      session.setLocalWindowSize(bytes * 2);
    });
  }
}
