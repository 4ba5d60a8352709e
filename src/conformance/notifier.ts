/**
 * Waiting for something the peer does, always with a deadline: every wait in the harness goes
 * through `until`, which re-checks its condition whenever anything it watches changed.
 */

/** Raised when a bounded wait ends without its condition; the message is a case's reason. */
export class WaitTimeout extends Error {
  constructor(message: string) {
    super(message);
    this.name = "WaitTimeout";
  }
}

export class Notifier {
  private waiters: Array<() => void> = [];

  /** Something changed: every waiter re-checks. */
  changed(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  /**
   * Resolves with check()'s first value other than undefined. `abort()` returning a string ends
   * the wait early with that reason (for example: the connector process exited).
   */
  async until<T>(what: string, timeoutMs: number, check: () => T | undefined, abort?: () => string | undefined): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = check();
      if (value !== undefined) return value;
      const aborted = abort?.();
      if (aborted !== undefined) throw new WaitTimeout(`${aborted} while waiting for ${what}`);
      const leftMs = deadline - Date.now();
      if (leftMs <= 0) throw new WaitTimeout(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(leftMs, POLL_MS_MAX));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }
}

/**
 * Conditions that depend on the outside world (a file a connector writes, a process's exit) are
 * polled at least this often, since nothing notifies the harness of them.
 */
const POLL_MS_MAX = 50;

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
