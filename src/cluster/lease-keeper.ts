/**
 * Keeping an etcd lease alive, and stopping in time when it cannot be: the real etcd client and
 * the simulator's model of etcd both run this, so the simulator checks the fence that ships.
 *
 * A renewal is sent every TTL/5. The lease is known valid until the last successful renewal's
 * *send* time plus the TTL (etcd can only have renewed it later than that), and the worker stops
 * taking writes FENCE_MARGIN_MS before then, on a timer of its own: etcd can expire the lease only
 * after that, and the cluster promotes only after the expiry.
 */
import { ErrorCode, KeywayError } from "../errors.ts";
import type { Logger } from "../log/logger.ts";

export const FENCE_MARGIN_MS = 250;

/** What one renewal found: renewed, or the lease no longer exists (etcd expired it). Throws when etcd did not answer. */
export type RenewOnce = () => Promise<"renewed" | "expired">;

export interface LeaseKeeper {
  /** Starts renewing a lease granted by a request sent at `sentAt`. */
  start(ttlSeconds: number, sentAt: number): void;
  /** The error the lease was lost with, once it was. */
  lost(): KeywayError | undefined;
  /** Called once, when the lease is lost (at once if it already was). */
  onLost(handler: (err: KeywayError) => void): void;
  stop(): void;
}

export function createLeaseKeeper(options: { endpoints: string; log: Logger; renewOnce: RenewOnce }): LeaseKeeper {
  const { endpoints, log } = options;
  let ttlSeconds = 0;
  let validUntil = 0;
  let unreachableSince: number | undefined;
  let stopped = false;
  let lostWith: KeywayError | undefined;
  let lostHandler: ((err: KeywayError) => void) | undefined;
  let keepalive: NodeJS.Timeout | undefined;
  let fence: NodeJS.Timeout | undefined;

  const lose = (err: KeywayError): void => {
    if (lostWith !== undefined || stopped) return;
    lostWith = err;
    clearInterval(keepalive);
    clearTimeout(fence);
    log.error({ etcd: endpoints, err: err.message }, "etcd lease lost: this worker stops taking writes");
    lostHandler?.(err);
  };
  // Its own timer, not the renewal ticks: validUntil falls on a tick, so a check made on the ticks
  // fired at validUntil itself, when etcd may already have expired the lease.
  const armFence = (): void => {
    clearTimeout(fence);
    fence = setTimeout(
      () => lose(new KeywayError(ErrorCode.FENCED, `this worker could not renew its etcd lease for ${ttlSeconds} s, so the cluster may declare it dead: it stops taking writes and exits`)),
      Math.max(0, validUntil - FENCE_MARGIN_MS - Date.now()),
    );
    fence.unref?.();
  };
  const renew = async (): Promise<void> => {
    const sentAt = Date.now();
    try {
      const outcome = await options.renewOnce();
      if (stopped || lostWith !== undefined) return;
      if (outcome === "expired") {
        lose(new KeywayError(ErrorCode.FENCED, `this worker's etcd lease expired (it was cut off from etcd for longer than ${ttlSeconds} s); the cluster has declared it dead`));
        return;
      }
      validUntil = sentAt + ttlSeconds * 1000;
      armFence();
      if (unreachableSince !== undefined) log.info({ etcd: endpoints, downMs: Date.now() - unreachableSince }, "etcd reachable again");
      unreachableSince = undefined;
    } catch (err) {
      if (stopped || unreachableSince !== undefined) return;
      unreachableSince = sentAt;
      log.warn({ etcd: endpoints, err: (err as Error).message }, "etcd unreachable: going on with the map this worker holds; no membership change until it is back");
    }
  };

  return {
    start(ttl, sentAt) {
      ttlSeconds = ttl;
      validUntil = sentAt + ttl * 1000;
      armFence();
      keepalive = setInterval(() => void renew(), Math.max(100, (ttl * 1000) / 5));
      keepalive.unref?.();
    },
    lost: () => lostWith,
    onLost(handler) {
      lostHandler = handler;
      if (lostWith !== undefined) handler(lostWith);
    },
    stop() {
      stopped = true;
      clearInterval(keepalive);
      clearTimeout(fence);
    },
  };
}
