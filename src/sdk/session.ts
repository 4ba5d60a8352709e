/**
 * What every role (source, sink, partitioner) shares: the connection options, the Hello/Welcome
 * handshake, and the loop that keeps one session open, reconnecting with backoff after it ends,
 * following Redirect, failing over to the cluster's other workers when its worker is unreachable,
 * and stopping for good on a configuration error.
 *
 * Each session gets its own gRPC channel. A reused channel would apply grpc-js's own reconnect
 * backoff (up to two minutes) underneath ours, and a Redirect needs a new address anyway.
 */
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { silentLogger, type Logger } from "../log/logger.ts";
import { clientDefinition } from "../rpc/grpc-adapter.ts";
import { CONNECTOR_CODECS } from "../protocol/wire/connector-codecs.ts";
import {
  ConnectorService,
  ErrorCode,
  HelloSchema,
  type Hello,
  type Welcome,
} from "../protocol/gen/keyway/v1/connector_pb.ts";
import { knownAddresses, learnAddresses, nextAddress, parseEngineAddresses } from "./addresses.ts";
import { backoffDelayMs, resolveBackoff, type BackoffOptions } from "../util/backoff.ts";
import { keepaliveOptions } from "../rpc/keepalive.ts";
import { ConnectorError } from "./errors.ts";
import { channelCredentials } from "../rpc/tls-credentials.ts";
import type { ClientTls } from "../rpc/tls.ts";
import { diagnoseTls, mayBeTlsFailure } from "../rpc/tls-probe.ts";

/** The protocol version this SDK speaks. */
export const PROTOCOL_VERSION = { major: 1, minor: 0 } as const;

export interface ConnectOptions {
  /**
   * The engine's connector address, HOST:PORT; or several, separated by commas, of the workers of
   * one cluster. The connector dials the first, and when its worker is unreachable moves on to the
   * next of these and of the addresses the engine lists in its Welcome (protocol §13.4).
   */
  engine: string;
  /** The name in the app this connector serves: a source, sink or partitioner name. */
  target: string;
  /** The engine's shared secret, when it requires one. */
  token?: string;
  /**
   * TLS: the CA the engine's certificate must chain to, as a PEM file's path or its bytes. Giving
   * any of tlsCa, tlsCert, tlsKey (or tls: true) dials over TLS; none dials plaintext.
   */
  tlsCa?: string | Uint8Array;
  /** Mutual TLS: this connector's certificate (a PEM path or bytes), with tlsKey. */
  tlsCert?: string | Uint8Array;
  /** Mutual TLS: the private key of tlsCert (a PEM path or bytes). */
  tlsKey?: string | Uint8Array;
  /** Dial over TLS even without tlsCa, trusting the system's CAs. */
  tls?: boolean;
  /** What this connector is, e.g. "rabbitmq-source"; the engine logs it. */
  connectorName: string;
  /** Distinguishes instances of one connector; stable across reconnects. Default: host and pid. */
  instanceId?: string;
  /** Optional protocol features this connector supports. */
  capabilities?: string[];
  log?: Logger;
  backoff?: Partial<BackoffOptions>;
  /** Aborting stops the connector gracefully (see each role for what it drains first). */
  signal?: AbortSignal;
  /** A session without a Welcome this long after dialling is abandoned and retried. */
  handshakeTimeoutMs?: number;
  /** The largest message accepted from the engine; it sends at most its own max_message_bytes. */
  maxReceiveMessageBytes?: number;
  /**
   * An engine that does not answer an HTTP/2 ping for this long (it hangs, or its host is gone
   * without closing the connection) ends the session, which then reconnects: pings go every half
   * of it, and time out after the other half (protocol R-TRANSPORT-KEEPALIVE).
   */
  keepaliveTimeoutMs?: number;
  /**
   * Give up (reject with the last error) after this many consecutive failed sessions, rather
   * than retry a persistent failure forever in silence. Default: never give up.
   */
  maxConsecutiveFailures?: number;
}

export const HANDSHAKE_TIMEOUT_MS_DEFAULT = 10_000;
export const MAX_RECEIVE_MESSAGE_BYTES_DEFAULT = 64 * 1024 * 1024;
export const KEEPALIVE_TIMEOUT_MS_DEFAULT = 20_000;

export interface ResolvedConnectOptions {
  /** The configured engine addresses, the first dialled first. */
  engines: string[];
  target: string;
  token: string;
  /** Plaintext when undefined. */
  tls: ClientTls | undefined;
  connectorName: string;
  instanceId: string;
  capabilities: string[];
  log: Logger;
  backoff: BackoffOptions;
  signal: AbortSignal | undefined;
  handshakeTimeoutMs: number;
  maxReceiveMessageBytes: number;
  keepaliveTimeoutMs: number;
  maxConsecutiveFailures: number;
}

export function resolveConnectOptions(options: ConnectOptions): ResolvedConnectOptions {
  const engines = parseEngineAddresses(options.engine);
  if (options.target === "") throw new RangeError("target must name a source, sink or partitioner of the app");
  const handshakeTimeoutMs = options.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS_DEFAULT;
  const maxReceiveMessageBytes = options.maxReceiveMessageBytes ?? MAX_RECEIVE_MESSAGE_BYTES_DEFAULT;
  positiveInteger("handshakeTimeoutMs", handshakeTimeoutMs);
  positiveInteger("maxReceiveMessageBytes", maxReceiveMessageBytes);
  const keepaliveTimeoutMs = positiveInteger("keepaliveTimeoutMs", options.keepaliveTimeoutMs ?? KEEPALIVE_TIMEOUT_MS_DEFAULT);
  const maxConsecutiveFailures = options.maxConsecutiveFailures ?? Infinity;
  if (maxConsecutiveFailures !== Infinity) positiveInteger("maxConsecutiveFailures", maxConsecutiveFailures);
  return {
    engines,
    target: options.target,
    token: options.token ?? "",
    tls: resolveTls(options),
    connectorName: options.connectorName,
    instanceId: options.instanceId ?? `${hostname()}-${process.pid}`,
    capabilities: options.capabilities ?? [],
    log: options.log ?? silentLogger(),
    backoff: resolveBackoff(options.backoff),
    signal: options.signal,
    handshakeTimeoutMs,
    maxReceiveMessageBytes,
    keepaliveTimeoutMs,
    maxConsecutiveFailures,
  };
}

/** The TLS material, read from its files; a file that cannot be read or holds no PEM throws, naming the option and the path. */
export function resolveTls(options: Pick<ConnectOptions, "tls" | "tlsCa" | "tlsCert" | "tlsKey">): ClientTls | undefined {
  const { tlsCa, tlsCert, tlsKey } = options;
  if (tlsCa === undefined && tlsCert === undefined && tlsKey === undefined) return options.tls === true ? {} : undefined;
  if ((tlsCert === undefined) !== (tlsKey === undefined)) throw new RangeError("tlsCert and tlsKey go together: this connector's certificate and its private key");
  const pem = (name: string, value: string | Uint8Array): Buffer => {
    if (typeof value !== "string") return Buffer.from(value);
    let bytes: Buffer;
    try {
      bytes = readFileSync(value);
    } catch (err) {
      throw new Error(`${name}: cannot read ${value} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
    if (!bytes.includes("-----BEGIN ")) throw new Error(`${name}: ${value} holds no PEM data (expected "-----BEGIN ...")`);
    return bytes;
  };
  return {
    ...(tlsCa === undefined ? {} : { ca: pem("tlsCa", tlsCa) }),
    ...(tlsCert === undefined ? {} : { cert: pem("tlsCert", tlsCert), key: pem("tlsKey", tlsKey!) }),
  };
}

export function positiveInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`${name} must be a positive integer, got ${value}`);
  return value;
}

export type Role = "Source" | "Sink" | "Partition";

/** Every role's response: a oneof whose welcome, error and redirect cases the loop handles. */
export interface RoleResponse {
  kind: { case: string | undefined; value?: unknown };
}

export interface RoleHandler<Req, Own extends RoleResponse> {
  /** The role's request carrying Hello. */
  hello(hello: Hello): Req;
  /** The handshake succeeded; the session is live. */
  welcomed(session: Session<Req>, welcome: Welcome): void;
  /** Any message after the Welcome other than Error and Redirect. */
  message(session: Session<Req>, message: Own): void;
  /** The session is over; anything tied to it is void. Called once per session that started. */
  ended(session: Session<Req>): void;
}

/** How long a half-closed session may take to end before it is cancelled. */
const HALF_CLOSE_TIMEOUT_MS = 5_000;

/** One gRPC call: one session with the engine. */
export class Session<Req> {
  private isLive = true;
  /** Why we ended the call, when we did; reported instead of grpc's "Cancelled". */
  closeReason: string | undefined;
  private halfCloseTimer: NodeJS.Timeout | undefined;

  constructor(private readonly call: grpc.ClientDuplexStream<Req, unknown>) {}

  /** False once the session has ended, or we have begun ending it. */
  get live(): boolean {
    return this.isLive;
  }

  /**
   * Writes a request. Callers bound what they write by credits (a source) or by what the engine
   * sent (acks, keys, credit grants), so grpc's own buffer stays bounded without consulting it.
   */
  write(request: Req): void {
    if (this.isLive) this.call.write(request);
  }

  /** Ends the session at once; the engine resends whatever it had not had settled. */
  cancel(reason: string): void {
    if (!this.isLive) return;
    this.isLive = false;
    this.closeReason = reason;
    this.call.cancel();
  }

  /**
   * Ends the session the polite way (R-SHUTDOWN-CONNECTOR): the engine answers with status OK.
   * An engine that does not answer within HALF_CLOSE_TIMEOUT_MS has the call cancelled instead.
   */
  halfClose(reason: string): void {
    if (!this.isLive) return;
    this.isLive = false;
    this.closeReason = reason;
    this.call.end();
    this.halfCloseTimer = setTimeout(() => this.call.cancel(), HALF_CLOSE_TIMEOUT_MS);
  }

  markEnded(): void {
    this.isLive = false;
    clearTimeout(this.halfCloseTimer);
  }
}

type Outcome =
  | { kind: "redirect"; address: string; reason: string; healthy: boolean }
  /** workerLost: the worker is gone or going, so the next attempt should try another (R-FAILOVER). */
  | { kind: "ended"; error: ConnectorError; healthy: boolean; workerLost: boolean };

/**
 * Sessions at a redirected address that its worker ended with an Error before returning to the
 * configured one (R-REDIRECT: the target may have moved again, or back). An unreachable redirected
 * address is left at once, as any unreachable worker is (R-FAILOVER).
 */
const REDIRECT_FAILURES_MAX = 3;
/** Consecutive failures between two warnings while the engine stays unreachable. */
const FAILURES_PER_WARNING = 10;

/**
 * Keeps one session of a role open until stop() or a configuration error. `done` resolves after
 * stop() once the last session has ended, and rejects with the error fail() was given.
 */
export class SessionLoop<Req, Own extends RoleResponse> {
  readonly done: Promise<void>;
  private address: string;
  /** The cluster_addresses of the latest Welcome. */
  private learned: readonly string[] = [];
  /** At an address a Redirect named, until a failover moves on from it. */
  private redirected = false;
  /** Consecutive sessions that ended without staying up long enough to count as healthy. */
  private failures = 0;
  private failuresAtAddress = 0;
  private stopped = false;
  private failure: unknown;
  private current: Session<Req> | null = null;
  private wake: (() => void) | null = null;
  private readonly log: Logger;

  constructor(
    private readonly options: ResolvedConnectOptions,
    private readonly role: Role,
    private readonly handler: RoleHandler<Req, Own>,
  ) {
    this.address = options.engines[0]!;
    this.log = options.log;
    this.done = this.loop();
  }

  /**
   * Stops reconnecting and ends the current session: by half-closing when the role has settled
   * everything it received, else by cancelling.
   */
  stop(how: "half-close" | "cancel" = "cancel"): void {
    this.stopped = true;
    if (how === "half-close") this.current?.halfClose("the connector finished");
    else this.current?.cancel("the connector stopped");
    this.wake?.();
  }

  /** Stops, making `done` reject with err. The first failure wins. */
  fail(err: unknown): void {
    if (this.failure === undefined) this.failure = err;
    this.stop();
  }

  private async loop(): Promise<void> {
    // Lets the constructor return (and callers attach to `done`) before the first dial.
    await Promise.resolve();
    while (!this.stopped) {
      const outcome = await this.runSession();
      if (this.stopped) break;
      if (outcome.healthy) this.failures = 0;
      let delayMs: number;
      if (outcome.kind === "redirect") {
        this.log.info({ role: this.role, from: this.address, to: outcome.address, reason: outcome.reason }, "engine redirected the session");
        this.address = outcome.address;
        this.redirected = true;
        this.failuresAtAddress = 0;
        // The first redirect is followed at once; a chain of them backs off like failures.
        delayMs = this.failures === 0 ? 0 : backoffDelayMs(this.options.backoff, this.failures);
        this.failures++;
      } else {
        const { error } = outcome;
        if (error.isConfigurationError) {
          this.log.error({ role: this.role, engine: this.address, code: error.codeName, err: error.message }, "configuration error; not reconnecting");
          this.fail(error);
          break;
        }
        this.failures++;
        if (this.failures >= this.options.maxConsecutiveFailures) {
          this.log.error({ role: this.role, engine: this.address, failures: this.failures, err: error.message }, "giving up after consecutive failures");
          this.fail(error);
          break;
        }
        const failedAt = this.address;
        if (outcome.workerLost) {
          this.failOver();
        } else if (this.redirected && ++this.failuresAtAddress >= REDIRECT_FAILURES_MAX) {
          this.log.warn({ role: this.role, from: this.address, to: this.options.engines[0] }, "redirected address keeps failing; returning to the configured engine");
          this.address = this.options.engines[0]!;
          this.redirected = false;
        }
        // The first failure after a healthy session waits at most initialMs, so a failover is
        // near-immediate; a cluster whose every worker is down is retried with growing delays.
        delayMs = backoffDelayMs(this.options.backoff, this.failures);
        const fields = { role: this.role, engine: failedAt, next: this.address, attempt: this.failures, retryInMs: delayMs, code: error.codeName, err: error.message };
        // R-ERROR-RETRY: repeated failures stay visible without a line per attempt.
        if (this.failures === 1) this.log.warn(fields, "session ended; reconnecting");
        else if (this.failures % FAILURES_PER_WARNING === 0) this.log.warn(fields, "still failing to keep a session; retrying");
        else this.log.debug(fields, "reconnect attempt failed; retrying");
      }
      if (delayMs > 0) await this.sleep(delayMs);
    }
    if (this.failure !== undefined) throw this.failure;
  }

  /** The next attempt goes to the next known address: the configured ones, then the cluster's. */
  private failOver(): void {
    const next = nextAddress(knownAddresses(this.options.engines, this.learned), this.address);
    this.redirected = false;
    if (next === this.address) return;
    this.log.info({ role: this.role, from: this.address, to: next }, "engine unreachable; failing over to the next known address");
    this.address = next;
  }

  private sleep(delayMs: number): Promise<void> {
    return new Promise((resolve) => {
      const finish = (): void => {
        clearTimeout(timer);
        this.wake = null;
        resolve();
      };
      const timer = setTimeout(finish, delayMs);
      this.wake = finish;
    });
  }

  private runSession(): Promise<Outcome> {
    const { options, role, handler } = this;
    const address = this.address;
    const client = new grpc.Client(address, channelCredentials(options.tls), {
      // ENVIRONMENT.md and protocol §16.3: grpc-js's per-call retry buffer dominates the cost of
      // small messages, and this protocol recovers by replay, never by gRPC retries.
      "grpc.per_rpc_retry_buffer_size": 0,
      "grpc.enable_retries": 0,
      "grpc.max_receive_message_length": options.maxReceiveMessageBytes,
      ...keepaliveOptions(options.keepaliveTimeoutMs),
    });
    const method = METHODS[role];
    const call = client.makeBidiStreamRequest(
      method.path,
      method.requestSerialize as (request: Req) => Buffer,
      method.responseDeserialize as (bytes: Buffer) => Own,
    );
    const session = new Session<Req>(call as grpc.ClientDuplexStream<Req, unknown>);
    this.current = session;
    let engineError: { code: ErrorCode; message: string } | undefined;
    let redirect: { address: string; reason: string } | undefined;
    let welcomedAtMs: number | undefined;
    const handshakeTimer = setTimeout(
      () => session.cancel(`no Welcome within ${options.handshakeTimeoutMs} ms`),
      options.handshakeTimeoutMs,
    );

    call.on("data", (response: Own) => {
      if (!session.live) return;
      try {
        const kind = response.kind;
        if (kind.case === "error") {
          engineError = kind.value as { code: ErrorCode; message: string };
        } else if (kind.case === "redirect") {
          redirect = kind.value as { address: string; reason: string };
        } else if (kind.case === "welcome") {
          if (welcomedAtMs !== undefined) return session.cancel("the engine sent a second Welcome");
          clearTimeout(handshakeTimer);
          const welcome = kind.value as Welcome;
          if (welcome.version?.major !== PROTOCOL_VERSION.major) {
            engineError = {
              code: ErrorCode.UNSUPPORTED_VERSION,
              message: `the engine answered with protocol version ${welcome.version?.major ?? 0}.${welcome.version?.minor ?? 0}; this SDK speaks ${PROTOCOL_VERSION.major}.${PROTOCOL_VERSION.minor}`,
            };
            return session.cancel(engineError.message);
          }
          welcomedAtMs = Date.now();
          this.learned = learnAddresses(this.learned, welcome.clusterAddresses);
          this.log.debug({ role, engine: address, sessionId: welcome.sessionId, credits: welcome.initialCredits }, "session welcomed");
          handler.welcomed(session, welcome);
        } else if (kind.case === undefined) {
          // R-VERSION-UNKNOWN-FIELDS: a kind from a newer minor shows up unset; ignore it.
        } else if (welcomedAtMs === undefined) {
          session.cancel(`the engine sent "${kind.case}" before its Welcome`);
        } else {
          handler.message(session, response);
        }
      } catch (err) {
        // A broken invariant or a throwing user callback: stop loudly rather than limp on.
        this.fail(err);
      }
    });
    // Every ending also arrives as a 'status' event, which is where it is handled.
    call.on("error", () => {});

    const outcome = new Promise<Outcome>((resolve) => {
      call.on("status", (status: grpc.StatusObject) => {
        clearTimeout(handshakeTimer);
        session.markEnded();
        if (this.current === session) this.current = null;
        client.close();
        if (welcomedAtMs !== undefined) {
          try {
            handler.ended(session);
          } catch (err) {
            this.fail(err);
          }
        }
        const healthy = welcomedAtMs !== undefined && Date.now() - welcomedAtMs >= options.backoff.resetAfterMs;
        if (redirect !== undefined && redirect.address !== "") {
          resolve({ kind: "redirect", address: redirect.address, reason: redirect.reason, healthy });
          return;
        }
        const code = engineError?.code ?? ErrorCode.UNSPECIFIED;
        const why =
          engineError !== undefined
            ? `${ErrorCode[code] ?? code}: ${engineError.message}`
            : (session.closeReason ?? `${grpc.status[status.code] ?? status.code}: ${status.details}`);
        const error = new ConnectorError(
          code,
          status.code,
          `${role.toLowerCase()} session with engine ${address} (target "${options.target}") ended: ${why}`,
        );
        // No Error at all (a failed dial, a broken connection, no Welcome in time) or SHUTTING_DOWN:
        // the worker is gone or going. Any other Error came from a live worker, which keeps serving.
        const workerLost = engineError === undefined || engineError.code === ErrorCode.SHUTTING_DOWN;
        const dialFailed = engineError === undefined && welcomedAtMs === undefined && session.closeReason === undefined && status.code === grpc.status.UNAVAILABLE;
        if (!dialFailed || !mayBeTlsFailure(status.details)) return resolve({ kind: "ended", error, healthy, workerLost });
        // grpc-js says "Failed to connect" for a TLS misconfiguration as for a closed port: a probe tells them apart.
        void diagnoseTls(address, options.tls).then(
          (why) => {
            if (why === undefined) return resolve({ kind: "ended", error, healthy, workerLost });
            const tlsError = new ConnectorError(ErrorCode.UNSPECIFIED, status.code, `${role.toLowerCase()} session with engine ${address} (target "${options.target}") failed: ${why}`, { configuration: true });
            resolve({ kind: "ended", error: tlsError, healthy, workerLost });
          },
          () => resolve({ kind: "ended", error, healthy, workerLost }),
        );
      });
    });

    const hello: Hello = create(HelloSchema, {
      version: PROTOCOL_VERSION,
      connectorName: options.connectorName,
      instanceId: options.instanceId,
      target: options.target,
      token: options.token,
      capabilities: options.capabilities,
    });
    session.write(handler.hello(hello));
    return outcome;
  }
}

const DEFINITION = clientDefinition(ConnectorService, CONNECTOR_CODECS);
const METHODS = { Source: DEFINITION.Source!, Sink: DEFINITION.Sink!, Partition: DEFINITION.Partition! };

/** Resolves with whichever settles first, a value from `promise` or undefined after timeoutMs. */
export async function withTimeout<T>(promise: Promise<T>, timeoutMs: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
