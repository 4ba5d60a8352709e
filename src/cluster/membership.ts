/** Cluster membership and the checks a joining worker must pass. */
import { createHash } from "node:crypto";
import type { AppSpec } from "../app/spec.ts";
import { equalRanges, type PartitionMap } from "../routing/partition-map.ts";

export interface Worker {
  id: string;
  /** host:port of its ControlService and ExchangeService. */
  address: string;
  /** host:port of its connector-protocol server ("" when it serves none). */
  connectorAddress: string;
  /** False once its data role was given away: it owns no slots and hosts no connector sessions. */
  data: boolean;
}

export { CLUSTER_VERSION } from "../exchange/grpc-exchange.ts";

/**
 * A digest of the app's shape (pipeline names, sources, sinks, step kinds): workers of one
 * cluster must run the same app, and a different one would misroute records between stages.
 */
export function appDigest(app: AppSpec): string {
  const shape = app.pipelines.map((p) => [p.name, p.source.name, p.sink.name, p.steps.map((s) => s.kind)]);
  return createHash("sha256").update(JSON.stringify([app.name, shape])).digest("hex").slice(0, 16);
}

/** Equal contiguous ranges over the workers that keep a data role, in membership order. */
export function dataRanges(slotCount: number, members: readonly Worker[], epoch: number): PartitionMap {
  return equalRanges(slotCount, members.filter((m) => m.data).map((m) => m.id), epoch);
}

/** A stable spread of connector instances over the data workers: one instance's sessions land together. */
export function workerForInstance(members: readonly Worker[], instanceId: string): Worker | undefined {
  const data = members.filter((m) => m.data && m.connectorAddress !== "");
  if (data.length === 0) return undefined;
  const digest = createHash("sha256").update(instanceId).digest();
  return data[digest.readUInt32BE(0) % data.length];
}
