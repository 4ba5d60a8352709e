/** Starts the connector-protocol server when the run's bindings or partitioners need it. */
import type { Command } from "commander";
import type { AppSpec } from "../app/spec.ts";
import type { Logger } from "../log/logger.ts";
import type { ConnectorServer, ConnectorServerOptions } from "../protocol/index.ts";
import { partitionerNames } from "../runtime/dataflow.ts";
import type { BindingTable } from "./bindings.ts";
import { serverTlsFromFlags } from "../rpc/tls.ts";
import { CredentialStore } from "../protocol/credentials.ts";
import { MAX_UNCOMMITTED_RECORDS_DEFAULT } from "../runtime/engine.ts";
import type { ConnectorOptions } from "../../connectors/index.ts";
import { SESSION_TIMEOUT_MS_DEFAULT } from "../rpc/keepalive.ts";
import { positiveInt } from "./flags.ts";

/** The URI that binds a source or sink to sessions of the gRPC connector protocol. */
export const CONNECTOR_URI = "connector";
export const LISTEN_DEFAULT = "127.0.0.1:7700";

export interface ConnectorServerFlags {
  listen?: string;
  token?: string;
  maxBatchRecords?: number;
  maxMessageBytes?: number;
  idempotencyWindow?: number;
  maxFrameBytes?: number;
  sessionTimeoutMs?: number;
  maxStreamsPerSession?: number;
  maxStreamsPerSource?: number;
  maxStreamNameBytes?: number;
  streamRetentionMs?: number;
  tlsCert?: string;
  tlsKey?: string;
  tlsClientCa?: string;
  /** --credentials FILE. */
  credentials?: string;
  /** The credentials, once loaded by loadCredentials (the same store a SIGHUP reloads). */
  credentialStore?: CredentialStore;
  /** With checkpoints, what a restart may send a sink again (sink sessions are told, R-SINK-REPLAY-WINDOW). */
  dataDir?: string;
  maxUncommittedRecords?: number;
}

type LimitFlag = "maxBatchRecords" | "maxMessageBytes" | "sessionTimeoutMs" | "idempotencyWindow" | "maxStreamsPerSession" | "maxStreamsPerSource" | "maxStreamNameBytes";

/** The connector protocol's limits: flags of `keyway run` and of `keyway worker`, which `run --workers N` passes them to. */
const LIMIT_OPTIONS: ReadonlyArray<readonly [flag: string, value: string, key: LimitFlag, help: string]> = [
  ["--max-batch-records", "<n>", "maxBatchRecords", "most records in one connector protocol batch (default 10000)"],
  ["--max-message-bytes", "<n>", "maxMessageBytes", "most bytes in one connector protocol message (default 16 MiB)"],
  ["--session-timeout-ms", "<ms>", "sessionTimeoutMs", `a connector that does not answer the engine's HTTP/2 pings this long loses its sessions: its streams are released, its unacked sink batches go to other sessions (default ${SESSION_TIMEOUT_MS_DEFAULT})`],
  ["--idempotency-window", "<n>", "idempotencyWindow", "idempotency ids remembered per connector source (default 100000)"],
  ["--max-streams-per-session", "<n>", "maxStreamsPerSession", "most streams one connector source session may open (default 1000)"],
  ["--max-streams-per-source", "<n>", "maxStreamsPerSource", "most streams the engine tracks per connector source, across sessions; each lives in every checkpoint (default 10000)"],
  ["--max-stream-name-bytes", "<n>", "maxStreamNameBytes", "longest stream name a connector source may open, in UTF-8 bytes (default 1024)"],
];

export function addConnectorLimitOptions(command: Command): Command {
  for (const [flag, value, , help] of LIMIT_OPTIONS) command.option(`${flag} ${value}`, help, positiveInt(flag));
  return command;
}

export type ConnectorLimitFlags = Pick<ConnectorServerFlags, LimitFlag>;

/** The limit flags given, as arguments for a local worker. */
export function connectorLimitArgs(flags: ConnectorLimitFlags): string[] {
  return LIMIT_OPTIONS.flatMap(([flag, , key]) => (flags[key] === undefined ? [] : [flag, String(flags[key])]));
}

/** The limit flags given, alone. */
export function connectorLimitsOf(flags: ConnectorLimitFlags): ConnectorLimitFlags {
  return Object.fromEntries(LIMIT_OPTIONS.flatMap(([, , key]) => (flags[key] === undefined ? [] : [[key, flags[key]]])));
}

/**
 * What the bundled connectors a URI builds take from the run's flags: --max-frame-bytes, and the
 * engine's certificate (--tls-cert, --tls-key) for the schemes that listen over TLS (wss://).
 */
export function connectorOptionsFromFlags(flags: ConnectorServerFlags): ConnectorOptions {
  const tls = serverTlsFromFlags(flags);
  return {
    ...(flags.maxFrameBytes === undefined ? {} : { maxFrameBytes: flags.maxFrameBytes }),
    ...(tls === undefined ? {} : { tls: { cert: tls.cert, key: tls.key } }),
  };
}

/** Reads --credentials (a USAGE error naming the problem for a bad file) with --token among them; undefined without the flag. */
export function loadCredentials(flags: ConnectorServerFlags): CredentialStore | undefined {
  if (flags.credentials === undefined) return undefined;
  const token = flags.token ?? process.env.KEYWAY_TOKEN;
  return new CredentialStore({ path: flags.credentials, clientCertificates: flags.tlsClientCa !== undefined, ...(token === undefined || token === "" ? {} : { token }) });
}

/**
 * SIGHUP reads the credentials file again, without a restart: new sessions get the new
 * credentials, and live sessions they no longer allow end. A file that does not parse is logged
 * and changes nothing. `also` runs after (to pass the signal on to local workers). Returns the
 * uninstall.
 */
export function reloadOnSighup(store: CredentialStore, log: Logger, also?: () => void): () => void {
  const onHangup = (): void => {
    const result = store.reload();
    if (result.ok) log.info({ file: store.path, credentials: result.credentials }, "credentials reloaded");
    else log.error({ file: store.path, err: result.error.message }, "credentials not reloaded: the ones in force stay");
    also?.();
  };
  process.on("SIGHUP", onHangup);
  return () => process.off("SIGHUP", onHangup);
}

/** Serves the connector protocol when a binding or partitioner needs it, or flags.listen asks for it. */
export async function startConnectorServerFor(
  app: AppSpec,
  table: BindingTable,
  flags: ConnectorServerFlags,
  log: Logger,
  cluster: Pick<ConnectorServerOptions, "placement" | "streamClaim"> & { listenDefault?: string } = {},
): Promise<ConnectorServer | undefined> {
  const bound = (bindings: Map<string, string>) => [...bindings].filter(([, uri]) => uri === CONNECTOR_URI).map(([name]) => name);
  const sourceTargets = bound(table.sources);
  const sinkTargets = bound(table.sinks);
  const partitioners = [...new Set(app.pipelines.flatMap(partitionerNames))];
  // Read (and checked) even when no server starts: a wrong path is reported either way.
  const tls = serverTlsFromFlags(flags);
  if (sourceTargets.length + sinkTargets.length + partitioners.length === 0 && flags.listen === undefined) return undefined;
  // grpc-js prints failures (a port in use) on stderr itself; the server reports each as one
  // KeywayError line, so grpc-js's own lines go to the log at debug level.
  const grpcLine = (...args: unknown[]) => log.debug({ grpc: args.join(" ") }, "grpc-js");
  // Loaded only when needed: gRPC and the protocol code add about half a second to start-up.
  const [{ setLogger }, { startConnectorServer }] = await Promise.all([import("@grpc/grpc-js"), import("../protocol/index.ts")]);
  setLogger({ debug: grpcLine, info: grpcLine, error: grpcLine });
  const server = await startConnectorServer({
    app,
    listen: flags.listen ?? cluster.listenDefault ?? LISTEN_DEFAULT,
    token: flags.token ?? process.env.KEYWAY_TOKEN,
    ...(tls === undefined ? {} : { tls }),
    ...(flags.credentialStore === undefined ? {} : { credentials: flags.credentialStore }),
    limits: {
      maxBatchRecords: flags.maxBatchRecords,
      maxMessageBytes: flags.maxMessageBytes,
      idempotencyWindow: flags.idempotencyWindow,
      maxStreamsPerSession: flags.maxStreamsPerSession,
      maxStreamsPerSource: flags.maxStreamsPerSource,
      maxStreamNameBytes: flags.maxStreamNameBytes,
    },
    sourceTargets,
    sinkTargets,
    partitioners,
    ...(cluster.placement === undefined ? {} : { placement: cluster.placement }),
    ...(cluster.streamClaim === undefined ? {} : { streamClaim: cluster.streamClaim }),
    ...(flags.sessionTimeoutMs === undefined ? {} : { sessionTimeoutMs: flags.sessionTimeoutMs }),
    ...(flags.streamRetentionMs === undefined ? {} : { streamRetentionMs: flags.streamRetentionMs }),
    ...(flags.dataDir === undefined ? {} : { replayRecordsPerPipeline: flags.maxUncommittedRecords ?? MAX_UNCOMMITTED_RECORDS_DEFAULT }),
    log,
  });
  const transport = tls === undefined ? "plaintext" : tls.clientCa === undefined ? "tls" : "mutual-tls";
  log.info({ address: server.address, transport, sources: sourceTargets, sinks: sinkTargets, partitioners }, `serving connectors on ${server.address}`);
  return server;
}
