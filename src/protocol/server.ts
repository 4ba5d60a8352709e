/**
 * The engine's connector server: gRPC `keyway.v1.ConnectorService` (Describe and one
 * bidirectional call per source, sink or partitioner session) and grpc.health.v1, on one
 * address. It owns the engine-side Source and Sink objects of the app names bound to
 * `connector`, and the partition function that serves keyBy(partitioner(name)). In a cluster
 * every worker runs one, and a SessionPlacement says which sessions belong on which worker.
 */
import { Server, status as GrpcStatus, type ServerDuplexStream, type ServiceDefinition, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { HealthImplementation } from "grpc-health-check";
import type { AppSpec } from "../app/spec.ts";
import type { Sink, Source } from "../connector/types.ts";
import { ErrorCode as KeywayCode, KeywayError } from "../errors.ts";
import type { Logger } from "../log/logger.ts";
import type { PartitionFn } from "../runtime/dataflow.ts";
import { describeResponse } from "./describe.ts";
import { ConnectorService, ErrorCode } from "./gen/keyway/v1/connector_pb.ts";
import { isDecodeFailure, serverDefinition, type DecodeFailure } from "../rpc/grpc-adapter.ts";
import { CONNECTOR_CODECS } from "./wire/connector-codecs.ts";
import type { HandshakePolicy } from "./handshake.ts";
import { allowsStream, credentialStoreFor, streamPrefixesOf, type Authenticator } from "./credentials.ts";
import type { SourceRequest, SourceResponse } from "./gen/keyway/v1/connector_pb.ts";
import { resolveLimits, type ProtocolLimits } from "./limits.ts";
import { bindServer } from "../rpc/bind.ts";
import { parseListenAddress } from "../rpc/listen-address.ts";
import { keepaliveOptions, SESSION_TIMEOUT_MS_DEFAULT } from "../rpc/keepalive.ts";
import { serverCredentials } from "../rpc/tls-credentials.ts";
import type { ServerTls } from "../rpc/tls.ts";
import { PartitionerPool, type RequestIds } from "./partition/partitioner-pool.ts";
import { partitionerRole } from "./partition/partition-session.ts";
import { sessionRouting, type SessionPlacement } from "./placement.ts";
import { ProtocolError } from "./protocol-error.ts";
import { runSession, type RoleBinding, type SessionControl, type SessionHost } from "./session.ts";
import { ConnectorSink } from "./sink/connector-sink.ts";
import { sinkRole } from "./sink/sink-session.ts";
import { ConnectorSource } from "./source/connector-source.ts";
import { STREAM_RETENTION_MS_DEFAULT } from "./source/retention.ts";
import { sourceRole } from "./source/source-session.ts";

export interface ConnectorServerOptions {
  app: AppSpec;
  /** HOST:PORT; port 0 binds any free port. */
  listen: string;
  /** When set (and not empty), every session's Hello must carry it. */
  token?: string;
  /** Serve over TLS with this certificate; with a client CA, every connector must present a certificate it signed. Plaintext without. */
  tls?: ServerTls;
  /**
   * Who may open which sessions (`--credentials`; the token among them). Without it: the token
   * alone, with every scope; or with neither, under mutual TLS, any certificate the client CA
   * signed; or else anyone.
   */
  credentials?: Authenticator;
  limits?: Partial<ProtocolLimits>;
  /** App source names bound to `connector`. */
  sourceTargets: readonly string[];
  /** App sink names bound to `connector`. */
  sinkTargets: readonly string[];
  /** Partitioner names the app keys by. */
  partitioners: readonly string[];
  /** The cluster's say on where sessions belong. Without it this server is the whole engine. */
  placement?: SessionPlacement;
  /** In a cluster: a source stream opens here only once the cluster grants it (it may stand elsewhere). */
  streamClaim?: (source: string, stream: string, connector: string) => Promise<{ granted: boolean; resumeAfter: bigint; owner?: string }>;
  /**
   * A connector that does not answer HTTP/2 pings for this long (a stopped or hung process, a
   * host gone without closing its connections) loses its sessions: its streams are released and
   * its unacked sink batches go to other sessions. Default SESSION_TIMEOUT_MS_DEFAULT.
   */
  sessionTimeoutMs?: number;
  /**
   * A source stream with no session and nothing uncommitted is retired (forgotten: its next open
   * starts it afresh) after this long. Default STREAM_RETENTION_MS_DEFAULT. Not with streamClaim:
   * a cluster does not retire streams (its registry and replicated slots remember their names).
   */
  streamRetentionMs?: number;
  /**
   * With checkpoints: the most outputs per pipeline a restart may send its sink again
   * (--max-uncommitted-records). A sink session is told it, times the pipelines writing to its target.
   */
  replayRecordsPerPipeline?: number;
  log: Logger;
}

/** Live welcomed sessions by role. */
export interface SessionCounts {
  source: number;
  sink: number;
  partitioner: number;
}

export interface ConnectorServer {
  /** The bound HOST:PORT (the real port when asked for port 0). */
  readonly address: string;
  readonly limits: ProtocolLimits;
  /** The engine-side Source of a source target. */
  sourceFor(name: string): Source;
  /** The engine-side Sink of a sink target. */
  sinkFor(name: string): Sink;
  /** Serves keyBy(partitioner(name)): waits for the partitioner's sessions to answer. */
  readonly partition: PartitionFn;
  /** Tells every live session to reconnect to `address` (an operator's command). */
  redirectAll(address: string, reason: string): void;
  /**
   * Redirects every live session that the placement now puts on another worker (after the
   * cluster's membership changed); returns how many were redirected.
   */
  rebalance(reason: string): number;
  sessionCounts(): SessionCounts;
  /** Credits outstanding: granted to source connectors and not spent, and granted by sink connectors and not used. */
  credits(): { source: number; sink: number };
  /** In a cluster: gives a source's stream up to another worker once its records here are committed. */
  releaseStream(source: string, stream: string): Promise<{ released: boolean; position: bigint }>;
  /** Every live session gets Error SHUTTING_DOWN (status UNAVAILABLE); then the server stops. */
  close(): Promise<void>;
}

const SERVICE_NAME = ConnectorService.typeName;
/** grpc-js refuses messages over its own limit before our guard sees them: keep it well above ours. */
const GRPC_RECEIVE_HEADROOM_BYTES = 1024 * 1024;
/** How long close() lets sessions deliver their SHUTTING_DOWN before cutting every call. */
const CLOSE_GRACE_MS = 2000;

export async function startConnectorServer(options: ConnectorServerOptions): Promise<ConnectorServer> {
  const limits = resolveLimits(options.limits);
  const listen = parseListenAddress(options.listen);
  const log = options.log.child({ component: "connector-server" });
  const token = options.token === "" ? undefined : options.token;
  const auth: Authenticator | undefined = options.credentials ?? credentialStoreFor({ ...(token === undefined ? {} : { token }), clientCertificates: options.tls?.clientCa !== undefined });
  const policy = (targets: readonly string[]): HandshakePolicy => ({ auth, targets });

  const { streamClaim } = options;
  const streamRetentionMs = streamClaim === undefined ? (options.streamRetentionMs ?? STREAM_RETENTION_MS_DEFAULT) : undefined;
  const sources = new Map(options.sourceTargets.map((name) => [name, new ConnectorSource(name, limits, { streamRetentionMs })]));
  if (streamClaim !== undefined) for (const [name, source] of sources) source.setStreamClaim((stream, connector) => streamClaim(name, stream, connector));
  const sinks = new Map(options.sinkTargets.map((name) => [name, new ConnectorSink(name, limits)]));
  const requestIds: RequestIds = { next: 1n };
  const pools = new Map(options.partitioners.map((name) => [name, new PartitionerPool(name, limits, requestIds, { answerTimeoutMs: options.sessionTimeoutMs ?? SESSION_TIMEOUT_MS_DEFAULT, log })]));
  const live = new Set<SessionControl>();
  // Sessions arrive only once the server is bound, by which time the address is known.
  let address = "";
  const routing = sessionRouting(options.placement, () => address);
  const host: SessionHost = { live, routing, log };

  const server = new Server({
    "grpc.max_receive_message_length": limits.maxMessageBytes * 2 + GRPC_RECEIVE_HEADROOM_BYTES,
    ...keepaliveOptions(options.sessionTimeoutMs ?? SESSION_TIMEOUT_MS_DEFAULT),
  });
  const session = <Req, K>(binding: RoleBinding<Req, K>) => (call: ServerDuplexStream<Req | DecodeFailure, object>) =>
    runSession(call, binding, host);
  const implementation: UntypedServiceImplementation = {
    describe: (call: { request: unknown }, callback: (err: object | null, response?: object) => void) => {
      // As a session answers the same bytes (BATCH_TOO_LARGE, MALFORMED), by status alone: a unary call has no Error.
      if (isDecodeFailure(call.request)) return callback({ code: call.request.decodeFailure === "too_large" ? GrpcStatus.RESOURCE_EXHAUSTED : GrpcStatus.INVALID_ARGUMENT, details: call.request.reason });
      const served = { app: options.app.name, sources: options.sourceTargets, sinks: options.sinkTargets, partitioners: options.partitioners };
      callback(null, describeResponse(served, limits, auth?.tokenRequired ?? false, routing.addresses()));
    },
    source: session(scopedStreams(sourceRole(sources, policy(options.sourceTargets), limits))),
    sink: session(sinkRole(sinks, policy(options.sinkTargets), limits, replayRecords(options.app, options.replayRecordsPerPipeline))),
    partition: session(partitionerRole(pools, policy(options.partitioners), limits)),
  };
  server.addService(serverDefinition(ConnectorService, limits.maxMessageBytes, CONNECTOR_CODECS), implementation);
  addHealth(server, new HealthImplementation({ "": "SERVING", [SERVICE_NAME]: "SERVING" }));

  address = await bindServer(server, listen, "connectors", serverCredentials(options.tls));
  // A reload of the credentials applies to the live sessions too: a revoked or narrowed one ends.
  const unsubscribe = auth?.onChange(() => {
    for (const s of [...live]) s.reauthorize();
  });

  let closing: Promise<void> | undefined;
  return {
    address,
    limits,
    sourceFor: (name) => known(sources, "source", name),
    sinkFor: (name) => known(sinks, "sink", name),
    partition: (name, values) => known(pools, "partitioner", name).keys(values),
    redirectAll(to, reason) {
      for (const s of [...live]) s.redirect(to, reason);
    },
    rebalance(reason) {
      let moved = 0;
      for (const s of [...live]) {
        const to = s.identity === undefined ? undefined : routing.elsewhere(s.identity);
        if (to === undefined) continue;
        s.redirect(to, reason);
        moved++;
      }
      return moved;
    },
    releaseStream: (source, stream) => known(sources, "source", source).releaseStream(stream),
    sessionCounts() {
      const counts: SessionCounts = { source: 0, sink: 0, partitioner: 0 };
      for (const s of live) if (s.welcomed) counts[s.identity!.role]++;
      return counts;
    },
    credits() {
      let source = 0;
      let sink = 0;
      for (const s of sources.values()) source += s.creditsOutstanding();
      for (const s of sinks.values()) sink += s.creditsHeld();
      return { source, sink };
    },
    close() {
      unsubscribe?.();
      closing ??= new Promise<void>((resolve) => {
        for (const s of [...live]) s.fail(new ProtocolError(ErrorCode.SHUTTING_DOWN, "the engine is shutting down"));
        // No session can ack their output any more: a flush waiting for acks fails rather than waits for ever.
        for (const sink of sinks.values()) void sink.close();
        let closed = false;
        let force: NodeJS.Timeout | undefined;
        const done = (how: string) => {
          if (closed) return;
          closed = true;
          clearTimeout(force);
          log.info({ address, how }, "connector server closed");
          resolve();
        };
        // Health watchers never end by themselves; a bounded wait, then every call is cut. A
        // connection grpc-js holds but does not count as a session (one that never finished its
        // HTTP/2 preface) can keep tryShutdown from ever calling back: close() is bounded anyway.
        force = setTimeout(() => {
          server.forceShutdown();
          setTimeout(() => done("cut after the grace period"), CLOSE_GRACE_MS).unref();
        }, CLOSE_GRACE_MS);
        server.tryShutdown(() => done("every session ended"));
      });
      return closing;
    },
  };
}

/** Characters of a stream name an error quotes: a name not yet checked may be megabytes long. */
const QUOTED_NAME_MAX = 200;

/**
 * A source session may open only the streams its credential's prefixes allow: each OpenStream is
 * checked before the source sees it (PERMISSION_DENIED), and again, with every stream it opened,
 * when the credentials are reloaded.
 */
function scopedStreams(binding: RoleBinding<SourceRequest, SourceResponse["kind"]>): RoleBinding<SourceRequest, SourceResponse["kind"]> {
  return {
    ...binding,
    attach(channel) {
      const handler = binding.attach(channel);
      const opened = new Set<string>();
      const check = (stream: string): void => {
        const { credential, target } = channel;
        if (allowsStream(credential, target, stream)) return;
        const quoted = JSON.stringify(stream.length <= QUOTED_NAME_MAX ? stream : `${stream.slice(0, QUOTED_NAME_MAX)}...`);
        const prefixes = streamPrefixesOf(credential, target);
        throw new ProtocolError(
          ErrorCode.PERMISSION_DENIED,
          `credential "${credential.name}" may not open stream ${quoted} on source "${target}": ${prefixes.length === 0 ? "it opens no streams there" : `its stream names start with ${prefixes.map((p) => JSON.stringify(p)).join(" or ")}`}`,
        );
      };
      return {
        onMessage(request) {
          if (request.kind.case === "open") {
            check(request.kind.value.stream);
            opened.add(request.kind.value.stream);
          }
          handler.onMessage(request);
        },
        onEnd: () => handler.onEnd(),
        reauthorized() {
          for (const stream of opened) check(stream);
          handler.reauthorized?.();
        },
      };
    },
  };
}

/** Per sink target, the outputs a restart may send again: each pipeline writing there may resend its bound. */
function replayRecords(app: AppSpec, perPipeline: number | undefined): ((target: string) => number) | undefined {
  if (perPipeline === undefined) return undefined;
  return (target) => perPipeline * app.pipelines.filter((p) => p.sink.name === target).length;
}

function known<T>(targets: ReadonlyMap<string, T>, kind: string, name: string): T {
  const target = targets.get(name);
  if (target === undefined) throw new KeywayError(KeywayCode.INTERNAL, `no ${kind} "${name}" is served over the connector protocol`);
  return target;
}

/**
 * grpc.health.v1, from grpc-health-check, with its requests decoded as ours are: bytes that do not
 * decode get INVALID_ARGUMENT with the reason (grpc-js answers a throwing deserializer INTERNAL).
 */
function addHealth(server: Server, health: HealthImplementation): void {
  health.addToServer({
    addService(service: ServiceDefinition, implementation: UntypedServiceImplementation) {
      const guarded: Record<string, ServiceDefinition[string]> = {};
      const handlers: UntypedServiceImplementation = {};
      for (const [name, method] of Object.entries(service)) {
        guarded[name] = {
          ...method,
          requestDeserialize: (bytes: Buffer) => {
            try {
              return method.requestDeserialize(bytes);
            } catch (err) {
              const failure: DecodeFailure = { decodeFailure: "malformed", bytes: bytes.length, reason: `the request does not decode as ${method.path}: ${(err as Error).message}` };
              return failure;
            }
          },
        };
        // grpc-health-check names its handlers by the methods' original (lower camel) names.
        const handler = (implementation[name] ?? implementation[method.originalName ?? name]) as (call: { request: unknown; emit(event: string, err: object): void }, callback?: (err: object) => void) => void;
        handlers[name] = ((call: { request: unknown; emit(event: string, err: object): void }, callback?: (err: object) => void) => {
          if (!isDecodeFailure(call.request)) return handler(call, callback);
          const status = { code: GrpcStatus.INVALID_ARGUMENT, details: call.request.reason };
          if (callback !== undefined) callback(status);
          else call.emit("error", status);
        }) as never;
      }
      server.addService(guarded as ServiceDefinition, handlers);
    },
  } as unknown as Server);
}
