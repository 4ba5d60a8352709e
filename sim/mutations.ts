/**
 * Deliberately broken variants, the simulator's negative controls: each breaks one promise the
 * cluster makes, and the simulator must catch it within a bounded number of seeds.
 */
import type { ClusterWorker } from "../src/cluster/worker.ts";
import { emptyKeyedBatch } from "../src/runtime/dataflow.ts";

export const MUTATIONS = ["skip-replicas", "forget-in-flight"] as const;
export type Mutation = (typeof MUTATIONS)[number];

export function applyMutation(mutation: Mutation, worker: ClusterWorker): void {
  const engine = worker.engine;
  if (mutation === "skip-replicas") {
    // Backups take the replicas and apply nothing: a promoted copy has stale state.
    for (const flow of engine.flows) {
      const apply = flow.applyReplica.bind(flow);
      flow.applyReplica = (stage) => apply(stage, emptyKeyedBatch());
    }
  } else {
    // Records on their way to a worker that died are dropped instead of routed to the slots' new primaries.
    engine.reroute = () => Promise.resolve();
  }
}
