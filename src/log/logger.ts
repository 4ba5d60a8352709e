import pino from "pino";

/** The logging surface the engine and connectors use; pino's logger satisfies it. */
export interface Logger {
  debug(obj: object | string, msg?: string): void;
  info(obj: object | string, msg?: string): void;
  warn(obj: object | string, msg?: string): void;
  error(obj: object | string, msg?: string): void;
  child(bindings: Record<string, unknown>): Logger;
}

export type LogLevel = "debug" | "info" | "warn" | "error" | "silent";

/** JSON lines on stderr, written synchronously so nothing is lost when the process exits. */
export function createLogger(level: LogLevel = "info"): Logger {
  return pino({ level, base: undefined }, pino.destination({ fd: 2, sync: true }));
}

/** A logger that drops everything, for embedding the engine where logs are unwanted. */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
