/**
 * Simulated time for a whole cluster in one process: every timer, Date.now, performance.now and
 * setImmediate of the code under test runs on a fake clock, and Math.random draws from the
 * seed. A step fires the next timer, then lets every promise it resolved run to quiescence (a
 * real setImmediate comes after all microtasks), so the order of events depends on the seed alone.
 */
import FakeTimers from "@sinonjs/fake-timers";
import type { Random } from "./random.ts";

export interface SimClock {
  now(): number;
  /** Fires the next timer and runs what it set off; false when no timer is left. */
  step(): Promise<boolean>;
  /** Lets what is already resolved run, without firing a timer. */
  settle(): Promise<void>;
  uninstall(): void;
}

const realImmediate = globalThis.setImmediate;
const quiescent = (): Promise<void> => new Promise((resolve) => realImmediate(resolve));

export function installClock(random: Random): SimClock {
  const clock = FakeTimers.withGlobal(globalThis).install({
    now: 0,
    toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval", "setImmediate", "clearImmediate", "Date", "performance", "hrtime"],
    loopLimit: Number.MAX_SAFE_INTEGER,
  });
  const realRandom = Math.random;
  Math.random = random.next;
  return {
    now: () => clock.now,
    async step() {
      // Starting a worker takes a turn or two of the real event loop before its first timer.
      for (let turn = 0; turn < 3 && clock.countTimers() === 0; turn++) await quiescent();
      if (clock.countTimers() === 0) return false;
      clock.next();
      await quiescent();
      return true;
    },
    settle: quiescent,
    uninstall() {
      clock.uninstall();
      Math.random = realRandom;
    },
  };
}
