/** `keyway run --workers N`: starts the other N-1 workers as local child processes. */
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { deferred } from "../util/deferred.ts";

const KEYWAY_BIN = fileURLToPath(new URL("../../bin/keyway.js", import.meta.url));

export interface LocalWorkers {
  /** Rejects if a worker exits before it is told to leave. */
  readonly failed: Promise<never>;
  /** Waits for the workers to exit (they leave when told); kills those still running after graceMs. */
  stop(graceMs: number): Promise<void>;
  /** Sends every running worker a signal (SIGHUP: reload the credentials). */
  signal(signal: NodeJS.Signals): void;
}

/**
 * `join`: the worker flags that find the cluster (`--join ADDRESS` or `--coordinator etcd://...`);
 * `extraArgs`: more worker flags, the same for every worker (TLS files, credentials).
 */
export function launchLocalWorkers(count: number, appPath: string, join: string[], token: string | undefined, logLevel: string, extraArgs: readonly string[] = []): LocalWorkers {
  const children: ChildProcess[] = [];
  let stopping = false;
  const failing = deferred<never>();
  const fail = (err: Error): void => failing.reject(err);
  const failed = failing.promise;
  for (let i = 0; i < count; i++) {
    const args = [...process.execArgv, KEYWAY_BIN, "worker", appPath, ...join, "--listen", "127.0.0.1:0", "--log-level", logLevel, ...extraArgs];
    // The token travels in the environment, not argv, so `ps` does not show it.
    const child = spawn(process.execPath, args, { stdio: ["ignore", "ignore", "inherit"], env: { ...process.env, ...(token ? { KEYWAY_TOKEN: token } : {}) } });
    child.on("exit", (code, signal) => {
      if (!stopping) fail(new Error(`local worker process ${child.pid} exited (${signal ?? `code ${code}`}) while the cluster was running`));
    });
    children.push(child);
  }
  return {
    failed,
    signal(signal) {
      for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
    async stop(graceMs) {
      stopping = true;
      await Promise.all(
        children.map(
          (child) =>
            new Promise<void>((resolve) => {
              if (child.exitCode !== null || child.signalCode !== null) return resolve();
              const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
              child.once("exit", () => {
                clearTimeout(timer);
                resolve();
              });
            }),
        ),
      );
    },
  };
}
