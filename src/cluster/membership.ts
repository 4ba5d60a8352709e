/** Cluster membership and the checks a joining worker must pass. */
import { createHash } from "node:crypto";
import type { AppSpec } from "../app/spec.ts";

export interface Worker {
  id: string;
  /** host:port of its WorkerService. */
  address: string;
}

export const CLUSTER_VERSION = { major: 1, minor: 0 } as const;

/**
 * A digest of the app's shape (pipeline names, sources, sinks, step kinds): workers of one
 * cluster must run the same app, and a different one would misroute records between stages.
 */
export function appDigest(app: AppSpec): string {
  const shape = app.pipelines.map((p) => [p.name, p.source.name, p.sink.name, p.steps.map((s) => s.kind)]);
  return createHash("sha256").update(JSON.stringify([app.name, shape])).digest("hex").slice(0, 16);
}
