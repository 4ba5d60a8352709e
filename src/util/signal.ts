/** Wakes whoever waits for a change (records arrived, an ack came, a session attached). */
export class Signal {
  private waiters: Array<() => void> = [];

  /** Resolves at the next notify(); callers re-check their condition after it. */
  wait(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  notify(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}
