/**
 * The dashboard's HTTP server (--http-listen): the page, its script and style, uPlot from
 * node_modules (served here, so the page works without reaching any other host), and a WebSocket
 * at /live that pushes a snapshot to every open page about once a second.
 */
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { WebSocket, WebSocketServer } from "ws";
import type { Logger } from "../log/logger.ts";
import { events } from "../observe/events.ts";
import { formatListenAddress, listenFailure, parseListenAddress } from "../rpc/listen-address.ts";
import type { DashboardSnapshot } from "./snapshot.ts";

export const HTTP_LISTEN_FLAG = "--http-listen";
export const PUSH_INTERVAL_MS = 1000;
/** After an event, the next push comes this soon: a join or a move shows at once, not a second later. */
const EVENT_PUSH_DELAY_MS = 50;

export interface DashboardOptions {
  /** HOST:PORT, port 0 for any. */
  listen: string;
  log: Logger;
}

/** Where snapshots come from: one engine, or a cluster worker. */
export interface SnapshotSource {
  snapshot(): Promise<DashboardSnapshot>;
  close?(): void;
}

export interface Dashboard {
  /** HOST:PORT as bound (the real port when asked for 0). */
  readonly address: string;
  /**
   * What to show, once the engine or the worker runs: the server listens before either starts,
   * so a port in use fails the command before any work begins. Until then pages wait.
   */
  show(source: SnapshotSource): void;
  close(): Promise<void>;
}

interface Asset {
  type: string;
  body: Buffer;
}

/** Read once at start: a missing file fails the start, not a page load hours later. */
function loadAssets(): Map<string, Asset> {
  const page = join(dirname(fileURLToPath(import.meta.url)), "page");
  const require = createRequire(import.meta.url);
  const uplot = (file: string) => require.resolve(`uplot/dist/${file}`);
  const files: Array<[string, string, string]> = [
    ["/", join(page, "index.html"), "text/html; charset=utf-8"],
    ["/app.js", join(page, "app.js"), "text/javascript; charset=utf-8"],
    ["/style.css", join(page, "style.css"), "text/css; charset=utf-8"],
    ["/uplot/uPlot.iife.min.js", uplot("uPlot.iife.min.js"), "text/javascript; charset=utf-8"],
    ["/uplot/uPlot.min.css", uplot("uPlot.min.css"), "text/css; charset=utf-8"],
  ];
  return new Map(files.map(([path, file, type]) => [path, { type, body: readFileSync(file) }]));
}

function listen(server: Server, text: string): Promise<string> {
  const address = parseListenAddress(text, HTTP_LISTEN_FLAG);
  const requested = formatListenAddress(address);
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(listenFailure(requested, "the dashboard", err.message));
    server.once("error", onError);
    server.listen(address.port, address.host, () => {
      server.off("error", onError);
      const { port } = server.address() as { port: number };
      resolve(formatListenAddress({ host: address.host, port }));
    });
  });
}

export async function startDashboard(options: DashboardOptions): Promise<Dashboard> {
  const { log } = options;
  const assets = loadAssets();
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://localhost").pathname;
    const asset = req.method === "GET" || req.method === "HEAD" ? assets.get(path === "/index.html" ? "/" : path) : undefined;
    if (asset === undefined) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
      return;
    }
    res.writeHead(200, { "content-type": asset.type, "content-length": asset.body.length, "cache-control": "no-cache" });
    res.end(req.method === "HEAD" ? undefined : asset.body);
  });
  const address = await listen(server, options.listen);
  // Attached once bound: ws re-emits the server's errors, and a failed listen is reported above.
  const wss = new WebSocketServer({ server, path: "/live" });

  let source: SnapshotSource | undefined;
  // One snapshot per tick for every open page, and none while no page is open (a cluster's costs a Status call).
  let pushing = false;
  const push = async (): Promise<void> => {
    if (pushing || source === undefined || wss.clients.size === 0) return;
    pushing = true;
    try {
      const snapshot = await source.snapshot();
      const text = JSON.stringify(snapshot);
      for (const client of wss.clients) if (client.readyState === WebSocket.OPEN) client.send(text);
    } catch (err) {
      log.debug({ err: (err as Error).message }, "dashboard snapshot failed");
    } finally {
      pushing = false;
    }
  };
  const timer = setInterval(() => void push(), PUSH_INTERVAL_MS);
  let soon: NodeJS.Timeout | undefined;
  const unsubscribe = events.subscribe((event) => {
    // Checkpoints come every second anyway: pushing early for them would only double the pushes.
    if (event.kind === "checkpoint") return;
    soon ??= setTimeout(() => {
      soon = undefined;
      void push();
    }, EVENT_PUSH_DELAY_MS);
  });
  wss.on("connection", () => void push());
  log.info({ address }, `dashboard on http://${address}/`);

  let closing: Promise<void> | undefined;
  return {
    address,
    show(next) {
      source = next;
      void push();
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        clearInterval(timer);
        clearTimeout(soon);
        unsubscribe();
        source?.close?.();
        // Pages see their socket drop (and show "disconnected") rather than wait on a silent one.
        for (const client of wss.clients) client.terminate();
        wss.close();
        server.closeAllConnections();
        server.close(() => resolve());
      });
      return closing;
    },
  };
}
