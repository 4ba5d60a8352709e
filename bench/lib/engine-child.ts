/**
 * Helpers for benchmarks that run the engine as a child process and watch it: its JSON log, its
 * processes' pids and CPU, a clean stop, and `keyway cluster status --json`.
 */
import { describeExit, spawnNode, waitOrKill, type ChildResult, type MeasuredChild } from "./child.ts";
import { sleep } from "./net.ts";
import { procCpuSec } from "./proc-cpu.ts";

export const READY_TIMEOUT_MS = 60_000;
export const STOP_TIMEOUT_MS = 20_000;
/** Makes every Node process of a run (the engine and the workers it spawns) say its pid first. */
const PID_PRELOAD_URL = new URL("./report-pid.mjs", import.meta.url).href;

/** One JSON log line of the engine (pino), or null for anything else it prints. */
export function parseLogLine(line: string): Record<string, unknown> | null {
  if (!line.startsWith("{")) return null;
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return null;
  }
}

/** Resolves once `ready()` holds; rejects if the child exits first or timeoutMs pass. */
export async function waitUntil(ready: () => boolean, child: MeasuredChild, timeoutMs: number, what: string): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!ready()) {
    if (child.exited()) throw new Error(`exited before ${what}`);
    if (performance.now() > deadline) throw new Error(`not ${what} within ${timeoutMs / 1000} s`);
    await sleep(10);
  }
}

/** SIGTERM, then waits; a child that does not exit 0 in time is an error of the run. */
export async function stopChild(child: MeasuredChild, who: string, errors: string[]): Promise<ChildResult> {
  child.kill("SIGTERM");
  const { result, timedOut } = await waitOrKill(child, STOP_TIMEOUT_MS);
  if (timedOut) errors.push(`${who}: did not exit within ${STOP_TIMEOUT_MS / 1000} s of SIGTERM; killed (${describeExit(result)})`);
  else if (result.exitCode !== 0) errors.push(`${who}: ended with ${describeExit(result)}`);
  return result;
}

/** Stops a cluster's first worker with SIGTERM; a worker that joined it must then exit 0 on its own (it is told to leave). */
export async function stopWithJoined(engine: MeasuredChild, joined: MeasuredChild, who: string, errors: string[]): Promise<{ engine: ChildResult; joined: ChildResult }> {
  const first = await stopChild(engine, `${who}: engine`, errors);
  const { result, timedOut } = await waitOrKill(joined, STOP_TIMEOUT_MS);
  if (timedOut) errors.push(`${who}: the joined worker did not exit within ${STOP_TIMEOUT_MS / 1000} s of the engine stopping; killed`);
  else if (result.exitCode !== 0) errors.push(`${who}: the joined worker ended with ${describeExit(result)}`);
  return { engine: first, joined: result };
}

/** The environment that makes every Node process of the run print `bench-pid <pid>` on stderr. */
export function pidPreloadEnv(): NodeJS.ProcessEnv {
  return { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ""} --import ${PID_PRELOAD_URL}`.trim() };
}

/** Adds the pid a `bench-pid <pid>` line names to pids; true when the line was one. */
export function takePid(line: string, pids: number[]): boolean {
  const pid = /^bench-pid (\d+)$/.exec(line);
  if (pid !== null) pids.push(Number(pid[1]));
  return pid !== null;
}

/**
 * CPU seconds of a run's processes so far, from /proc. Sampled often, it keeps each process's
 * last reading, so a process that exits between two samples counts with what it had a moment ago.
 */
export class CpuSampler {
  private readonly last = new Map<number, number>();
  constructor(private readonly pids: readonly number[]) {}

  /** The sum over every listed process; null when one has never been read. */
  sample(): number | null {
    let sum = 0;
    for (const pid of this.pids) {
      const cpu = procCpuSec(pid) ?? this.last.get(pid);
      if (cpu === undefined) return null;
      this.last.set(pid, cpu);
      sum += cpu;
    }
    return sum;
  }
}

/** The part of `keyway cluster status --json` the benchmarks read (docs/operations.md lists it all). */
export interface ClusterStatus {
  epoch: number;
  slotCount: number;
  replicas: number;
  underReplicated: number;
  fenced: string[];
  workers: Array<{ id: string; data: boolean; reachable: boolean; slots: number; backups: number; pid: number; keys: number }>;
}

/** Runs `keyway cluster status --json` against the cluster, as an operator would; throws if it fails. */
export async function clusterStatus(root: string, address: string): Promise<ClusterStatus> {
  const { result, timedOut } = await waitOrKill(spawnNode(["bin/keyway.js", "cluster", "status", "--address", address, "--json"], { cwd: root }), READY_TIMEOUT_MS);
  if (timedOut || result.exitCode !== 0) throw new Error(`keyway cluster status failed: ${timedOut ? "timed out" : describeExit(result)}`);
  return JSON.parse(result.stdoutTail) as ClusterStatus;
}
