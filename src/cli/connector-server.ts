/** Starts the connector-protocol server when the run's bindings or partitioners need it. */
import type { AppSpec } from "../app/spec.ts";
import type { Logger } from "../log/logger.ts";
import type { ConnectorServer, ConnectorServerOptions } from "../protocol/index.ts";
import { partitionerNames } from "../runtime/dataflow.ts";
import type { BindingTable } from "./bindings.ts";
import { serverTlsFromFlags } from "../rpc/tls.ts";

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
    log,
  });
  const transport = tls === undefined ? "plaintext" : tls.clientCa === undefined ? "tls" : "mutual-tls";
  log.info({ address: server.address, transport, sources: sourceTargets, sinks: sinkTargets, partitioners }, `serving connectors on ${server.address}`);
  return server;
}
