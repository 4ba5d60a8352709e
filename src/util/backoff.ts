/**
 * Reconnect delays: exponential backoff with full jitter (a delay drawn uniformly from zero to the
 * current ceiling), so many connectors that lost one engine do not come back in lockstep, and a
 * connector facing an engine that is down never retries in a tight loop.
 */

export interface BackoffOptions {
  /** The ceiling of the first delay. */
  initialMs: number;
  /** Each failed attempt multiplies the ceiling by this. */
  multiplier: number;
  /** The ceiling never grows past this. */
  maxMs: number;
  /**
   * A session that stays up this long after its Welcome counts as healthy and resets the ceiling
   * to initialMs. Resetting on the Welcome alone would let an engine that welcomes and then drops
   * every session drive a reconnect loop at the smallest delay.
   */
  resetAfterMs: number;
  /** A uniform draw in [0, 1); replaceable so tests can pin the jitter. */
  random: () => number;
}

export const BACKOFF_DEFAULTS: BackoffOptions = {
  initialMs: 100,
  multiplier: 2,
  maxMs: 5_000,
  resetAfterMs: 5_000,
  // Looked up at each draw, so the simulator's seeded Math.random applies.
  random: () => Math.random(),
};

export function resolveBackoff(options: Partial<BackoffOptions> | undefined): BackoffOptions {
  const resolved = { ...BACKOFF_DEFAULTS, ...options };
  for (const key of ["initialMs", "maxMs", "resetAfterMs"] as const) {
    if (!(Number.isFinite(resolved[key]) && resolved[key] > 0)) {
      throw new RangeError(`backoff.${key} must be a positive number, got ${resolved[key]}`);
    }
  }
  if (!(resolved.multiplier >= 1)) throw new RangeError(`backoff.multiplier must be at least 1, got ${resolved.multiplier}`);
  if (resolved.maxMs < resolved.initialMs) {
    throw new RangeError(`backoff.maxMs (${resolved.maxMs}) must not be below backoff.initialMs (${resolved.initialMs})`);
  }
  return resolved;
}

/** The delay before reconnect attempt `failures` (1 for the first retry after a failure). */
export function backoffDelayMs(options: BackoffOptions, failures: number): number {
  const ceilingMs = Math.min(options.maxMs, options.initialMs * options.multiplier ** Math.max(0, failures - 1));
  return Math.floor(options.random() * ceilingMs);
}
