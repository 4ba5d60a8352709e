/** `keyway worker` and `keyway cluster status|shrink`. */
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import type { Command } from "commander";
import { Option } from "commander";
import { ErrorCode, KeywayError } from "../errors.ts";
import { createLogger, type LogLevel } from "../log/logger.ts";
import type { StatusResponse } from "../protocol/gen/keyway/v1/cluster_pb.ts";
import type { ClusterTls } from "../rpc/tls.ts";
import type { BuiltWorkerConnectors } from "./worker-connectors.ts";
import { addConnectorLimitOptions, connectorLimitsOf, type ConnectorLimitFlags } from "./connector-server.ts";
import { showCluster, startDashboardFor } from "./dashboard.ts";
import { positiveInt } from "./flags.ts";
import { loadApp } from "./load-app.ts";

// gRPC and the cluster code load only when a cluster command runs, to keep other commands' start-up short.
const clusterModules = () => Promise.all([import("@grpc/grpc-js"), import("../cluster/control-rpc.ts"), import("../protocol/gen/keyway/v1/cluster_pb.ts")]);

interface ClusterClientFlags {
  token?: string;
  clusterTlsCert?: string;
  clusterTlsKey?: string;
  clusterTlsCa?: string;
}

async function clusterCall<O extends DescMessage>(address: string, flags: ClusterClientFlags, method: string, request: object, output: O): Promise<MessageShape<O>> {
  const { clusterTlsFromFlags } = await import("../rpc/tls.ts");
  const tls = clusterTlsFromFlags(flags);
  const [{ status: grpcStatus }, { createControlClients }] = await clusterModules();
  const clients = createControlClients(flags.token ?? process.env.KEYWAY_TOKEN, tls);
  return clients
    .call(address, method, request, output, 10 * 60_000)
    .catch((err: grpc.ServiceError) => {
      const unreachable = err.code === grpcStatus.UNAVAILABLE || err.code === grpcStatus.DEADLINE_EXCEEDED;
      const code = err.code === grpcStatus.UNAUTHENTICATED ? ErrorCode.UNAUTHENTICATED : unreachable || err.code === grpcStatus.NOT_FOUND || err.code === grpcStatus.FAILED_PRECONDITION ? ErrorCode.USAGE : ErrorCode.INTERNAL;
      throw new KeywayError(code, `${method.toLowerCase()} at ${address}: ${err.details || err.message}`);
    })
    .catch(async (err: unknown) => {
      // "Failed to connect" may be TLS: a cluster over mutual TLS, a certificate its CA did not sign.
      if (!(err instanceof KeywayError) || err.code !== ErrorCode.USAGE) throw err;
      const { diagnoseTls, mayBeTlsFailure, CLUSTER_CLIENT_TLS_WORDS } = await import("../rpc/tls-probe.ts");
      const why = mayBeTlsFailure(err.message) ? await diagnoseTls(address, tls, CLUSTER_CLIENT_TLS_WORDS).catch(() => undefined) : undefined;
      throw why === undefined ? err : new KeywayError(ErrorCode.USAGE, `${method.toLowerCase()} at ${address}: ${why}`);
    })
    .finally(() => clients.close());
}

/** Status as plain JSON: the shape `cluster status --json` prints and docs/operations.md lists. */
export function statusJson(status: StatusResponse) {
  return {
    app: status.app,
    epoch: Number(status.epoch),
    slotCount: status.slotCount,
    replicas: Math.max(1, status.replicas),
    underReplicated: status.underReplicated,
    fenced: status.fenced,
    workers: status.workers.map((w) => ({
      id: w.id,
      address: w.address,
      connectorAddress: w.connectorAddress,
      coordinator: w.coordinator,
      data: w.data,
      reachable: w.reachable,
      slots: w.slots,
      backups: w.backups,
      pid: w.stats?.pid ?? 0,
      keys: Number(w.stats?.keys ?? 0),
      recordsPerSecond: w.stats?.recordsPerSecond ?? 0,
      connectorSessions: w.stats?.connectorSessions ?? 0,
      sources: w.stats?.sources ?? [],
      backlogOut: Number(w.stats?.backlogOut ?? 0),
      backlogIn: Number(w.stats?.backlogIn ?? 0),
      recordsForwarded: Number(w.stats?.recordsForwarded ?? 0),
    })),
  };
}

function formatStatus(status: StatusResponse): string {
  const json = statusJson(status);
  const header = ["worker", "address", "pid", "leads", "follows", "keys", "records/s", "sessions", "backlog out/in", "sources"];
  const widths = [8, 18, 8, 7, 9, 10, 11, 10, 16, 0];
  const row = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join("").trimEnd();
  const rows = json.workers.map((w) =>
    row([
      w.id + (w.coordinator ? " *" : "") + (w.reachable ? "" : " !"),
      w.address,
      String(w.pid),
      w.data ? String(w.slots) : "-",
      w.data ? String(w.backups) : "-",
      String(w.keys),
      w.recordsPerSecond.toFixed(0),
      String(w.connectorSessions),
      `${w.backlogOut}/${w.backlogIn}`,
      w.sources.join(","),
    ]),
  );
  const copies = json.underReplicated === 0 ? "every slot has its copies" : `${json.underReplicated} slots short of a copy (being rebuilt)`;
  return [
    `app ${json.app}, epoch ${json.epoch}, ${json.slotCount} slots, ${json.workers.length} workers (* coordinator, ! unreachable, - no data role)`,
    `replicas ${json.replicas}: ${copies}${json.fenced.length === 0 ? "" : `; fenced: ${json.fenced.join(", ")}`}`,
    row(header),
    ...rows,
  ].join("\n");
}

interface WorkerFlags extends ConnectorLimitFlags {
  join?: string;
  coordinator?: string;
  listen: string;
  connectorListen?: string;
  token?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsClientCa?: string;
  credentials?: string;
  clusterTlsCert?: string;
  clusterTlsKey?: string;
  clusterTlsCa?: string;
  httpListen?: string;
  metricsListen?: string;
  logLevel: LogLevel;
}

/**
 * A join that failed to connect may have failed at TLS (a certificate the cluster's CA did not
 * sign, a cluster without TLS, or the reverse): grpc-js says only "Failed to connect", so a probe
 * names the cause.
 */
async function explainJoinFailure(err: unknown, address: string, tls: ClusterTls | undefined): Promise<unknown> {
  const prefix = err instanceof KeywayError ? /^(join refused by|cannot reach the cluster at) /.exec(err.message)?.[1] : undefined;
  if (prefix === undefined) return err;
  const { diagnoseTls, mayBeTlsFailure, WORKER_TLS_WORDS } = await import("../rpc/tls-probe.ts");
  if (!mayBeTlsFailure((err as Error).message)) return err;
  const why = await diagnoseTls(address, tls, WORKER_TLS_WORDS).catch(() => undefined);
  return why === undefined ? err : new KeywayError(ErrorCode.USAGE, `${prefix} ${address}: ${why}`);
}

/** How long a worker that leaves waits for its sources to close and its output to flush. */
const WORKER_STOP_MS = 10_000;
/** How long each close after a worker's stop may take (connections, the dashboard, etcd). */
const WORKER_CLOSE_MS = 3_000;

/** Waits for a step of a worker's stop, at most `ms`; its failure is ignored. */
function bounded(step: Promise<unknown> | undefined, ms: number): Promise<unknown> {
  return Promise.race([Promise.resolve(step).catch(() => undefined), new Promise((resolve) => setTimeout(resolve, ms).unref())]);
}

/** After a failure: connections to peers out of reach may never close, so once its error is out the process ends regardless. */
function exitSoon(): void {
  setTimeout(() => process.exit(1), 1000).unref();
}

export function addClusterCommands(program: Command, setExitCode: (code: number) => void): void {
  const workerCommand = program
    .command("worker")
    .description("Join a running cluster as a worker: it takes a share of the slots and of the connector sessions.")
    .argument("<app>", "the same app module the cluster runs")
    .option("--join <host:port>", "the cluster address of any worker (a cluster with an embedded coordinator)")
    .option("--coordinator <uri>", "etcd://HOST:PORT[,HOST:PORT...]: find the cluster of this app on etcd (a cluster started with --coordinator)")
    .option("--listen <host:port>", "where this worker serves other workers", "127.0.0.1:0")
    .option("--connector-listen <host:port>", "where this worker serves the connector protocol, when the run binds a connector (default 127.0.0.1, any port)");
  addConnectorLimitOptions(workerCommand)
    .option("--token <token>", "the cluster token, also the connector token (default: env KEYWAY_TOKEN)")
    .option("--tls-cert <file>", "serve the connector protocol over TLS with this certificate (PEM, with --tls-key)")
    .option("--tls-key <file>", "the private key of --tls-cert (PEM)")
    .option("--tls-client-ca <file>", "mutual TLS: refuse any connector without a client certificate this CA signed (PEM)")
    .option("--credentials <file>", "JSON: the tokens and client-certificate subjects connectors may present, each with the roles, targets and stream prefixes it may use; read again on SIGHUP")
    .option("--cluster-tls-cert <file>", "mutual TLS between workers: this worker's certificate (PEM; with --cluster-tls-key and --cluster-tls-ca, as the cluster's other workers have them)")
    .option("--cluster-tls-key <file>", "the private key of --cluster-tls-cert (PEM)")
    .option("--cluster-tls-ca <file>", "the CA every worker's certificate must chain to (PEM)")
    .option("--http-listen <host:port>", "serve a live dashboard of the cluster here (a page over HTTP, pushed over a WebSocket)")
    .option("--metrics-listen <host:port>", "serve Prometheus metrics over HTTP here, at /metrics")
    .addOption(new Option("--log-level <level>", "log level").choices(["debug", "info", "warn", "error", "silent"]).default("info"))
    .option("--verbose", "print stack traces with errors", false)
    .action(async (appPath: string, flags: WorkerFlags) => {
      if ((flags.join === undefined) === (flags.coordinator === undefined)) throw new KeywayError(ErrorCode.USAGE, "keyway worker needs one of --join HOST:PORT or --coordinator etcd://HOST:PORT");
      const { clusterTlsFromFlags, serverTlsFromFlags } = await import("../rpc/tls.ts");
      serverTlsFromFlags(flags);
      const clusterTls = clusterTlsFromFlags(flags);
      const { loadCredentials, reloadOnSighup } = await import("./connector-server.ts");
      const token = flags.token ?? process.env.KEYWAY_TOKEN;
      const credentialStore = loadCredentials({ ...flags, token });
      const log = createLogger(flags.logLevel);
      // At once: the first worker passes its SIGHUP on to local workers, which may still be starting.
      const unhook = credentialStore === undefined ? undefined : reloadOnSighup(credentialStore, log);
      const app = await loadApp(appPath);
      const [{ startClusterWorker }, { buildWorkerConnectors, bindingsFromJson }, { clusterTransport }, { startMetrics }] = await Promise.all([
        import("../cluster/worker.ts"),
        import("./worker-connectors.ts"),
        import("../cluster/control-rpc.ts"),
        import("../metrics/server.ts"),
      ]);
      const metrics = await startMetrics(flags.metricsListen, log);
      const etcd = flags.coordinator === undefined ? undefined : await (await import("./etcd-coordinator.ts")).joinEtcdCluster(flags.coordinator, app, log);
      let edge: BuiltWorkerConnectors["edge"];
      const dashboard = await startDashboardFor(flags.httpListen, log).catch(async (err: unknown) => {
        await etcd?.control.close();
        throw err;
      });
      const worker = await startClusterWorker({
        app,
        log,
        token,
        transport: clusterTransport(clusterTls),
        listen: flags.listen,
        role: { join: etcd?.leader.address ?? flags.join! },
        observe: metrics?.workerObservers,
        ...(etcd === undefined ? {} : { etcd: { control: etcd.control, config: etcd.config } }),
        connectors: async (json, placement) => {
          const connectorFlags = { ...connectorLimitsOf(flags), listen: flags.connectorListen, token, tlsCert: flags.tlsCert, tlsKey: flags.tlsKey, tlsClientCa: flags.tlsClientCa, credentialStore };
          const built = await buildWorkerConnectors(app, bindingsFromJson(json), connectorFlags, log, placement, false, etcd !== undefined);
          edge = built.edge;
          return built;
        },
      }).catch(async (err: unknown) => {
        // The connector edge started before the join: left open, it kept a refused worker alive.
        await bounded(edge?.close(), WORKER_CLOSE_MS);
        await bounded(dashboard?.close(), WORKER_CLOSE_MS);
        await bounded(metrics?.close(), WORKER_CLOSE_MS);
        await bounded(etcd?.control.close(), WORKER_CLOSE_MS);
        exitSoon();
        throw await explainJoinFailure(err, etcd?.leader.address ?? flags.join!, clusterTls);
      });
      await showCluster(dashboard, app, worker, () => clusterTransport(clusterTls).clients(token), () => edge?.sessionCounts());
      metrics?.bindWorker(worker);
      // A worker holding the coordinator role ends the run on SIGTERM, as `keyway run` does.
      const onSignal = () => {
        if (worker.coordinator === undefined) process.exit(143);
        void worker.stop();
      };
      process.once("SIGTERM", onSignal);
      let failed = false;
      try {
        const reason = await worker.finished;
        log.info({ reason }, "leaving the cluster");
      } catch (err) {
        failed = true;
        throw err;
      } finally {
        process.off("SIGTERM", onSignal);
        unhook?.();
        // A fenced worker's output may have nowhere to go, and its peers and etcd may be out of
        // reach: each step of its stop is bounded, and a step that fails neither replaces the error
        // nor keeps the process from ending (an etcd close that threw once did both).
        await bounded(worker.engine.stop(), WORKER_STOP_MS);
        await bounded(worker.close(), WORKER_CLOSE_MS);
        await bounded(dashboard?.close(), WORKER_CLOSE_MS);
        await bounded(edge?.close(), WORKER_CLOSE_MS);
        await bounded(etcd?.control.close(), WORKER_CLOSE_MS);
        if (failed) exitSoon();
      }
      setExitCode(0);
    });

  const cluster = program.command("cluster").description("Watch and resize a running cluster.");
  cluster
    .command("status")
    .description("Workers, their slots, keys, sessions, sources, exchange backlogs and rates; the map's epoch.")
    .requiredOption("--address <host:port>", "the cluster address of any worker")
    .option("--token <token>", "the cluster token (default: env KEYWAY_TOKEN)")
    .option("--cluster-tls-cert <file>", "a cluster over mutual TLS: a certificate its CA signed (PEM; with --cluster-tls-key and --cluster-tls-ca)")
    .option("--cluster-tls-key <file>", "the private key of --cluster-tls-cert (PEM)")
    .option("--cluster-tls-ca <file>", "the CA the workers' certificates chain to (PEM)")
    .option("--json", "print JSON", false)
    .action(async (flags: ClusterClientFlags & { address: string; json: boolean }) => {
      const [, , { StatusResponseSchema }] = await clusterModules();
      const status = await clusterCall(flags.address, flags, "Status", {}, StatusResponseSchema);
      process.stdout.write(`${flags.json ? JSON.stringify(statusJson(status)) : formatStatus(status)}\n`);
      setExitCode(0);
    });
  cluster
    .command("shrink")
    .description("Remove workers (or the first worker's data role): their slots, state and sessions move to the others, then they exit.")
    .requiredOption("--address <host:port>", "the cluster address of any worker")
    .option("--worker <id>", "a worker to remove (repeatable); w0 gives up its data role and stays as the coordinator", (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option("--count <n>", "remove the newest n workers", positiveInt("--count"))
    .option("--token <token>", "the cluster token (default: env KEYWAY_TOKEN)")
    .option("--cluster-tls-cert <file>", "a cluster over mutual TLS: a certificate its CA signed (PEM; with --cluster-tls-key and --cluster-tls-ca)")
    .option("--cluster-tls-key <file>", "the private key of --cluster-tls-cert (PEM)")
    .option("--cluster-tls-ca <file>", "the CA the workers' certificates chain to (PEM)")
    .action(async (flags: ClusterClientFlags & { address: string; worker: string[]; count?: number }) => {
      const count = flags.count ?? 0;
      if (flags.worker.length === 0 && count === 0) {
        throw new KeywayError(ErrorCode.USAGE, "cluster shrink needs --worker ID or --count N");
      }
      const [, , { ShrinkResponseSchema }] = await clusterModules();
      const response = await clusterCall(flags.address, flags, "Shrink", { workerIds: flags.worker, count }, ShrinkResponseSchema);
      process.stdout.write(`removed ${response.removed.join(", ")}\n`);
      setExitCode(0);
    });
}
