/**
 * Helpers for the tests that drive Python connectors: Debian's python3 with its python3-grpcio,
 * python3-protobuf and python3-pika (scripts/install-test-deps.sh), and a real RabbitMQ on
 * 127.0.0.1 started by scripts/rabbitmq-start.sh.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { ROOT, startKeyway, type Finished, type Running } from "../helpers/process.ts";

const execFileP = promisify(execFile);

/** Always Debian's interpreter: the first python3 on PATH may be another that lacks grpc. */
export const PYTHON = "/usr/bin/python3";
export const AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F";

/** Fails with what to do when the Python side cannot run at all. */
export async function requirePython(): Promise<void> {
  try {
    await execFileP(PYTHON, ["-c", "import grpc, google.protobuf, pika"]);
  } catch (err) {
    throw new Error(
      `${PYTHON} cannot import grpc, protobuf and pika (${(err as Error).message.trim()}); run scripts/install-test-deps.sh`,
    );
  }
}

/**
 * Starts RabbitMQ unless it already answers; resolves true when this call started it (so the
 * caller stops it afterwards). Fails with the start script's own explanation.
 */
export async function ensureRabbitMQ(): Promise<boolean> {
  try {
    const { stderr } = await execFileP("bash", [join(ROOT, "scripts/rabbitmq-start.sh")], { timeout: 240_000 });
    return !/already running/.test(stderr);
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`RabbitMQ could not be started by scripts/rabbitmq-start.sh: ${e.stderr?.trim() || e.message}`);
  }
}

export async function stopRabbitMQ(): Promise<void> {
  await execFileP("bash", [join(ROOT, "scripts/rabbitmq-stop.sh")], { timeout: 60_000 });
}

/** Starts a Python script from the repository, unbuffered, collecting its output. */
export function startPython(script: string, args: string[], env: Record<string, string> = {}): Running {
  const child: ChildProcess = spawn(PYTHON, ["-u", join(ROOT, script), ...args], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...env },
  });
  let stdout = "";
  let stderr = "";
  child.stdout!.setEncoding("utf8").on("data", (d: string) => (stdout += d));
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  const finished = new Promise<Finished>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return { child, stderr: () => stderr, finished };
}

/** Runs a Python script to its end; fails with its stderr when it exits non-zero. */
export async function runPython(script: string, args: string[]): Promise<string> {
  const done = await startPython(script, args).finished;
  if (done.code !== 0) throw new Error(`${script} ${args.join(" ")} exited ${done.code ?? done.signal}: ${done.stderr}`);
  return done.stdout;
}

/** Every process a test started, killed at its end whatever happened. */
export class Processes {
  private readonly running: Running[] = [];

  track(r: Running): Running {
    this.running.push(r);
    return r;
  }

  python(script: string, args: string[], env?: Record<string, string>): Running {
    return this.track(startPython(script, args, env));
  }

  keyway(args: string[]): Running {
    return this.track(startKeyway(args));
  }

  async killAll(): Promise<void> {
    for (const r of this.running) {
      if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill("SIGKILL");
    }
    await Promise.all(this.running.map((r) => r.finished.catch(() => undefined)));
    this.running.length = 0;
  }
}

export type Totals = Record<string, { count: number; sum: number }>;

/** The totals file a sink wrote, or undefined while it does not exist or is being replaced. */
export function readTotals(path: string): Totals | undefined {
  if (!existsSync(path)) return undefined;
  try {
    return JSON.parse(readFileSync(path, "utf8")) as Totals;
  } catch {
    return undefined;
  }
}

export function countOf(totals: Totals | undefined): number {
  return totals === undefined ? 0 : Object.values(totals).reduce((n, t) => n + t.count, 0);
}

/** The first user whose total differs, described; undefined when all match. */
export function totalsDiff(expected: Totals, actual: Totals | undefined): string | undefined {
  if (actual === undefined) return "no totals yet";
  for (const [user, want] of Object.entries(expected)) {
    const got = actual[user];
    if (got?.count !== want.count || got.sum !== want.sum) {
      return `${user}: expected ${JSON.stringify(want)}, got ${JSON.stringify(got)}`;
    }
  }
  const extra = Object.keys(actual).filter((u) => !(u in expected));
  return extra.length > 0 ? `unexpected users ${extra.join(", ")}` : undefined;
}
