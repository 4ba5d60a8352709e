/**
 * The simulator's process table. The workers share one event loop, so what a process is running
 * is tracked with AsyncLocalStorage: every timer a worker's code sets (and every promise chain it
 * starts) belongs to its process. A crashed process's timers never fire again, so nothing it
 * decided can act; a paused one's wait until it resumes, as under SIGSTOP. The network and etcd
 * set their timers outside any process and deliver into the receiving one.
 */
import { AsyncLocalStorage } from "node:async_hooks";

export interface SimProcess {
  readonly address: string;
  alive: boolean;
  /** Paused: none of its timers fires before this time. */
  pausedUntil: number;
}

export interface ProcessTable {
  spawn(address: string): SimProcess;
  of(address: string): SimProcess | undefined;
  /** Runs `fn` as `process`: the timers it sets, directly or down its promise chains, are that process's. */
  run<T>(process: SimProcess | undefined, fn: () => T): T;
  /** Runs `fn` in no process (the network's and etcd's own timers). */
  detached<T>(fn: () => T): T;
  /** Wraps the (fake) global timers; returns what undoes it. */
  install(): () => void;
}

type Callback = (...args: unknown[]) => void;

/**
 * `tracked` false: processes are only records, and timers belong to nobody. AsyncLocalStorage costs
 * the whole process a hook on every promise from its first use, so it is used only when asked.
 */
export function createProcessTable(tracked: boolean): ProcessTable {
  const current = new AsyncLocalStorage<SimProcess>();
  const byAddress = new Map<string, SimProcess>();
  const table: ProcessTable = {
    spawn(address) {
      const process: SimProcess = { address, alive: true, pausedUntil: 0 };
      byAddress.set(address, process);
      return process;
    },
    of: (address) => byAddress.get(address),
    run: (process, fn) => (!tracked ? fn() : process === undefined ? current.exit(fn) : current.run(process, fn)),
    detached: (fn) => (tracked ? current.exit(fn) : fn()),
    install() {
      if (!tracked) return () => undefined;
      const { setTimeout: timeout, setInterval: interval, setImmediate: immediate, clearTimeout: clear, clearInterval: clearEvery, clearImmediate: clearNow } = globalThis;
      // Timers cleared while their process was paused, whose firing was put off: they stay cleared.
      const cleared = new WeakSet<object>();
      /** The callback as its process may run it now: not when dead, later when paused. */
      const gate = (process: SimProcess, handle: () => object, cb: Callback, args: unknown[], repeating: boolean) => {
        let owedFor = 0;
        const fire = (): void => {
          if (!process.alive || cleared.has(handle())) return;
          const wait = process.pausedUntil - Date.now();
          if (wait > 0) {
            // An interval's ticks missed in a pause come once, as the process wakes, before the messages
            // that waited for it: Node runs due timers before it reads its sockets.
            if (!repeating || owedFor !== process.pausedUntil) current.exit(() => timeout(fire, wait));
            owedFor = process.pausedUntil;
            return;
          }
          current.run(process, () => cb(...args));
        };
        return fire;
      };
      globalThis.setTimeout = ((cb: Callback, ms?: number, ...args: unknown[]) => {
        const process = current.getStore();
        if (process === undefined) return timeout(cb, ms, ...args);
        const handle: { timer?: object } = {};
        handle.timer = timeout(gate(process, () => handle.timer!, cb, args, false), ms);
        return handle.timer;
      }) as typeof setTimeout;
      globalThis.setInterval = ((cb: Callback, ms?: number, ...args: unknown[]) => {
        const process = current.getStore();
        if (process === undefined) return interval(cb, ms, ...args);
        const handle: { timer?: object } = {};
        handle.timer = interval(gate(process, () => handle.timer!, cb, args, true), ms);
        return handle.timer;
      }) as typeof setInterval;
      globalThis.setImmediate = ((cb: Callback, ...args: unknown[]) => {
        const process = current.getStore();
        if (process === undefined) return immediate(cb, ...args);
        const handle: { timer?: object } = {};
        handle.timer = immediate(gate(process, () => handle.timer!, cb, args, false));
        return handle.timer;
      }) as typeof setImmediate;
      globalThis.clearTimeout = ((timer?: object) => {
        if (timer !== undefined && timer !== null) cleared.add(timer);
        clear(timer as never);
      }) as typeof clearTimeout;
      globalThis.clearInterval = ((timer?: object) => {
        if (timer !== undefined && timer !== null) cleared.add(timer);
        clearEvery(timer as never);
      }) as typeof clearInterval;
      globalThis.clearImmediate = ((timer?: object) => {
        if (timer !== undefined && timer !== null) cleared.add(timer);
        clearNow(timer as never);
      }) as typeof clearImmediate;
      return () => {
        Object.assign(globalThis, { setTimeout: timeout, setInterval: interval, setImmediate: immediate, clearTimeout: clear, clearInterval: clearEvery, clearImmediate: clearNow });
      };
    },
  };
  return table;
}
