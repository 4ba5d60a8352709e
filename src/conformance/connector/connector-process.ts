/**
 * The connector under test as a child process: started with the engine's address, token and target
 * in KEYWAY_ENGINE, KEYWAY_TOKEN and KEYWAY_TARGET (and as {engine}, {token}, {target} in its
 * arguments), in a process group of its own so a kill reaches whatever it started. Its output is
 * kept: stdout because a sink may write there, stderr for the reasons of failed cases.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { substitute, type Placeholders } from "../fixture.ts";

/** Output kept per stream; a connector printing more than this loses the oldest part. */
const OUTPUT_BYTES_MAX = 256 * 1024 * 1024;
/** How long a killed connector may take to be reaped. */
const KILL_WAIT_MS = 5_000;
const STDERR_TAIL_CHARS = 600;

/**
 * Connectors still running. They live in process groups of their own (so a kill reaches their
 * children), which also means a signal to the harness does not reach them: whenever the harness
 * process exits, they are killed.
 */
const running = new Set<ConnectorProcess>();
process.once("exit", killAllConnectors);

/** SIGKILL to every connector still running (synchronous: safe in an "exit" handler). */
export function killAllConnectors(): void {
  for (const p of running) p.killGroup();
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** True when the harness killed it. */
  killed: boolean;
}

export class ConnectorProcess {
  private readonly child: ChildProcess;
  private out: string[] = [];
  private outBytes = 0;
  private err = "";
  private exitInfo: Exit | undefined;
  private killedByHarness = false;
  readonly exited: Promise<Exit>;

  constructor(command: readonly string[], values: Placeholders, env: Record<string, string>, onChange: () => void) {
    const [file, ...args] = command.map((part) => substitute(part, values));
    if (file === undefined) throw new Error("no connector command given (after --)");
    this.child = spawn(file, args, {
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
      env: { ...process.env, ...env },
    });
    this.child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      this.out.push(chunk);
      this.outBytes += chunk.length;
      while (this.outBytes > OUTPUT_BYTES_MAX && this.out.length > 1) this.outBytes -= this.out.shift()!.length;
      onChange();
    });
    this.child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
      this.err = (this.err + chunk).slice(-OUTPUT_BYTES_MAX / 16);
    });
    running.add(this);
    this.exited = new Promise<Exit>((resolve) => {
      this.child.on("error", (error) => {
        running.delete(this);
        this.err += `\ncannot start ${file}: ${error.message}`;
        this.exitInfo = { code: null, signal: null, killed: false };
        onChange();
        resolve(this.exitInfo);
      });
      this.child.on("close", (code, signal) => {
        running.delete(this);
        this.exitInfo ??= { code, signal, killed: this.killedByHarness };
        onChange();
        resolve(this.exitInfo);
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Undefined while it runs. */
  get exit(): Exit | undefined {
    return this.exitInfo;
  }

  stdout(): string {
    if (this.out.length > 1) this.out = [this.out.join("")];
    return this.out[0] ?? "";
  }

  stderr(): string {
    return this.err;
  }

  stderrTail(): string {
    const text = this.err.trim();
    return text.length > STDERR_TAIL_CHARS ? `...${text.slice(-STDERR_TAIL_CHARS)}` : text;
  }

  /** SIGKILL to its process group, at once. */
  killGroup(): void {
    if (this.exitInfo !== undefined) return;
    this.killedByHarness = true;
    const pid = this.child.pid;
    if (pid === undefined) return;
    try {
      process.kill(-pid, "SIGKILL");
    } catch {
      this.child.kill("SIGKILL");
    }
  }

  /** SIGKILL to its process group, then waits (bounded) until it is reaped. */
  async kill(): Promise<void> {
    if (this.exitInfo !== undefined) return;
    this.killGroup();
    await Promise.race([this.exited, new Promise((resolve) => setTimeout(resolve, KILL_WAIT_MS))]);
  }
}

export function describeExit(exit: Exit): string {
  if (exit.signal !== null) return `was killed by ${exit.signal}`;
  return `exited with code ${exit.code ?? "?"}`;
}
