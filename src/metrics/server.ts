/**
 * `--metrics-listen HOST:PORT`: serves the process's registry in the Prometheus text format on
 * GET /metrics (every other path is 404), and the plain functions that point the registry at an
 * engine alone or at a cluster worker.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import type { ClusterWorker } from "../cluster/worker.ts";
import type { Logger } from "../log/logger.ts";
import type { ConnectorServer } from "../protocol/server.ts";
import { formatListenAddress, listenFailure, parseListenAddress } from "../rpc/listen-address.ts";
import type { Engine } from "../runtime/engine.ts";
import { createMetrics, type Metrics } from "./registry.ts";

export interface ServedMetrics extends Metrics {
  /** The bound HOST:PORT (the real port when asked for port 0). */
  readonly address: string;
  /** Serves an engine alone: it owns every slot. Closes the server when the engine is done. */
  bindEngine(engine: Engine, server: ConnectorServer | undefined, slotCount: number): void;
  /** Serves a cluster worker: its slots are what the latest map gives it. Closes the server when its engine is done. */
  bindWorker(worker: ClusterWorker): void;
  close(): Promise<void>;
}

/** Undefined without --metrics-listen. A port in use is PORT_IN_USE, a bad address USAGE, as for --listen. */
export async function startMetrics(listen: string | undefined, log: Logger): Promise<ServedMetrics | undefined> {
  if (listen === undefined) return undefined;
  const at = parseListenAddress(listen, "--metrics-listen");
  const metrics = createMetrics();
  const server = createServer((req, res) => {
    const path = (req.url ?? "").split("?")[0];
    if (path !== "/metrics" || (req.method !== "GET" && req.method !== "HEAD")) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found: metrics are at /metrics\n");
      return;
    }
    metrics.registry.metrics().then(
      (text) => res.writeHead(200, { "content-type": metrics.registry.contentType }).end(req.method === "HEAD" ? undefined : text),
      (err: unknown) => res.writeHead(500, { "content-type": "text/plain" }).end(`${(err as Error).message}\n`),
    );
  });
  // A scraper must never keep a finished run's process alive, whichever way the run ended.
  server.on("connection", (socket) => socket.unref());
  const requested = formatListenAddress(at);
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err) => reject(listenFailure(requested, "metrics", err.message)));
    server.listen(at.port, at.host, () => resolve());
  });
  server.unref();
  const address = formatListenAddress({ host: at.host, port: (server.address() as AddressInfo).port });
  log.info({ address }, "serving metrics");

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
    return closing;
  };
  const closeWith = (engine: Engine): void => void engine.done.then(close, close);
  return {
    ...metrics,
    address,
    bindEngine(engine, connectors, slotCount) {
      metrics.bind({
        engine,
        slots: () => ({ owned: slotCount, backups: 0 }),
        ...(connectors === undefined ? {} : { sessions: () => connectors.sessionCounts(), credits: () => connectors.credits() }),
      });
      closeWith(engine);
    },
    bindWorker(worker) {
      metrics.bind({
        engine: worker.engine,
        slots: () => slotsOf(worker),
        sessions: () => worker.edge()?.sessionCounts(),
        credits: () => worker.edge()?.credits(),
        backlog: () => worker.backlog(),
      });
      closeWith(worker.engine);
    },
    close,
  };
}

function slotsOf(worker: ClusterWorker): { owned: number; backups: number } {
  const map = worker.map();
  const self = map.workers.indexOf(worker.id());
  let owned = 0;
  let backups = 0;
  if (self < 0) return { owned, backups };
  for (const owner of map.owners) if (owner === self) owned++;
  for (const backup of map.backups) if (backup === self) backups++;
  return { owned, backups };
}
