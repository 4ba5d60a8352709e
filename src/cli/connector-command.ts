/**
 * `keyway connector <kind>`: the bundled connectors (connectors/) as processes of their own,
 * attached to a running engine over the connector protocol through the SDK. The engine binds the
 * name with `--source NAME=connector` or `--sink NAME=connector`.
 */
import { resolve } from "node:path";
import { Command, Option } from "commander";
import { fileSource, tcpSink, tcpSource, type Framing } from "../../connectors/index.ts";
import { ErrorCode, KeywayError } from "../errors.ts";
import { createLogger, type Logger, type LogLevel } from "../log/logger.ts";
import type { ConnectOptions } from "../sdk/index.ts";
import { parseEngineAddresses } from "../sdk/addresses.ts";
import { parseHostPort, type HostPort } from "../util/host-port.ts";
import { positiveInt } from "./flags.ts";
import { clientTlsFromFlags } from "../rpc/tls.ts";

/** The SDK (gRPC, protobuf) loads only when a connector runs, to keep other commands' start-up short. */
type Sdk = typeof import("../sdk/index.ts");

export const ENGINE_ADDRESS_DEFAULT = "127.0.0.1:7700";
/** Matches the engine's default idempotency window: enough for about two checkpoint intervals of output. */
export const DEDUP_WINDOW_IDS_DEFAULT = 100_000;

interface CommonFlags {
  engine: string;
  target: string;
  token?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  instanceId?: string;
  logLevel: LogLevel;
}

export function addConnectorCommand(program: Command): void {
  const connector = program
    .command("connector")
    .description("Run a bundled connector as its own process, attached to a running engine over gRPC.");

  common(connector.command("file-source"))
    .description("Send the lines of a file to an app source bound to `connector`; exits once the engine has committed them all.")
    .requiredOption("--path <file>", "the file to read")
    .option("--stream <name>", "the stream name, which the engine keeps positions under (default: the file's absolute path)")
    .action((flags: CommonFlags & { path: string; stream?: string }) =>
      run(program, flags, "file-source", (options, _log, sdk) =>
        sdk.runSource({ ...options, stream: flags.stream ?? resolve(flags.path) }, fileSource(flags.path)),
      ),
    );

  common(connector.command("file-sink"))
    .description("Append an app sink's output to a file, each output exactly once across restarts (ids kept in PATH.ids).")
    .requiredOption("--path <file>", "the file to append to")
    .option("--dedup-window <ids>", "how many recent record ids to remember", positiveInt("--dedup-window"), DEDUP_WINDOW_IDS_DEFAULT)
    .action((flags: CommonFlags & { path: string; dedupWindow: number }) =>
      run(program, flags, "file-sink", async (options, log, sdk) => {
        const { openExactlyOnceFileSink } = await import("../../connectors/file/exactly-once-file-sink.ts");
        const { sink, window } = await openExactlyOnceFileSink(flags.path, flags.dedupWindow, log);
        await sdk.runSink({ ...options, dedup: window }, sink);
      }),
    );

  common(connector.command("tcp-source"))
    .description("Listen for TCP clients and send their frames to an app source bound to `connector`.")
    .requiredOption("--listen <host:port>", "where to listen (port 0: any free port)")
    .addOption(framingOption())
    .option("--max-frame-bytes <n>", "the longest frame accepted (default 16 MiB)", positiveInt("--max-frame-bytes"))
    .option("--stream <name>", "the stream name (default: tcp:HOST:PORT as given)")
    .action((flags: CommonFlags & { listen: string; framing: Framing; maxFrameBytes?: number; stream?: string }) =>
      run(program, flags, "tcp-source", (options, _log, sdk) => {
        const { host, port } = address("--listen", flags.listen);
        const source = tcpSource({ host, port, framing: flags.framing, ...(flags.maxFrameBytes === undefined ? {} : { maxFrameBytes: flags.maxFrameBytes }) });
        return sdk.runSource({ ...options, stream: flags.stream ?? `tcp:${flags.listen}` }, source);
      }),
    );

  common(connector.command("tcp-sink"))
    .description("Write an app sink's output as frames to a TCP peer (at most once across a dropped connection).")
    .requiredOption("--connect <host:port>", "the peer to connect to")
    .addOption(framingOption())
    .action((flags: CommonFlags & { connect: string; framing: Framing }) =>
      run(program, flags, "tcp-sink", (options, _log, sdk) => {
        const { host, port } = address("--connect", flags.connect);
        if (port === 0) throw new KeywayError(ErrorCode.USAGE, "--connect needs the peer's port, not 0");
        return sdk.runSink(options, tcpSink({ host, port, framing: flags.framing }));
      }),
    );
}

function common(command: Command): Command {
  return command
    .option("--engine <host:port>", "the engine's connector address", ENGINE_ADDRESS_DEFAULT)
    .requiredOption("--target <name>", "the app's source or sink name this connector serves")
    .addOption(new Option("--token <token>", "the engine's shared secret").env("KEYWAY_TOKEN"))
    .option("--tls-ca <file>", "dial the engine over TLS, trusting this CA for its certificate (PEM)")
    .option("--tls-cert <file>", "mutual TLS: this connector's certificate (PEM, with --tls-key)")
    .option("--tls-key <file>", "the private key of --tls-cert (PEM)")
    .option("--instance-id <id>", "this instance's id, stable across its reconnects (default: host and pid)")
    .addOption(new Option("--log-level <level>", "log level").choices(["debug", "info", "warn", "error", "silent"]).default("info"))
    .option("--verbose", "print stack traces with errors", false);
}

function framingOption(): Option {
  return new Option("--framing <framing>", "frames on the wire").choices(["newline", "length-prefixed"]).default("newline");
}

/**
 * Runs a connector until it finishes, or until SIGINT/SIGTERM stops it gracefully (a second
 * signal exits at once), and records the exit code on the program as `keyway run` does.
 * Connector errors print as one line with their protocol code; others go to main's handler.
 */
async function run(
  program: Command,
  flags: CommonFlags,
  connectorName: string,
  body: (options: ConnectOptions, log: Logger, sdk: Sdk) => Promise<void>,
): Promise<void> {
  const sdk = await import("../sdk/index.ts");
  // A malformed --engine is the user's to fix: bad usage, before any session is tried.
  try {
    parseEngineAddresses(flags.engine);
  } catch (err) {
    throw new KeywayError(ErrorCode.USAGE, `--engine: ${(err as Error).message}`);
  }
  // Certificate files are read here, so a wrong path is bad usage naming the flag.
  const tls = clientTlsFromFlags(flags);
  const log = createLogger(flags.logLevel).child({ connector: connectorName, target: flags.target });
  const stop = new AbortController();
  let signals = 0;
  const onSignal = (): void => {
    if (++signals > 1) process.exit(130);
    stop.abort();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const options: ConnectOptions = {
    engine: flags.engine,
    target: flags.target,
    connectorName,
    log,
    signal: stop.signal,
    ...(flags.token === undefined ? {} : { token: flags.token }),
    ...(flags.instanceId === undefined ? {} : { instanceId: flags.instanceId }),
    ...(tls === undefined ? {} : { tls: true, ...(tls.ca === undefined ? {} : { tlsCa: tls.ca }), ...(tls.cert === undefined ? {} : { tlsCert: tls.cert, tlsKey: tls.key! }) }),
  };
  try {
    await body(options, log, sdk);
    program.setOptionValue("exitCode", 0);
  } catch (err) {
    if (!sdk.isConnectorError(err)) throw err;
    // An ending without a protocol code (a TLS mismatch found by the SDK) is labelled by its gRPC status.
    const label = err.code === sdk.ProtocolErrorCode.UNSPECIFIED ? (sdk.GrpcStatus[err.grpcStatus] ?? err.codeName) : err.codeName;
    process.stderr.write(`keyway: error [${label}]: ${err.message}\n`);
    program.setOptionValue("exitCode", 1);
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

function address(flag: string, value: string): HostPort {
  const parsed = parseHostPort(value);
  if ("error" in parsed) throw new KeywayError(ErrorCode.USAGE, `${flag} expects HOST:PORT, got "${value}": ${parsed.error}`);
  return parsed;
}
