/** Runs the real keyway CLI as a child process, as a user would. */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join, resolve } from "node:path";
import { expect } from "vitest";
import { fileURLToPath } from "node:url";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const KEYWAY_BIN = join(ROOT, "bin/keyway.js");

export interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface Running {
  child: ChildProcess;
  stderr(): string;
  finished: Promise<Finished>;
}

export function startKeyway(args: string[], cwd = ROOT): Running {
  return startNode([KEYWAY_BIN, ...args], cwd);
}

/** Node with these arguments (a script and its flags), its output collected. */
export function startNode(args: string[], cwd = ROOT): Running {
  return startProcess(process.execPath, args, cwd);
}

/** Any command, its output collected. */
export function startProcess(command: string, args: string[], cwd = ROOT): Running {
  const child = spawn(command, args, { cwd, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout!.setEncoding("utf8").on("data", (d: string) => (stdout += d));
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  const finished = new Promise<Finished>((resolveFinished, reject) => {
    child.on("error", reject);
    child.on("close", (code, signal) => resolveFinished({ code, signal, stdout, stderr }));
  });
  return { child, stderr: () => stderr, finished };
}

export function runKeyway(args: string[], cwd = ROOT): Promise<Finished> {
  return startKeyway(args, cwd).finished;
}

/** A scratch directory inside the repository, so app modules there can import "keyway". */
export function scratchDir(prefix: string): string {
  const base = join(ROOT, "test/.tmp");
  mkdirSync(base, { recursive: true });
  return mkdtempSync(join(base, `${prefix}-`));
}

// Ports handed out lie below the kernel's ephemeral range (32768 and up here), from which every
// outgoing connection takes its local port: a port picked by binding to 0 could be taken by one
// of those before the process it was meant for binds it (a RabbitMQ test failed so). Each vitest
// worker takes its own block, in turn from a random start, so parallel test files never pick the
// same port either.
const PORT_BLOCK = 1800;
const PORT_BASE = 10_000 + ((Number(process.env.VITEST_POOL_ID ?? 1) - 1) % 8) * PORT_BLOCK;
let nextPort = Math.floor(Math.random() * PORT_BLOCK);

/** A port free a moment ago (bound, then released), that nothing else on the machine is handed meanwhile. */
export async function freePort(): Promise<number> {
  for (let tries = 0; tries < PORT_BLOCK; tries++) {
    const port = PORT_BASE + (nextPort++ % PORT_BLOCK);
    if (await canBind(port)) return port;
  }
  throw new Error(`no free port in ${PORT_BASE}-${PORT_BASE + PORT_BLOCK - 1}`);
}

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

/** Polls until check() returns a value other than undefined, or fails with what it waited for. */
export async function waitFor<T>(what: string, check: () => T | undefined | Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Bad use ends with this exit code and exactly one stderr line naming the problem, no stack trace. */
export async function expectOneLineError(args: string[], exitCode: number, message: RegExp): Promise<void> {
  const result = await runKeyway(args);
  expect(result.code).toBe(exitCode);
  const lines = result.stderr.trimEnd().split("\n");
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(message);
  expect(result.stderr).not.toMatch(/\n\s+at /);
}

/** Waits until read() returns the same value at several polls in a row, and returns it. */
export async function waitUntilStable(what: string, read: () => number, polls = 5, intervalMs = 100): Promise<number> {
  let stableFor = 0;
  let last = Number.NaN;
  return waitFor(what, async () => {
    await new Promise((r) => setTimeout(r, intervalMs));
    const now = read();
    stableFor = now === last ? stableFor + 1 : 0;
    last = now;
    return stableFor >= polls ? now : undefined;
  });
}
