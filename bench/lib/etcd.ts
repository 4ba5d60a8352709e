/**
 * A private single-member etcd for benchmarks that run the cluster's control plane on it
 * (`--coordinator etcd://...`): /usr/bin/etcd (3.4, Debian's etcd-server) on free ports of
 * 127.0.0.1 with its own data dir under bench/.data, never the packaged service. The start logic
 * follows test/helpers/etcd.ts, which benchmarks cannot import.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { freePort, sleep } from "./net.ts";

const ETCD_BIN = "/usr/bin/etcd";
const READY_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 10_000;
const STDERR_KEPT_CHARS = 8 * 1024;

export interface Etcd {
  /** "etcd://127.0.0.1:PORT", as `--coordinator` takes it. */
  uri: string;
  /** SIGTERM, waits for the exit (SIGKILL after a while), then removes the data dir. */
  stop(): Promise<void>;
}

// A benchmark that crashes past its finally blocks must not leave etcd running (or its 64 MB WAL
// behind): kill what is still up when the bench process ends.
const running = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/** Starts etcd named `name` (a short word: also the member name and the data dir's) and waits until it is healthy. */
export async function startEtcd(dataRoot: string, name: string): Promise<Etcd> {
  const clientPort = await freePort();
  let peerPort = await freePort();
  while (peerPort === clientPort) peerPort = await freePort();
  const clientUrl = `http://127.0.0.1:${clientPort}`;
  const peerUrl = `http://127.0.0.1:${peerPort}`;
  const dataDir = join(dataRoot, `etcd-${name}`);
  // A fresh member each time: a data dir from an earlier run would hold that run's cluster record.
  rmSync(dataDir, { recursive: true, force: true });
  const args = [
    `--name=${name}`,
    `--data-dir=${dataDir}`,
    `--listen-client-urls=${clientUrl}`,
    `--advertise-client-urls=${clientUrl}`,
    `--listen-peer-urls=${peerUrl}`,
    `--initial-advertise-peer-urls=${peerUrl}`,
    `--initial-cluster=${name}=${peerUrl}`,
    "--initial-cluster-state=new",
  ];
  // ETCD_* variables configure etcd too (and clash with flags): keep the caller's out of it.
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("ETCD_")));
  const child = spawn(ETCD_BIN, args, { env, stdio: ["ignore", "ignore", "pipe"] });
  running.add(child);
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr = (stderr + d).slice(-STDERR_KEPT_CHARS)));
  let gone: string | undefined;
  const exited = new Promise<void>((resolve) => {
    child.once("error", (err) => {
      gone = `could not be started: ${err.message}`;
      running.delete(child);
      resolve();
    });
    child.once("exit", (code, signal) => {
      gone = `exited (${signal ?? `code ${code}`})`;
      running.delete(child);
      resolve();
    });
  });

  const stop = async (): Promise<void> => {
    if (gone === undefined) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dataDir, { recursive: true, force: true });
  };

  const deadline = performance.now() + READY_TIMEOUT_MS;
  while (!(await healthy(clientUrl))) {
    if (gone === undefined && performance.now() > deadline) gone = `was not healthy at ${clientUrl}/health within ${READY_TIMEOUT_MS / 1000} s`;
    if (gone !== undefined) {
      await stop();
      const tail = stderr.trimEnd().split("\n").slice(-10).join(" | ");
      throw new Error(`etcd (${ETCD_BIN}) ${gone}${tail ? `; the end of its stderr: ${tail}` : ""}`);
    }
    await sleep(50);
  }
  return { uri: `etcd://127.0.0.1:${clientPort}`, stop };
}

/** etcd 3.4 serves GET /health on its client URL: {"health":"true"} once it has a leader and can commit. */
async function healthy(clientUrl: string): Promise<boolean> {
  try {
    const response = await fetch(`${clientUrl}/health`, { signal: AbortSignal.timeout(1000) });
    const body = (await response.json()) as { health?: string };
    return body.health === "true";
  } catch {
    return false;
  }
}
