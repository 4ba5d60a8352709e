/**
 * A connector's fixture (JSON, given with --fixture): what the harness needs to know about a
 * connector beyond the protocol. How to feed its upstream before it starts, which records that
 * yields, and how to read what it did outside the protocol: what a source acknowledged upstream,
 * what a sink wrote downstream. Everything is optional; cases that need a missing part are skipped.
 *
 * Strings may hold placeholders, replaced per case: {engine} {token} {target} {workdir} {case}
 * {run} {fixture_dir}.
 */
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { promisify } from "node:util";
import type { Role } from "./wire.ts";

const execFileP = promisify(execFile);

/** How to read a number or a list of lines from outside the protocol. */
export type Probe =
  | { file: string; format?: ProbeFormat }
  | { command: string[]; format?: ProbeFormat }
  | { stdout: true; format?: ProbeFormat };

/** "lines": one item per non-empty line; "number": the whole output is one integer. */
export type ProbeFormat = "lines" | "number";

export interface AckProbe {
  probe: Probe;
  /** "acked" (default): the probe reads how many records were acknowledged; "remaining": how many are not. */
  counts?: "acked" | "remaining";
}

export interface Fixture {
  role?: Role;
  /** The target name the connector serves; KEYWAY_TARGET and {target}. Default "conformance". */
  target?: string;
  /** Source: the values of the records the upstream yields, in order, each distinct. */
  records?: string[];
  /** Source: whether the records arrive in the order listed (default true). */
  ordered?: boolean;
  /** Source: whether it ends its stream (EndStream) once the records are sent (default false). */
  finite?: boolean;
  /**
   * Source: how it replays after its own process restarts. "position" (default): it re-reads its
   * upstream by position, so records keep their positions. "queue": the upstream redelivers what
   * was not acknowledged, with new positions and stable idempotency ids.
   */
  replay?: "position" | "queue";
  /** Run before the connector first starts in each case. */
  feed?: { files?: Array<{ path: string; content?: string; lines?: string[] }>; commands?: string[][] };
  /** Run after each case. */
  cleanup?: { commands?: string[][] };
  /** Source: how many records it has acknowledged to its upstream. */
  acks?: AckProbe;
  /** Sink: the values it has written downstream. */
  written?: Probe;
  /**
   * Sink: the value of generated output record i of batch seq; placeholders plus {seq} {i}.
   */
  sink_value?: string;
  /** Sink: the same for the values of several MiB (default sink_value); {pad} marks the padding. */
  sink_large_value?: string;
  /** Sink and partitioner: whether values of several MiB may be sent (default true). */
  large_values?: boolean;
  /** Partitioner: the pool of values the cases send (by index). */
  values?: string[];
  /** Partitioner: the key (as text) each value must get. */
  keys?: Record<string, string>;
  /** Extra environment for the connector. */
  env?: Record<string, string>;
  /** How long the connector may take to open its first session after it starts (default 20000). */
  startup_timeout_ms?: number;
}

export const DEFAULT_TARGET = "conformance";
export const DEFAULT_PARTITION_VALUES = ["ann", "bob", "cy", "dee", "ed", "flo"];
export const DEFAULT_SINK_VALUE = "{case} {seq}.{i}";
export const STARTUP_TIMEOUT_MS_DEFAULT = 20_000;
const FEED_COMMAND_TIMEOUT_MS = 60_000;
const PROBE_COMMAND_TIMEOUT_MS = 10_000;
/** A sink's output may hold values of several MiB (the large-message cases). */
const PROBE_OUTPUT_BYTES_MAX = 256 * 1024 * 1024;

export interface LoadedFixture {
  fixture: Fixture;
  /** The directory of the fixture file: {fixture_dir}. */
  dir: string;
}

export function loadFixture(path: string | undefined): LoadedFixture {
  if (path === undefined) return { fixture: {}, dir: process.cwd() };
  const absolute = resolve(path);
  const fixture = JSON.parse(readFileSync(absolute, "utf8")) as Fixture;
  if (fixture.records !== undefined) {
    if (!Array.isArray(fixture.records) || fixture.records.some((r) => typeof r !== "string")) throw new Error(`${path}: records must be strings`);
    if (new Set(fixture.records).size !== fixture.records.length) throw new Error(`${path}: records must be distinct, so each can be recognised`);
  }
  return { fixture, dir: dirname(absolute) };
}

export type Placeholders = Record<string, string>;

export function substitute(text: string, values: Placeholders): string {
  return text.replace(/\{([a-z_]+)\}/g, (whole, name: string) => values[name] ?? whole);
}

/** Writes the feed files and runs the feed commands. */
export async function feed(fixture: Fixture, values: Placeholders): Promise<void> {
  for (const file of fixture.feed?.files ?? []) {
    const path = substitute(file.path, values);
    mkdirSync(dirname(path), { recursive: true });
    const content = file.content ?? (file.lines ?? fixture.records ?? []).map((l) => `${l}\n`).join("");
    writeFileSync(path, content);
  }
  for (const command of fixture.feed?.commands ?? []) await runCommand(command, values, FEED_COMMAND_TIMEOUT_MS, "feed");
}

export async function cleanup(fixture: Fixture, values: Placeholders): Promise<void> {
  for (const command of fixture.cleanup?.commands ?? []) {
    await runCommand(command, values, FEED_COMMAND_TIMEOUT_MS, "cleanup").catch(() => undefined);
  }
}

async function runCommand(command: string[], values: Placeholders, timeoutMs: number, what: string): Promise<string> {
  const [file, ...args] = command.map((part) => substitute(part, values));
  if (file === undefined) throw new Error(`fixture ${what} command is empty`);
  try {
    const { stdout } = await execFileP(file, args, { timeout: timeoutMs, maxBuffer: PROBE_OUTPUT_BYTES_MAX });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`fixture ${what} command "${[file, ...args].join(" ")}" failed: ${(e.stderr ?? "").trim() || e.message}`);
  }
}

/** Reads a probe; `stdout` is the connector's standard output so far. */
export async function readProbe(probe: Probe, values: Placeholders, stdout: () => string): Promise<string[] | number> {
  let text: string;
  if ("stdout" in probe) text = stdout();
  else if ("file" in probe) {
    const path = substitute(probe.file, values);
    text = existsSync(path) ? readFileSync(path, "utf8") : "";
  } else text = await runCommand(probe.command, values, PROBE_COMMAND_TIMEOUT_MS, "probe");
  if ((probe.format ?? "lines") === "number") {
    const n = Number(text.trim() === "" ? "0" : text.trim().split(/\s+/)[0]);
    if (!Number.isFinite(n)) throw new Error(`probe printed "${text.trim().slice(0, 80)}", not a number`);
    return n;
  }
  return text.split("\n").filter((line) => line !== "");
}

/** How many records the source acknowledged upstream, per its fixture. */
export async function readAcked(acks: AckProbe, total: number, values: Placeholders, stdout: () => string): Promise<number> {
  const read = await readProbe(acks.probe, values, stdout);
  const n = typeof read === "number" ? read : read.length;
  return acks.counts === "remaining" ? total - n : n;
}
