/** The workers' logs in simulated time, kept in a ring: a failing seed prints the last lines before the failure. */
import type { Logger } from "../src/log/logger.ts";

export interface SimLog {
  logger(bindings: Record<string, unknown>): Logger;
  tail(): string[];
}

export function createSimLog(keep: number, debug: boolean): SimLog {
  const lines: string[] = [];
  const write = (level: string, bindings: Record<string, unknown>, obj: object | string, msg?: string) => {
    const text = typeof obj === "string" ? obj : `${msg ?? ""} ${JSON.stringify(obj, (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v))}`;
    lines.push(`${String(Date.now()).padStart(6)} ms ${level.padEnd(5)} ${Object.values(bindings).join("/")}: ${text}`);
    if (lines.length > keep) lines.shift();
  };
  const make = (bindings: Record<string, unknown>): Logger => ({
    debug: (obj, msg) => debug && write("debug", bindings, obj, msg),
    info: (obj, msg) => write("info", bindings, obj, msg),
    warn: (obj, msg) => write("warn", bindings, obj, msg),
    error: (obj, msg) => write("error", bindings, obj, msg),
    child: (more) => make({ ...bindings, ...more }),
  });
  return { logger: make, tail: () => [...lines] };
}
