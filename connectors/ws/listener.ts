/**
 * The listening half shared by the ws source and sink: an HTTP (or, with TLS, HTTPS) server on
 * HOST:PORT that upgrades requests for exactly one path to WebSocket connections. Other paths get
 * HTTP 404, so a client with a wrong URL hears why instead of a bare close; a plain HTTP request
 * for the path gets 426. ws's own `path` option would answer 400 to both.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { Duplex } from "node:stream";
import type { WebSocket } from "ws";
import { ErrorCode, KeywayError } from "../../src/errors.ts";
import type { Logger } from "../../src/log/logger.ts";

export interface WsListenOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  path: string;
  /** Over TLS (wss://) with this certificate and key; plaintext without. */
  tls?: { cert: Buffer | string; key: Buffer | string };
  /** Messages past this many bytes close their connection with 1009 (ws's maxPayload). */
  maxPayload: number;
  /** Connections beyond this are refused: each may hold a message of up to maxPayload. */
  connectionsMax: number;
}

export interface WsListener {
  address(): { host: string; port: number };
  /** Closes the listener and destroys what is still connected. */
  close(): Promise<void>;
}

/** `who` names the connector in messages, e.g. `source "lines"`. */
export async function listenWs(
  opts: WsListenOptions,
  who: string,
  log: Logger,
  onConnection: (ws: WebSocket, remote: string) => void,
): Promise<WsListener> {
  // Loaded here, not at the top: the CLI loads every connector module, most runs use none of ws.
  const { WebSocketServer } = await import("ws");
  const wss = new WebSocketServer({ noServer: true, maxPayload: opts.maxPayload, perMessageDeflate: false, clientTracking: false });
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    const ours = pathOf(req) === opts.path;
    res.writeHead(ours ? 426 : 404, { "content-type": "text/plain" });
    res.end(ours ? "a WebSocket endpoint: connect with a WebSocket client\n" : "not found\n");
  };
  const server: Server = opts.tls === undefined ? createHttpServer(onRequest) : createHttpsServer({ cert: opts.tls.cert, key: opts.tls.key }, onRequest);
  server.maxConnections = opts.connectionsMax;
  server.on("drop", (dropped) =>
    log.warn({ remote: `${dropped?.remoteAddress}:${dropped?.remotePort}` }, `ws ${who} refused a connection: already at connectionsMax ${opts.connectionsMax}`),
  );
  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (pathOf(req) !== opts.path) {
      socket.end("HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
      return;
    }
    const remote = `${req.socket.remoteAddress}:${req.socket.remotePort}`;
    wss.handleUpgrade(req, socket, head, (ws) => onConnection(ws, remote));
  });
  // A TLS handshake that fails (a client that does not trust the certificate) concerns that client only.
  server.on("tlsClientError", (err, socket) => log.debug({ remote: `${socket.remoteAddress}:${socket.remotePort}`, err: err.message }, `ws ${who}: TLS handshake failed`));

  const { host, port } = opts;
  await new Promise<void>((resolve, reject) => {
    const onListenError = (err: NodeJS.ErrnoException) => {
      const why = err.code === "EADDRINUSE" ? "address in use" : err.message;
      reject(new KeywayError(ErrorCode.PORT_IN_USE, `${who}: cannot listen on ${host}:${port}: ${why}`, { cause: err }));
    };
    server.once("error", onListenError);
    server.listen({ host, port }, () => {
      server.off("error", onListenError);
      resolve();
    });
  });
  server.on("error", (err) => log.error({ err }, `ws ${who} listener failed`));

  return {
    address() {
      const bound = server.address();
      if (bound === null || typeof bound === "string") throw new KeywayError(ErrorCode.INTERNAL, `${who}: address() while not listening`);
      return { host: bound.address, port: bound.port };
    },
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}

function pathOf(req: IncomingMessage): string {
  const url = req.url ?? "/";
  const query = url.indexOf("?");
  return query < 0 ? url : url.slice(0, query);
}
