/**
 * A wait that says what it waits for. Past `warnAfterMs` it logs, and again every `warnAfterMs`,
 * the wait's name and what `describe` says holds it up; past `deadlineMs` it rejects with
 * `timeout()`. The awaited work itself goes on: only the waiting stops.
 */
import type { Logger } from "../log/logger.ts";

export interface WaitWatch {
  /** What the wait is, for the log: "checkpoint", "shutdown". */
  what: string;
  log: Logger;
  warnAfterMs: number;
  /** What the wait is held up by, now. */
  describe(): Record<string, unknown>;
  deadlineMs?: number;
  timeout?(elapsedMs: number): Error;
}

export function watchedWait<T>(work: Promise<T>, watch: WaitWatch): Promise<T> {
  const startedAt = Date.now();
  let warner: NodeJS.Timeout | undefined;
  let deadline: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    warner = setInterval(() => watch.log.warn({ waitedMs: Date.now() - startedAt, ...watch.describe() }, `${watch.what} still waiting`), watch.warnAfterMs);
    if (watch.deadlineMs !== undefined && watch.timeout !== undefined) {
      const timeout = watch.timeout;
      deadline = setTimeout(() => reject(timeout(Date.now() - startedAt)), watch.deadlineMs);
    }
  });
  return Promise.race([work, expired]).finally(() => {
    clearInterval(warner);
    clearTimeout(deadline);
  });
}
