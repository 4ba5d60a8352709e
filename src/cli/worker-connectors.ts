/**
 * The connectors of one cluster worker, from the run's bindings: connector-protocol sources on
 * every worker (sessions spread by the cluster), the bundled sources and every sink on the first
 * worker, and a directory source's files spread over the workers when the run starts.
 */
import { filesOf, isDirectory, parseConnectorUri, sinkFromUri, sourceFromUri } from "../../connectors/index.ts";
import type { AppSpec } from "../app/spec.ts";
import type { Sink, Source } from "../connector/types.ts";
import type { ConnectorEdge, ClusterSessionPlacement, WorkerConnectors } from "../cluster/worker.ts";
import { ErrorCode, KeywayError } from "../errors.ts";
import type { Logger } from "../log/logger.ts";
import type { ConnectorServer } from "../protocol/index.ts";
import type { SessionCounts } from "../protocol/server.ts";
import type { PartitionFn } from "../runtime/dataflow.ts";
import type { BindingTable } from "./bindings.ts";
import { CONNECTOR_URI, connectorOptionsFromFlags, startConnectorServerFor, type ConnectorServerFlags } from "./connector-server.ts";

export function bindingsToJson(table: BindingTable): string {
  return JSON.stringify({ sources: Object.fromEntries(table.sources), sinks: Object.fromEntries(table.sinks) });
}

export function bindingsFromJson(json: string): BindingTable {
  try {
    const parsed = JSON.parse(json) as { sources: Record<string, string>; sinks: Record<string, string> };
    return { sources: new Map(Object.entries(parsed.sources)), sinks: new Map(Object.entries(parsed.sinks)) };
  } catch (err) {
    throw new KeywayError(ErrorCode.INTERNAL, `the cluster sent bindings that are not JSON: ${(err as Error).message}`);
  }
}

/** The directory a `file:` URI names, or undefined for any other binding. */
export function directoryOf(uri: string): string | undefined {
  if (uri === CONNECTOR_URI) return undefined;
  const parsed = parseConnectorUri(uri);
  return parsed.scheme === "file" && isDirectory(parsed.path) ? parsed.path : undefined;
}

/** A run whose every source is a file or a directory ends by itself. */
export function bindingsFinite(table: BindingTable): boolean {
  return [...table.sources.values()].every((uri) => uri !== CONNECTOR_URI && parseConnectorUri(uri).scheme === "file");
}

/** Per pipeline with a directory source: the files to spread over the workers, as file: URIs. */
export function directoryFiles(app: AppSpec, table: BindingTable): Array<{ pipeline: number; uris: string[] }> {
  return app.pipelines.flatMap((p, pipeline) => {
    const dir = directoryOf(table.sources.get(p.source.name)!);
    return dir === undefined ? [] : [{ pipeline, uris: filesOf(dir).map((f) => `file:${f}`) }];
  });
}

export interface BuiltWorkerConnectors {
  connectors: WorkerConnectors;
  edge?: ConnectorEdge & { close(): Promise<void>; sessionCounts(): SessionCounts };
  partition?: PartitionFn;
}

export async function buildWorkerConnectors(
  app: AppSpec,
  table: BindingTable,
  flags: ConnectorServerFlags,
  log: Logger,
  placement: ClusterSessionPlacement,
  first: boolean,
  /** Sinks on every worker, used where the coordinator is (etcd); else on the first worker only. */
  sinksEverywhere = false,
): Promise<BuiltWorkerConnectors> {
  const connectorOptions = connectorOptionsFromFlags(flags);
  const server: ConnectorServer | undefined = await startConnectorServerFor(app, table, flags, log, {
    ...(first ? {} : { listenDefault: "127.0.0.1:0" }),
    placement,
    streamClaim: (source, stream, connector) => placement.claimStream(source, stream, connector),
  });
  const sources = new Map<string, Source>();
  const sinks = new Map<string, Sink>();
  for (const [name, uri] of table.sources) {
    if (uri === CONNECTOR_URI) sources.set(name, server!.sourceFor(name));
    else if (first && directoryOf(uri) === undefined) sources.set(name, sourceFromUri(uri, connectorOptions));
  }
  if (first || sinksEverywhere) for (const [name, uri] of table.sinks) sinks.set(name, uri === CONNECTOR_URI ? server!.sinkFor(name) : sinkFromUri(uri, connectorOptions));
  const connectorSinks = new Set([...table.sinks].filter(([, uri]) => uri === CONNECTOR_URI).map(([name]) => name));
  return {
    connectors: { sources, sinks, sourceFromUri: (uri) => sourceFromUri(uri, connectorOptions), connectorSinks },
    ...(server === undefined
      ? {}
      : {
          partition: server.partition,
          edge: {
            address: server.address,
            rebalance: (reason) => server.rebalance(reason),
            sessionCount: () => {
              const counts = server.sessionCounts();
              return counts.source + counts.sink + counts.partitioner;
            },
            sessionCounts: () => server.sessionCounts(),
            credits: () => server.credits(),
            releaseStream: (source, stream) => server.releaseStream(source, stream),
            close: () => server.close(),
          },
        }),
  };
}
