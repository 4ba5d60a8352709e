/**
 * --http-listen for `keyway run` and `keyway worker`: the CLI's side of the dashboard. Its code
 * (ws, the page, the cluster's Status client) loads only when the flag is given.
 */
import type { AppSpec } from "../app/spec.ts";
import type { ControlClients } from "../cluster/control-rpc.ts";
import type { ClusterWorker } from "../cluster/worker.ts";
import type { Dashboard } from "../dashboard/server.ts";
import type { Logger } from "../log/logger.ts";
import type { ConnectorServer } from "../protocol/index.ts";
import type { SessionCounts } from "../protocol/server.ts";
import type { Engine } from "../runtime/engine.ts";

/** --http-listen: the dashboard listens before anything starts, so a port in use is the first error. Loaded only when asked for. */
export async function startDashboardFor(listen: string | undefined, log: Logger): Promise<Dashboard | undefined> {
  if (listen === undefined) return undefined;
  const { startDashboard } = await import("../dashboard/server.ts");
  return startDashboard({ listen, log });
}

/** One process: its engine, and its connector server's sessions. */
export async function showEngine(dashboard: Dashboard | undefined, app: AppSpec, engine: Engine, slotCount: number, server: ConnectorServer | undefined): Promise<void> {
  if (dashboard === undefined) return;
  const { processSnapshots } = await import("../dashboard/snapshot.ts");
  dashboard.show(processSnapshots({ app, engine, slotCount, ...(server === undefined ? {} : { connectorAddress: server.address, sessions: () => server.sessionCounts() }) }));
}

/** A cluster worker's dashboard shows the cluster, through the Status call `keyway cluster status` makes. */
export async function showCluster(dashboard: Dashboard | undefined, app: AppSpec, worker: ClusterWorker, clients: () => ControlClients, sessions: () => SessionCounts | undefined): Promise<void> {
  if (dashboard === undefined) return;
  const { clusterSnapshots } = await import("../dashboard/snapshot.ts");
  dashboard.show(clusterSnapshots({ app, worker, clients: clients(), sessions }));
}
