/**
 * A real, private etcd (3.4, Debian's etcd-server) for tests: its own free ports on 127.0.0.1, its
 * own data dir under test/.tmp, never the packaged service. A test that needs etcd fails, with the
 * reason and etcd's own words, when etcd is missing or does not come up: it never skips.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { freePort, scratchDir } from "./process.ts";

export interface Etcd {
  /** "127.0.0.1:PORT": the client URL without its scheme, as the etcd3 client's `hosts` takes it. */
  endpoint: string;
  /** "etcd://127.0.0.1:PORT", as `--coordinator` takes it. */
  uri: string;
  /** SIGTERM, then waits for the process to exit. Does nothing when it has already exited. */
  stop(): Promise<void>;
  /** SIGKILL, without waiting: a crash. */
  kill(): void;
  /** Stops it (if it runs) and starts it again on the same ports and data dir, so the data survives; waits until ready. */
  restart(): Promise<void>;
  /** Everything etcd wrote to stderr, over every start. */
  stderr(): string;
}

const READY_TIMEOUT_MS = 15_000;
const INSTALL_HINT = "etcd 3.4 is installed by `bash scripts/install-test-deps.sh`";

// Children outlive their parent: kill every etcd still running when the test process ends (after
// a failed assertion skipped stop()). vitest ends its fork workers with SIGTERM, which skips "exit"
// handlers, so catch the usual signals too, then re-raise the signal for its default action unless
// someone else listens for it. The data dirs go too: etcd preallocates a 64 MB WAL in each.
const running = new Set<ChildProcess>();
const dirs = new Set<string>();
function cleanUp(): void {
  for (const child of running) child.kill("SIGKILL");
  running.clear();
  for (const dir of dirs) {
    try {
      rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
    } catch {
      // A dying etcd may still hold it: leave it to the next `rm -rf test/.tmp`.
    }
  }
  dirs.clear();
}
process.on("exit", cleanUp);
for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"] as const) {
  process.once(signal, () => {
    cleanUp();
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
  });
}

/** Starts a single-member etcd named `name` (a short word: it is also the member name) and waits until it is healthy. */
export async function startEtcd(name: string): Promise<Etcd> {
  const clientPort = await freePort();
  let peerPort = await freePort();
  while (peerPort === clientPort) peerPort = await freePort();
  const clientUrl = `http://127.0.0.1:${clientPort}`;
  const peerUrl = `http://127.0.0.1:${peerPort}`;
  const dir = scratchDir(`etcd-${name}`);
  dirs.add(dir);
  const dataDir = join(dir, "data");
  const args = [
    `--name=${name}`,
    `--data-dir=${dataDir}`,
    `--listen-client-urls=${clientUrl}`,
    `--advertise-client-urls=${clientUrl}`,
    `--listen-peer-urls=${peerUrl}`,
    `--initial-advertise-peer-urls=${peerUrl}`,
    `--initial-cluster=${name}=${peerUrl}`,
    // Ignored by a restart, which finds the member in the data dir.
    "--initial-cluster-state=new",
  ];
  // ETCD_* variables configure etcd too (and clash with flags): keep the caller's out of it.
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("ETCD_")));

  let stderr = "";
  let child: ChildProcess | undefined;
  let exited: Promise<string> = Promise.resolve("not started");

  const alive = () => child !== undefined && child.exitCode === null && child.signalCode === null && child.pid !== undefined;

  async function launch(): Promise<void> {
    const startedAt = stderr.length;
    const c = spawn("etcd", args, { env, stdio: ["ignore", "ignore", "pipe"] });
    child = c;
    running.add(c);
    c.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    // Resolves with why the process is gone: it failed to spawn, or it exited.
    exited = new Promise<string>((resolveExit) => {
      c.once("error", (err: NodeJS.ErrnoException) => {
        running.delete(c);
        resolveExit(err.code === "ENOENT" ? "etcd is not installed (no `etcd` on PATH)" : `etcd could not be started: ${err.message}`);
      });
      c.once("exit", (code, signal) => {
        running.delete(c);
        resolveExit(`etcd exited (${signal ?? `code ${code}`})`);
      });
    });
    let gone: string | undefined;
    void exited.then((why) => (gone = why));
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      if (gone === undefined && (await healthy(clientUrl))) return;
      if (gone === undefined && Date.now() > deadline) {
        c.kill("SIGKILL");
        await exited;
        gone = `etcd was not healthy at ${clientUrl}/health within ${READY_TIMEOUT_MS / 1000} s`;
      }
      if (gone !== undefined) {
        const tail = stderr.slice(startedAt).trimEnd().split("\n").slice(-20).join("\n");
        throw new Error(`etcd "${name}" did not start: ${gone} (${INSTALL_HINT})${tail && `; the end of its stderr:\n${tail}`}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async function stop(): Promise<void> {
    if (alive()) child!.kill("SIGTERM");
    await exited;
  }

  await launch();
  return {
    endpoint: `127.0.0.1:${clientPort}`,
    uri: `etcd://127.0.0.1:${clientPort}`,
    stop,
    kill: () => void (alive() && child!.kill("SIGKILL")),
    restart: async () => {
      await stop();
      stderr += "--- restart ---\n";
      await launch();
    },
    stderr: () => stderr,
  };
}

/** etcd 3.4 serves GET /health on its client URL: {"health":"true"} once it has a leader and can commit. */
async function healthy(clientUrl: string): Promise<boolean> {
  try {
    const response = await fetch(`${clientUrl}/health`, { signal: AbortSignal.timeout(1_000) });
    const body = (await response.json()) as { health?: string };
    return body.health === "true";
  } catch {
    return false;
  }
}
