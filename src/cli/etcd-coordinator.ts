/**
 * `--coordinator etcd://...`: `keyway run` creates the cluster's record in etcd and takes part in
 * the election; `keyway worker` finds the cluster and its coordinator there.
 */
import type { AppSpec } from "../app/spec.ts";
import { connectEtcd, type ClusterConfig, type EtcdControl, type LeaderInfo } from "../cluster/etcd-control.ts";
import { appDigest } from "../cluster/membership.ts";
import { ErrorCode, KeywayError } from "../errors.ts";
import type { Logger } from "../log/logger.ts";
import type { BindingTable } from "./bindings.ts";
import { CONNECTOR_URI } from "./connector-server.ts";
import { directoryOf } from "./worker-connectors.ts";

/** etcd counts leases in whole seconds and grants none shorter than about two. */
const LEASE_SECONDS_MIN = 2;
/** A joining worker waits this long for a coordinator to be elected. */
const LEADER_WAIT_MS = 15_000;

const leaseSeconds = (failureTimeoutMs: number): number => Math.max(LEASE_SECONDS_MIN, Math.ceil(failureTimeoutMs / 1000));

/**
 * Any worker may die, the first included: so sinks must be connector sinks (whose sessions move
 * to the sinks' new worker) and sources connector sources or directories (whose files the
 * coordinator places, and places again). A bundled file or TCP endpoint lives in one process.
 */
function checkBindings(table: BindingTable): void {
  const sink = [...table.sinks].find(([, uri]) => uri !== CONNECTOR_URI);
  if (sink !== undefined) throw new KeywayError(ErrorCode.USAGE, `sink "${sink[0]}" is bound to ${sink[1]}; with --coordinator etcd every sink must be "connector" (run \`keyway connector file-sink\` for a file), since the sinks move when their worker dies`);
  const source = [...table.sources].find(([, uri]) => uri !== CONNECTOR_URI && directoryOf(uri) === undefined);
  if (source !== undefined) throw new KeywayError(ErrorCode.USAGE, `source "${source[0]}" is bound to ${source[1]}; with --coordinator etcd a source must be "connector" or a directory (file:DIR), since any worker may die`);
}

export async function startEtcdControl(
  uri: string,
  app: AppSpec,
  log: Logger,
  settings: Omit<ClusterConfig, "app" | "appDigest">,
  table: BindingTable,
): Promise<{ control: EtcdControl; config: ClusterConfig }> {
  checkBindings(table);
  const control = await connectEtcd(uri, app.name, log);
  const config: ClusterConfig = { app: app.name, appDigest: appDigest(app), ...settings };
  try {
    await control.createCluster(config);
    await control.begin(leaseSeconds(config.failureTimeoutMs));
  } catch (err) {
    await control.close();
    throw err;
  }
  return { control, config };
}

export async function joinEtcdCluster(uri: string, app: AppSpec, log: Logger): Promise<{ control: EtcdControl; config: ClusterConfig; leader: LeaderInfo }> {
  const control = await connectEtcd(uri, app.name, log);
  try {
    const config = await control.config();
    if (config.appDigest !== appDigest(app)) {
      throw new KeywayError(ErrorCode.USAGE, `the cluster on etcd at ${control.endpoints} runs app "${config.app}" (${config.appDigest}); this worker runs "${app.name}" (${appDigest(app)})`);
    }
    await control.begin(leaseSeconds(config.failureTimeoutMs));
    const deadline = Date.now() + LEADER_WAIT_MS;
    for (;;) {
      const leader = await control.leader();
      if (leader !== undefined) return { control, config, leader };
      if (Date.now() > deadline) throw new KeywayError(ErrorCode.UNAVAILABLE, `no worker of app "${app.name}" holds the coordinator role on etcd at ${control.endpoints} (waited ${LEADER_WAIT_MS / 1000} s)`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  } catch (err) {
    await control.close();
    throw err;
  }
}
