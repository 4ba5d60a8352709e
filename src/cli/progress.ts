/** The live status line on a terminal and the closing summary. */
import type { EngineStats } from "../runtime/engine.ts";

const compact = new Intl.NumberFormat("en", { notation: "compact", maximumFractionDigits: 1 });
const whole = new Intl.NumberFormat("en");

export function formatSummary(stats: EngineStats, elapsedMs: number): string {
  const seconds = elapsedMs / 1000;
  const rate = seconds > 0 ? stats.recordsIn / seconds : 0;
  return (
    `done in ${seconds.toFixed(2)} s: ${whole.format(stats.recordsIn)} records in, ` +
    `${whole.format(stats.recordsOut)} out, ${whole.format(stats.keys)} keys (${compact.format(rate)} records/s in)`
  );
}

/** Rewrites one terminal line every intervalMs with rates since the last tick; returns a stop function. */
export function startProgress(
  stats: () => EngineStats,
  out: NodeJS.WriteStream,
  intervalMs = 1000,
): () => void {
  let last = stats();
  let lastAt = performance.now();
  const timer = setInterval(() => {
    const now = stats();
    const at = performance.now();
    const seconds = (at - lastAt) / 1000;
    const inRate = (now.recordsIn - last.recordsIn) / seconds;
    const outRate = (now.recordsOut - last.recordsOut) / seconds;
    out.write(
      `\r\x1b[K in ${compact.format(inRate)}/s  out ${compact.format(outRate)}/s  keys ${compact.format(now.keys)}  buffered ${compact.format(now.bufferedRecords)}`,
    );
    last = now;
    lastAt = at;
  }, intervalMs);
  timer.unref();
  return () => {
    clearInterval(timer);
    out.write("\r\x1b[K");
  };
}
