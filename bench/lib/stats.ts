/** Order statistics for benchmark samples. */

/** Nearest-rank percentile (p in 0..100) of an ascending-sorted sample; NaN when empty. */
export function percentileSorted(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

/** The median of a small sample; for an even count, the mean of the middle two. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** engine / baseline, or null when either side is missing or the baseline is zero. */
export function ratio(engine: number | null, baseline: number | null): number | null {
  if (engine === null || baseline === null || !Number.isFinite(engine) || !Number.isFinite(baseline) || baseline === 0) return null;
  return engine / baseline;
}
