/**
 * Where connector sessions belong when the engine is a cluster of workers, each serving the
 * protocol on its own address (docs/protocol.md §13.4). The cluster supplies a SessionPlacement;
 * a single engine has none and serves every session itself.
 */
import type { Role } from "./handshake.ts";

export interface SessionPlacement {
  /** Every worker's connector address, this one included. */
  addresses(): readonly string[];
  /** Where a session of this role/target/instance belongs; undefined = here. Called at Hello (after the handshake checks) and by rebalance(). */
  redirectFor(role: Role, target: string, instanceId: string): string | undefined;
}

/** Who a session serves, known once its Hello has passed the checks. */
export interface SessionIdentity {
  role: Role;
  target: string;
  instanceId: string;
}

/** What sessions ask of the cluster: the addresses to list, and where a session should be instead. */
export interface SessionRouting {
  addresses(): readonly string[];
  /** Another worker's address, or undefined when the session belongs on this one. */
  elsewhere(identity: SessionIdentity): string | undefined;
}

/**
 * The routing of a server bound at `self()`. A placement naming this worker's own address means
 * "here": redirecting a session to the address it dialled would only send it round in a loop.
 */
export function sessionRouting(placement: SessionPlacement | undefined, self: () => string): SessionRouting {
  if (placement === undefined) return { addresses: () => [self()], elsewhere: () => undefined };
  return {
    addresses: () => placement.addresses(),
    elsewhere: ({ role, target, instanceId }) => {
      const to = placement.redirectFor(role, target, instanceId);
      return to === undefined || to === self() ? undefined : to;
    },
  };
}
