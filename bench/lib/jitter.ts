/**
 * How long this process gets descheduled while it wants the CPU: a busy loop records every gap
 * between consecutive clock reads. On a shared or virtual machine these stalls set a floor under
 * any latency tail measured here, for baseline and engine alike.
 */
export interface SchedulerJitter {
  durationMs: number;
  /** Gaps above 0.1 ms: a busy loop reads the clock far more often than that. */
  stallsOver100us: number;
  stallMsMax: number;
  /** Share of the probe's wall time lost to stalls. */
  stalledFraction: number;
}

const STALL_MS = 0.1;

export function probeSchedulerJitter(durationMs: number): SchedulerJitter {
  const start = performance.now();
  const end = start + durationMs;
  let last = start;
  let stalls = 0;
  let stallMsMax = 0;
  let stalledMs = 0;
  for (;;) {
    const now = performance.now();
    if (now >= end) break;
    const gapMs = now - last;
    if (gapMs > STALL_MS) {
      stalls++;
      stalledMs += gapMs;
      if (gapMs > stallMsMax) stallMsMax = gapMs;
    }
    last = now;
  }
  return { durationMs, stallsOver100us: stalls, stallMsMax, stalledFraction: stalledMs / durationMs };
}
