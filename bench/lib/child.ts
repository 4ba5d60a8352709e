/**
 * Runs a Node child process and measures it from the outside: wall time from spawn to exit, peak
 * RSS and CPU time. Those come from GNU time (`/usr/bin/time -f "%M %U %S"`) when installed, so the
 * numbers are the kernel's and cost the child nothing; otherwise a preload makes the child report.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { StringDecoder } from "node:string_decoder";
import { fileURLToPath } from "node:url";

const TIME_BIN = "/usr/bin/time";
const USAGE_PRELOAD = fileURLToPath(new URL("./report-usage.mjs", import.meta.url));
/** Keep the end of the child's output for error messages without holding a chatty child's whole log. */
const OUTPUT_TAIL_CHARS = 16 * 1024;

export const rssMethod: "gnu-time" | "self-report" = existsSync(TIME_BIN) ? "gnu-time" : "self-report";

export interface ChildResult {
  wallMs: number;
  /** Peak resident set size in KiB; null when it could not be read (e.g. the child was SIGKILLed). */
  maxRssKiB: number | null;
  /** User + system CPU time in seconds, all threads (GC and libuv workers included); null like maxRssKiB. */
  cpuSec: number | null;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdoutTail: string;
  stderrTail: string;
}

export interface MeasuredChild {
  /** Settles when the child has exited and its output is drained. */
  readonly done: Promise<ChildResult>;
  /** True once the child has exited. */
  exited(): boolean;
  /** Signals the node process itself, not the GNU time wrapper (which would die and orphan it). */
  kill(signal: NodeJS.Signals): void;
}

export interface SpawnOptions {
  cwd: string;
  env?: NodeJS.ProcessEnv;
  /** Sees every complete line the child writes to stderr, as it arrives (e.g. to watch its log). */
  onStderrLine?: (line: string) => void;
}

function appendTail(tail: string, chunk: Buffer): string {
  const next = tail + chunk.toString("utf8");
  return next.length > OUTPUT_TAIL_CHARS ? next.slice(-OUTPUT_TAIL_CHARS) : next;
}

const USAGE_LINE = /^(\d+) (\d+(?:\.\d+)?) (\d+(?:\.\d+)?)$/;

/** The "maxRssKiB userSec systemSec" line; GNU time may put "Command exited with ..." before it. */
function parseUsageFile(path: string): { maxRssKiB: number | null; cpuSec: number | null } {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return { maxRssKiB: null, cpuSec: null };
  }
  for (const line of text.trim().split("\n").reverse()) {
    const match = USAGE_LINE.exec(line.trim());
    if (match !== null) return { maxRssKiB: Number(match[1]), cpuSec: Number(match[2]) + Number(match[3]) };
  }
  return { maxRssKiB: null, cpuSec: null };
}

function childPidsOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** Spawns `node ...nodeArgs` (this Node binary) with measurement. */
export function spawnNode(nodeArgs: readonly string[], options: SpawnOptions): MeasuredChild {
  const scratch = mkdtempSync(join(tmpdir(), "keyway-bench-"));
  const usageFile = join(scratch, "usage");
  const env = { ...process.env, ...options.env };
  let command: string;
  let args: string[];
  if (rssMethod === "gnu-time") {
    command = TIME_BIN;
    args = ["-f", "%M %U %S", "-o", usageFile, process.execPath, ...nodeArgs];
  } else {
    command = process.execPath;
    args = ["--import", USAGE_PRELOAD, ...nodeArgs];
    env.KEYWAY_BENCH_USAGE_FILE = usageFile;
  }

  const startedAt = performance.now();
  const child = spawn(command, args, { cwd: options.cwd, env, stdio: ["ignore", "pipe", "pipe"] });
  let stdoutTail = "";
  let stderrTail = "";
  let hasExited = false;
  let wallMs = 0;
  child.stdout.on("data", (chunk: Buffer) => (stdoutTail = appendTail(stdoutTail, chunk)));
  let stderrCarry = "";
  const stderrDecoder = new StringDecoder("utf8");
  child.stderr.on("data", (chunk: Buffer) => {
    stderrTail = appendTail(stderrTail, chunk);
    if (options.onStderrLine === undefined) return;
    const lines = (stderrCarry + stderrDecoder.write(chunk)).split("\n");
    stderrCarry = lines.pop()!;
    for (const line of lines) options.onStderrLine(line);
  });
  child.on("exit", () => {
    wallMs = performance.now() - startedAt;
    hasExited = true;
  });

  const done = new Promise<ChildResult>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (exitCode, signal) => {
      const usage = parseUsageFile(usageFile);
      rmSync(scratch, { recursive: true, force: true });
      resolve({ wallMs, ...usage, exitCode, signal, stdoutTail, stderrTail });
    });
  });

  return {
    done,
    exited: () => hasExited,
    kill(signal) {
      if (hasExited || child.pid === undefined) return;
      const targets = rssMethod === "gnu-time" ? childPidsOf(child.pid) : [child.pid];
      // The wrapper may not have forked yet; signalling it then is the best we can do.
      for (const pid of targets.length > 0 ? targets : [child.pid]) {
        try {
          process.kill(pid, signal);
        } catch {
          // Already gone.
        }
      }
    },
  };
}

/** Resolves with the result, or SIGKILLs the child after timeoutMs and resolves with that. */
export async function waitOrKill(child: MeasuredChild, timeoutMs: number): Promise<{ result: ChildResult; timedOut: boolean }> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), timeoutMs)));
  const first = await Promise.race([child.done, timeout]);
  clearTimeout(timer);
  if (first !== "timeout") return { result: first, timedOut: false };
  child.kill("SIGKILL");
  return { result: await child.done, timedOut: true };
}

/** One line describing how a child ended, for error messages. */
export function describeExit(result: ChildResult): string {
  const how = result.signal !== null ? `signal ${result.signal}` : `exit code ${result.exitCode}`;
  const stderr = result.stderrTail.trim().split("\n").slice(-5).join(" | ");
  return stderr ? `${how}: ${stderr}` : how;
}
