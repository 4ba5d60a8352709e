/**
 * keyway: the command line. Returns an exit code instead of exiting so tests can call it:
 * 0 success, 1 a runtime failure, 2 bad usage. Errors are one line; stacks only with --verbose.
 */
import { Command, CommanderError, Option } from "commander";
import { sinkFromUri, sourceFromUri } from "../../connectors/index.ts";
import type { Sink, Source } from "../connector/types.ts";
import { ErrorCode, isKeywayError, KeywayError } from "../errors.ts";
import { createLogger, type LogLevel } from "../log/logger.ts";
import { checkSlotCount, SLOT_COUNT_DEFAULT } from "../routing/hash.ts";
import { checkBindings } from "../runtime/bindings.ts";
import { startEngine } from "../runtime/engine.ts";
import { collectBindings } from "./bindings.ts";
import { loadApp } from "./load-app.ts";
import { formatSummary, startProgress } from "./progress.ts";

const USAGE_CODES = new Set<string>([ErrorCode.USAGE, ErrorCode.BAD_URI, ErrorCode.UNKNOWN_NAME, ErrorCode.UNBOUND_NAME]);

interface RunFlags {
  source: string[];
  sink: string[];
  config?: string;
  slots: number;
  maxFrameBytes?: number;
  logLevel: LogLevel;
  dataDir?: string;
  checkpointIntervalMs?: number;
  progress: boolean;
  verbose: boolean;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function positiveInt(flag: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isSafeInteger(n) || n <= 0) throw new KeywayError(ErrorCode.USAGE, `${flag} expects a positive integer, got "${value}"`);
    return n;
  };
}

async function run(appPath: string, flags: RunFlags): Promise<number> {
  checkSlotCount(flags.slots);
  const app = await loadApp(appPath);
  const table = collectBindings(flags.source, flags.sink, flags.config);
  checkBindings(app, table.sources.keys(), table.sinks.keys());
  const connectorOptions = flags.maxFrameBytes === undefined ? {} : { maxFrameBytes: flags.maxFrameBytes };
  const sources = new Map<string, Source>();
  const sinks = new Map<string, Sink>();
  for (const [name, uri] of table.sources) sources.set(name, sourceFromUri(uri, connectorOptions));
  for (const [name, uri] of table.sinks) sinks.set(name, sinkFromUri(uri, connectorOptions));

  const log = createLogger(flags.logLevel);
  const startedAt = performance.now();
  const engine = await startEngine(
    app,
    { sources, sinks },
    { slotCount: flags.slots, log, dataDir: flags.dataDir, checkpointIntervalMs: flags.checkpointIntervalMs },
  );
  const stopProgress = flags.progress && process.stderr.isTTY ? startProgress(engine.stats, process.stderr) : () => {};

  let signals = 0;
  const onSignal = () => {
    signals++;
    // A second signal means the user will not wait for the flush.
    if (signals > 1) process.exit(130);
    void engine.stop();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    await engine.done;
  } finally {
    stopProgress();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
  process.stderr.write(`keyway: ${formatSummary(engine.stats(), performance.now() - startedAt)}\n`);
  return 0;
}

function buildProgram(): Command {
  const program = new Command("keyway")
    .description("Stateful stream processing: route records by key, keep state per key.")
    .version("0.1.0")
    .exitOverride()
    .showHelpAfterError(false);

  program
    .command("run")
    .description("Run an app on the embedded single-process engine.")
    .argument("<app>", "a .ts or .js module whose default export is a pipeline or an app")
    .option("--source <name=uri>", "bind a source: file:PATH, tcp://HOST:PORT, tcp+lp://HOST:PORT (repeatable)", collect, [])
    .option("--sink <name=uri>", "bind a sink: file:PATH, tcp://HOST:PORT, tcp+lp://HOST:PORT (repeatable)", collect, [])
    .option("--config <file>", 'JSON bindings: {"sources": {"NAME": "URI"}, "sinks": {"NAME": "URI"}}')
    .option("--slots <n>", "routing slots, a power of two", positiveInt("--slots"), SLOT_COUNT_DEFAULT)
    .option("--max-frame-bytes <n>", "longest frame or line a connector accepts (default 16 MiB)", positiveInt("--max-frame-bytes"))
    .option("--data-dir <dir>", "checkpoint state and source positions here, and resume from them at start")
    .option("--checkpoint-interval-ms <n>", "time between checkpoints with --data-dir (default 1000)", positiveInt("--checkpoint-interval-ms"))
    .addOption(new Option("--log-level <level>", "log level").choices(["debug", "info", "warn", "error", "silent"]).default("info"))
    .option("--no-progress", "no live status line on a terminal")
    .option("--verbose", "print stack traces with errors", false)
    .exitOverride()
    .action(async (appPath: string, flags: RunFlags) => {
      program.setOptionValue("exitCode", await run(appPath, flags));
    });
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  const verbose = argv.includes("--verbose");
  try {
    await program.parseAsync(argv, { from: "user" });
    return (program.getOptionValue("exitCode") as number | undefined) ?? 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander has already printed help, the version or its own one-line error.
      return err.exitCode === 0 ? 0 : 2;
    }
    const code = isKeywayError(err) ? err.code : ErrorCode.INTERNAL;
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`keyway: error [${code}]: ${message}\n`);
    if (verbose && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
    return USAGE_CODES.has(code) ? 2 : 1;
  }
}
