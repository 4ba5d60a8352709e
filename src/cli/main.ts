/**
 * keyway: the command line. Returns an exit code instead of exiting so tests can call it:
 * 0 success, 1 a runtime failure, 2 bad usage. Errors are one line; stacks only with --verbose.
 */
import { resolve as resolvePath } from "node:path";
import { Command, CommanderError, Option } from "commander";
import { connectorForms, sinkFromUri, sourceFromUri } from "../../connectors/index.ts";
import type { AppSpec } from "../app/spec.ts";
import type { Sink, Source } from "../connector/types.ts";
import { ErrorCode, isKeywayError, KeywayError } from "../errors.ts";
import { createLogger, type Logger, type LogLevel } from "../log/logger.ts";
import type { ConnectorServer } from "../protocol/index.ts";
import { STREAM_RETENTION_MS_DEFAULT } from "../protocol/source/retention.ts";
import { clusterTlsFromFlags, serverTlsFromFlags } from "../rpc/tls.ts";
import { checkSlotCount, SLOT_COUNT_DEFAULT } from "../routing/hash.ts";
import { checkBindings } from "../runtime/bindings.ts";
import { partitionerAfterKeyedStage } from "../runtime/dataflow.ts";
import { CHECKPOINT_TIMEOUT_MS_DEFAULT, MAX_UNCOMMITTED_RECORDS_DEFAULT, startEngine, type Engine, type EngineStats } from "../runtime/engine.ts";
import type { Coordinator, DepartedFigures } from "../cluster/coordinator.ts";
import { ETCD_FAILURE_TIMEOUT_MS_DEFAULT, FAILURE_TIMEOUT_MS_DEFAULT } from "../cluster/failure-timeouts.ts";
import { addClusterCommands } from "./cluster-commands.ts";
import { collectBindings, type BindingTable } from "./bindings.ts";
import type { BuiltWorkerConnectors } from "./worker-connectors.ts";
import { addConnectorLimitOptions, CONNECTOR_URI, LISTEN_DEFAULT, connectorLimitArgs, connectorOptionsFromFlags, loadCredentials, reloadOnSighup, startConnectorServerFor } from "./connector-server.ts";
import type { CredentialStore } from "../protocol/credentials.ts";
import { addConformanceCommand } from "./conformance-command.ts";
import { addConnectorCommand } from "./connector-command.ts";
import { loadApp } from "./load-app.ts";
import { positiveInt } from "./flags.ts";
import { formatSummary, startProgress } from "./progress.ts";
import type { ServedMetrics } from "../metrics/server.ts";
import { deferred } from "../util/deferred.ts";
import type { Dashboard } from "../dashboard/server.ts";
import { showCluster, showEngine, startDashboardFor } from "./dashboard.ts";

const WORKERS_JOIN_MS_MAX = 60_000;
const WORKERS_EXIT_GRACE_MS = 5_000;

const USAGE_CODES = new Set<string>([ErrorCode.USAGE, ErrorCode.BAD_URI, ErrorCode.UNKNOWN_NAME, ErrorCode.UNBOUND_NAME]);

const REPLICAS_DEFAULT = 2;
/** After lost state, what cannot close within this long is abandoned with the process. */
const STATE_LOST_EXIT_MS = 5000;

/** How long a stop by signal may take to deliver what the sinks hold. */
const SHUTDOWN_TIMEOUT_MS_DEFAULT = 30_000;

interface RunFlags {
  source: string[];
  sink: string[];
  config?: string;
  slots: number;
  maxFrameBytes?: number;
  logLevel: LogLevel;
  dataDir?: string;
  checkpointIntervalMs?: number;
  checkpointTimeoutMs?: number;
  maxUncommittedRecords?: number;
  shutdownTimeoutMs?: number;
  listen?: string;
  token?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsClientCa?: string;
  credentials?: string;
  credentialStore?: CredentialStore;
  clusterTlsCert?: string;
  clusterTlsKey?: string;
  clusterTlsCa?: string;
  maxBatchRecords?: number;
  maxMessageBytes?: number;
  idempotencyWindow?: number;
  sessionTimeoutMs?: number;
  maxStreamsPerSession?: number;
  maxStreamsPerSource?: number;
  maxStreamNameBytes?: number;
  streamRetentionMs?: number;
  workers: number;
  clusterListen?: string;
  migrationChunkKeys?: number;
  replicas?: number;
  failureTimeoutMs?: number;
  coordinator?: string;
  deadLetter?: string;
  httpListen?: string;
  metricsListen?: string;
  metrics?: ServedMetrics;
  progress: boolean;
  verbose: boolean;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

async function run(appPath: string, flags: RunFlags): Promise<number> {
  checkSlotCount(flags.slots);
  // Certificate files are read and checked before anything starts: a wrong path is a USAGE error at once.
  serverTlsFromFlags(flags);
  const clusterTls = clusterTlsFromFlags(flags);
  if (clusterTls !== undefined && flags.workers === 1 && flags.clusterListen === undefined && flags.coordinator === undefined) {
    throw new KeywayError(ErrorCode.USAGE, "--cluster-tls-cert, --cluster-tls-key and --cluster-tls-ca protect a cluster's links: give --workers N or --cluster-listen too");
  }
  // So is the credentials file: a malformed one is a USAGE error naming the problem.
  flags.credentialStore = loadCredentials(flags);
  const app = await loadApp(appPath);
  const table = collectBindings(flags.source, flags.sink, flags.config);
  checkBindings(app, table.sources.keys(), table.sinks.keys());
  const log = createLogger(flags.logLevel);
  const dashboard = await startDashboardFor(flags.httpListen, log);
  flags.metrics = flags.metricsListen === undefined ? undefined : await (await import("../metrics/server.ts")).startMetrics(flags.metricsListen, log);
  try {
    if (flags.workers > 1 || flags.clusterListen !== undefined || flags.coordinator !== undefined) return await runCluster(appPath, app, table, flags, log, dashboard);
    const server = await startConnectorServerFor(app, table, flags, log);
    const unhook = flags.credentialStore === undefined ? undefined : reloadOnSighup(flags.credentialStore, log);
    try {
      return await runEngine(app, table, flags, log, server, dashboard);
    } finally {
      unhook?.();
      await server?.close();
    }
  } finally {
    await dashboard?.close();
  }
}

async function runEngine(app: AppSpec, table: BindingTable, flags: RunFlags, log: Logger, server: ConnectorServer | undefined, dashboard: Dashboard | undefined): Promise<number> {
  const connectorOptions = connectorOptionsFromFlags(flags);
  const sources = new Map<string, Source>();
  const sinks = new Map<string, Sink>();
  for (const [name, uri] of table.sources) sources.set(name, uri === CONNECTOR_URI ? server!.sourceFor(name) : sourceFromUri(uri, connectorOptions));
  for (const [name, uri] of table.sinks) sinks.set(name, uri === CONNECTOR_URI ? server!.sinkFor(name) : sinkFromUri(uri, connectorOptions));
  const startedAt = performance.now();
  const engine = await startEngine(
    app,
    { sources, sinks },
    {
      slotCount: flags.slots,
      log,
      dataDir: flags.dataDir,
      checkpointIntervalMs: flags.checkpointIntervalMs,
      ...(flags.checkpointTimeoutMs === undefined ? {} : { checkpointTimeoutMs: flags.checkpointTimeoutMs }),
      ...(flags.maxUncommittedRecords === undefined ? {} : { maxUncommittedRecords: flags.maxUncommittedRecords }),
      ...(flags.deadLetter === undefined ? {} : { deadLetter: sinkFromUri(flags.deadLetter, connectorOptions) }),
      ...(server === undefined ? {} : { partition: server.partition }),
      ...flags.metrics?.engineOptions,
    },
  );
  await showEngine(dashboard, app, engine, flags.slots, server);
  flags.metrics?.bindEngine(engine, server, flags.slots);
  await runToEnd(engine, () => engine.stop(), flags);
  process.stderr.write(`keyway: ${formatSummary(engine.stats(), performance.now() - startedAt)}\n`);
  return 0;
}

/** A cluster keeps two copies of each slot unless told otherwise; replicas of a pipeline with several keyed stages are not built yet. */
function replicasFor(app: AppSpec, requested: number | undefined, log: Logger): number {
  const staged = app.pipelines.find((p) => p.steps.filter((s) => s.kind === "keyBy" || s.kind === "keyByPartitioner").length > 1);
  if (staged === undefined) return requested ?? REPLICAS_DEFAULT;
  if (requested !== undefined && requested > 1) {
    throw new KeywayError(ErrorCode.USAGE, `pipeline "${staged.name}" has more than one keyed stage, which replicated state does not support yet; run it with --replicas 1`);
  }
  if (requested === undefined) log.warn({ pipeline: staged.name }, "a pipeline with more than one keyed stage runs without replicas (--replicas 1): a worker's death stops the run");
  return 1;
}

/** With --workers or --cluster-listen this process is the cluster's first worker, holding the coordinator. */
async function runCluster(appPath: string, app: AppSpec, table: BindingTable, flags: RunFlags, log: Logger, dashboard: Dashboard | undefined): Promise<number> {
  if (flags.dataDir !== undefined) {
    throw new KeywayError(ErrorCode.USAGE, "--data-dir cannot be combined with a cluster yet: a cluster's state will survive through replication, not checkpoints");
  }
  if (flags.deadLetter !== undefined) throw new KeywayError(ErrorCode.USAGE, "--dead-letter is not supported in a cluster yet; run on one process, or without it");
  if (flags.streamRetentionMs !== undefined) {
    throw new KeywayError(ErrorCode.USAGE, "--stream-retention-ms cannot be combined with a cluster yet: a cluster does not retire source streams (its stream registry and replicated state remember their names)");
  }
  const late = app.pipelines.find(partitionerAfterKeyedStage);
  if (late !== undefined) {
    throw new KeywayError(ErrorCode.USAGE, `pipeline "${late.name}" keys by a partition function after a keyed stage, which runs on every worker; a cluster serves partition functions only before the first keyed stage`);
  }
  const token = flags.token ?? process.env.KEYWAY_TOKEN;
  const [{ startClusterWorker }, { launchLocalWorkers }, { buildWorkerConnectors, bindingsToJson, bindingsFinite, directoryFiles }, { clusterTransport }] = await Promise.all([
    import("../cluster/worker.ts"),
    import("../cluster/launcher.ts"),
    import("./worker-connectors.ts"),
    import("../cluster/control-rpc.ts"),
  ]);
  const replicas = replicasFor(app, flags.replicas, log);
  const failureTimeoutMs = flags.failureTimeoutMs ?? (flags.coordinator === undefined ? FAILURE_TIMEOUT_MS_DEFAULT : ETCD_FAILURE_TIMEOUT_MS_DEFAULT);
  const etcd =
    flags.coordinator === undefined
      ? undefined
      : await (await import("./etcd-coordinator.ts")).startEtcdControl(flags.coordinator, app, log, { slotCount: flags.slots, replicas, bindingsJson: bindingsToJson(table), finite: bindingsFinite(table), failureTimeoutMs }, table);
  let stateLost: Error | undefined;
  const losing = deferred<never>();
  const abandonRun = (err: Error): void => losing.reject(err);
  const lost = losing.promise;
  let edge: BuiltWorkerConnectors["edge"];
  const worker = await startClusterWorker({
    app,
    log,
    token,
    transport: clusterTransport(clusterTlsFromFlags(flags)),
    listen: flags.clusterListen ?? "127.0.0.1:0",
    role: {
      first: {
        slotCount: flags.slots,
        bindingsJson: bindingsToJson(table),
        finite: bindingsFinite(table),
        expectedWorkers: flags.workers,
        chunkKeys: flags.migrationChunkKeys,
        replicas,
        failureTimeoutMs,
      },
    },
    ...(etcd === undefined ? {} : { etcd }),
    connectors: async (_json, placement) => {
      const built = await buildWorkerConnectors(app, table, flags, log, placement, true, etcd !== undefined);
      edge = built.edge;
      return built;
    },
    spreadSources: () => directoryFiles(app, table),
    observe: flags.metrics?.workerObservers,
    onStateLost: (err) => {
      // Records sent to the lost slots will never finish: the run ends now, without waiting for them.
      stateLost = err;
      abandonRun(err);
      void worker.stop();
      setTimeout(() => process.exit(1), STATE_LOST_EXIT_MS).unref();
    },
  });
  log.info({ address: worker.address }, "serving workers");
  await showCluster(dashboard, app, worker, () => clusterTransport(clusterTlsFromFlags(flags)).clients(token), () => edge?.sessionCounts());
  flags.metrics?.bindWorker(worker);
  const join = flags.coordinator === undefined ? ["--join", worker.address] : ["--coordinator", flags.coordinator];
  const locals = flags.workers > 1 ? launchLocalWorkers(flags.workers - 1, appPath, join, token, flags.logLevel, localWorkerArgs(flags)) : undefined;
  // SIGHUP reloads this worker's credentials and is passed on to the local workers, which reload theirs.
  const unhook = flags.credentialStore === undefined ? undefined : reloadOnSighup(flags.credentialStore, log, () => locals?.signal("SIGHUP"));
  let startedAt = performance.now();
  let totals: EngineStats | undefined;
  let timer: NodeJS.Timeout | undefined;
  try {
    // Sources wait until every local worker has joined; a worker that cannot join fails the run.
    if (locals !== undefined) {
      await Promise.race([
        worker.coordinator!.waitForWorkers(flags.workers),
        locals.failed,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new KeywayError(ErrorCode.INTERNAL, `the ${flags.workers - 1} local workers did not join within ${WORKERS_JOIN_MS_MAX / 1000} s`)), WORKERS_JOIN_MS_MAX);
        }),
      ]).finally(() => clearTimeout(timer));
      startedAt = performance.now();
    }
    await Promise.race([runToEnd(worker.engine, () => worker.stop(), flags), lost]);
    totals = await clusterTotals(worker.coordinator!);
  } catch (err) {
    if (err !== stateLost) throw err;
  } finally {
    unhook?.();
    await worker.close();
    await locals?.stop(WORKERS_EXIT_GRACE_MS);
    await edge?.close();
    await etcd?.control.close();
  }
  if (stateLost !== undefined) throw stateLost;
  process.stderr.write(`keyway: ${formatSummary(totals ?? worker.engine.stats(), performance.now() - startedAt)}\n`);
  return 0;
}

/** The flags every local worker gets as this process has them: the same certificates, keys and CAs. */
function localWorkerArgs(flags: RunFlags): string[] {
  const args: string[] = [];
  const pass = (flag: string, value: string | undefined) => {
    if (value !== undefined) args.push(flag, resolvePath(value));
  };
  pass("--tls-cert", flags.tlsCert);
  pass("--tls-key", flags.tlsKey);
  pass("--tls-client-ca", flags.tlsClientCa);
  pass("--cluster-tls-cert", flags.clusterTlsCert);
  pass("--cluster-tls-key", flags.clusterTlsKey);
  pass("--cluster-tls-ca", flags.clusterTlsCa);
  pass("--credentials", flags.credentials);
  args.push(...connectorLimitArgs(flags));
  // Each local worker serves its own metrics, on any free port of the same host; each logs where.
  if (flags.metrics !== undefined) args.push("--metrics-listen", `${flags.metrics.address.replace(/:\d+$/, "")}:0`);
  return args;
}

/** The whole cluster's figures for the summary: every worker still there at the end, and those a shrink removed. */
async function clusterTotals(coordinator: Coordinator): Promise<EngineStats> {
  const { members, departed } = await coordinator.status();
  const sum = (pick: (s: DepartedFigures & { keys: bigint }) => bigint) => members.reduce((n, m) => n + (m.stats === undefined ? 0 : Number(pick(m.stats))), 0);
  return {
    recordsIn: sum((s) => s.recordsIn) + Number(departed.recordsIn),
    recordsOut: sum((s) => s.recordsOut) + Number(departed.recordsOut),
    // A departed worker's keys live on where its slots went.
    keys: sum((s) => s.keys),
    bufferedRecords: 0,
    checkpoints: 0,
    checkpointsAbandoned: 0,
    recordsForwarded: sum((s) => s.recordsForwarded) + Number(departed.recordsForwarded),
  };
}

/** Waits for the engine to finish, showing progress; SIGINT or SIGTERM stops it cleanly. */
async function runToEnd(engine: Engine, stop: () => Promise<void>, flags: RunFlags): Promise<void> {
  const stopProgress = flags.progress && process.stderr.isTTY ? startProgress(engine.stats, process.stderr) : () => {};

  let signals = 0;
  let deadline: NodeJS.Timeout | undefined;
  const onSignal = () => {
    signals++;
    // A second signal means the user will not wait for the flush.
    if (signals > 1) process.exit(130);
    const timeoutMs = flags.shutdownTimeoutMs ?? SHUTDOWN_TIMEOUT_MS_DEFAULT;
    deadline = setTimeout(() => {
      const held = engine.stats().bufferedRecords;
      process.stderr.write(
        `keyway: error [${ErrorCode.TIMED_OUT}]: stopping took longer than ${timeoutMs} ms (--shutdown-timeout-ms); ${held} records the sinks held were not delivered. ` +
          "They were not committed either: a source that replays (a connector, a file with --data-dir) sends them again after a restart\n",
      );
      process.exit(1);
    }, timeoutMs);
    void stop();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    await engine.done;
  } finally {
    clearTimeout(deadline);
    stopProgress();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

function buildProgram(): Command {
  const program = new Command("keyway")
    .description("Stateful stream processing: route records by key, keep state per key.")
    .version("0.1.0")
    .exitOverride()
    .showHelpAfterError(false);

  const runCommand = program
    .command("run")
    .description("Run an app: on one process by default, or as the first worker of a cluster.")
    .argument("<app>", "a .ts or .js module whose default export is a pipeline or an app")
    .option("--source <name=uri>", `bind a source: ${[...connectorForms(), CONNECTOR_URI].join(", ")} (repeatable)`, collect, [])
    .option("--sink <name=uri>", `bind a sink: ${[...connectorForms(), CONNECTOR_URI].join(", ")} (repeatable)`, collect, [])
    .option("--config <file>", 'JSON bindings: {"sources": {"NAME": "URI"}, "sinks": {"NAME": "URI"}}')
    .option("--slots <n>", "routing slots, a power of two", positiveInt("--slots"), SLOT_COUNT_DEFAULT)
    .option("--max-frame-bytes <n>", "longest frame or line a connector accepts (default 16 MiB)", positiveInt("--max-frame-bytes"))
    .option("--data-dir <dir>", "checkpoint state and source positions here, and resume from them at start")
    .option("--checkpoint-interval-ms <n>", "time between checkpoints with --data-dir (default 1000)", positiveInt("--checkpoint-interval-ms"))
    .option("--checkpoint-timeout-ms <ms>", `a checkpoint still waiting this long (for batches in hand, for sinks' acks) is given up, logged, and tried again at the next interval (default ${CHECKPOINT_TIMEOUT_MS_DEFAULT})`, positiveInt("--checkpoint-timeout-ms"))
    .option("--max-uncommitted-records <n>", `with --data-dir, a pipeline's source is read only while its output since the last checkpoint (what a crash sends its sink again) stays under this, and a checkpoint is taken at once when it is reached; keep it below the sink's id window (default ${MAX_UNCOMMITTED_RECORDS_DEFAULT})`, positiveInt("--max-uncommitted-records"))
    .option("--shutdown-timeout-ms <ms>", `after SIGINT or SIGTERM, exit 1 if the sinks have not taken every record in this long (default ${SHUTDOWN_TIMEOUT_MS_DEFAULT})`, positiveInt("--shutdown-timeout-ms"))
    .option("--listen <host:port>", `serve the gRPC connector protocol here (default ${LISTEN_DEFAULT}; starts when a binding is "connector" or the app uses a partitioner)`)
    .option("--token <token>", "the token connector sessions must present (default: env KEYWAY_TOKEN)")
    .option("--tls-cert <file>", "serve the connector protocol, and wss:// sources and sinks, over TLS with this certificate (PEM, with --tls-key)")
    .option("--tls-key <file>", "the private key of --tls-cert (PEM)")
    .option("--tls-client-ca <file>", "mutual TLS: refuse any connector without a client certificate this CA signed (PEM)")
    .option("--credentials <file>", "JSON: the tokens and client-certificate subjects connectors may present, each with the roles, targets and stream prefixes it may use; read again on SIGHUP (--token stays a credential with every scope)");
  addConnectorLimitOptions(runCommand)
    .option("--stream-retention-ms <ms>", `a connector source stream that no session has open and whose records are all committed is retired after this long: forgotten, so its next open starts it afresh at resume_after 0 (default ${STREAM_RETENTION_MS_DEFAULT}, an hour; not in a cluster)`, positiveInt("--stream-retention-ms"))
    .option("--workers <n>", "start this many local worker processes (this one included)", positiveInt("--workers"), 1)
    .option("--cluster-listen <host:port>", "serve other workers here, so `keyway worker --join` can add them (default with --workers: 127.0.0.1, any port)")
    .option("--cluster-tls-cert <file>", "mutual TLS between workers: this worker's certificate (PEM; with --cluster-tls-key and --cluster-tls-ca)")
    .option("--cluster-tls-key <file>", "the private key of --cluster-tls-cert (PEM)")
    .option("--cluster-tls-ca <file>", "the CA every worker's certificate must chain to: a peer without one is refused (PEM)")
    .option("--http-listen <host:port>", "serve a live dashboard here: workers, the slot map, keys and records/s, sessions, commit lag, recent events (a page over HTTP, pushed over a WebSocket)")
    .option("--dead-letter <uri>", "send records a function of the app throws on to this sink (any sink URI) as JSON lines, and go on; without it such a record stops the run")
    .option("--replicas <n>", "copies of each slot's state in a cluster, on distinct workers (default 2; fewer while there are fewer workers): the cluster survives losing replicas - 1 workers at once", positiveInt("--replicas"))
    .option("--failure-timeout-ms <ms>", `a worker silent this long is declared dead, fenced, and its slots led by their backups (default ${FAILURE_TIMEOUT_MS_DEFAULT})`, positiveInt("--failure-timeout-ms"))
    .option("--coordinator <uri>", "the control plane: embedded in the first worker (default), or etcd://HOST:PORT[,HOST:PORT...] so that any worker can hold the coordinator role and any worker may die")
    .option("--migration-chunk-keys <n>", "keys moved per step when slots move between workers (default 5000): fewer hold the moving slots for less time, and the move takes longer", positiveInt("--migration-chunk-keys"))
    .option("--metrics-listen <host:port>", "serve Prometheus metrics over HTTP here, at /metrics (local workers of --workers serve theirs on any free port of the same host, and log where)")
    .addOption(new Option("--log-level <level>", "log level").choices(["debug", "info", "warn", "error", "silent"]).default("info"))
    .option("--no-progress", "no live status line on a terminal")
    .option("--verbose", "print stack traces with errors", false)
    .exitOverride()
    .action(async (appPath: string, flags: RunFlags) => {
      program.setOptionValue("exitCode", await run(appPath, flags));
    });
  addConnectorCommand(program);
  addClusterCommands(program, (code) => program.setOptionValue("exitCode", code));
  addConformanceCommand(program, (code) => program.setOptionValue("exitCode", code));
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
