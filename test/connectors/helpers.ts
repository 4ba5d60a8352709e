/** Shared test fixtures for the connector suites: a logger that records, temp dirs, readers. */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Payload, Source } from "../../src/connector/types.ts";
import type { Logger } from "../../src/log/logger.ts";

export interface LogCall {
  level: "debug" | "info" | "warn" | "error";
  fields: Record<string, unknown>;
  msg: string | undefined;
}

export interface RecordingLogger extends Logger {
  readonly calls: LogCall[];
}

/** A Logger that keeps every call, so tests can assert what was logged. */
export function recordingLogger(calls: LogCall[] = [], bindings: Record<string, unknown> = {}): RecordingLogger {
  const record =
    (level: LogCall["level"]) =>
    (obj: object | string, msg?: string): void => {
      const fields = typeof obj === "string" ? { ...bindings } : { ...bindings, ...obj };
      calls.push({ level, fields, msg: typeof obj === "string" ? obj : msg });
    };
  return {
    calls,
    debug: record("debug"),
    info: record("info"),
    warn: record("warn"),
    error: record("error"),
    child: (more) => recordingLogger(calls, { ...bindings, ...more }),
  };
}

export async function makeTempDir(): Promise<{ dir: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "keyway-connectors-"));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

/** Reads batches until `count` values arrived (fails if the source ends first). */
export async function readValues(source: Source, count: number): Promise<Payload[]> {
  const values: Payload[] = [];
  while (values.length < count) {
    const batch = await source.read();
    if (batch === null) throw new Error(`source ended after ${values.length} of ${count} values`);
    for (const value of batch.values) values.push(value);
  }
  return values;
}

/** Polls `condition` on the event loop until it holds; the test's own timeout bounds the wait. */
export async function until(condition: () => boolean, pollMs = 5): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, pollMs));
}
