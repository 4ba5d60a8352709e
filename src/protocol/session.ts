/**
 * One connector session on a bidirectional gRPC call, whatever its role: the Hello handshake,
 * decode failures, and the three ways a session ends (a typed Error then the mapped status; a
 * Redirect then UNAVAILABLE; the connector half-closing or going away). Each role supplies the
 * handler for the messages after Hello. In a cluster a Hello whose session belongs on another
 * worker is answered with a Redirect instead of the Welcome.
 */
import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { status as GrpcStatus, type ServerDuplexStream } from "@grpc/grpc-js";
import type { Logger } from "../log/logger.ts";
import {
  ErrorCode,
  ErrorSchema,
  RedirectSchema,
  WelcomeSchema,
  type Error as ErrorMessage,
  type Hello,
  type ProtocolVersion,
  type Redirect,
  type Welcome,
} from "./gen/keyway/v1/connector_pb.ts";
import { isDecodeFailure, type DecodeFailure, type EncodedMessage } from "../rpc/grpc-adapter.ts";
import type { PeerCertificate } from "node:tls";
import { ANYONE, authenticate, checkHello, checkScope, type HandshakePolicy, type Role } from "./handshake.ts";
import type { Credential } from "./credentials.ts";
import { limitsMessage, type ProtocolLimits } from "./limits.ts";
import type { SessionIdentity, SessionRouting } from "./placement.ts";
import { errorCodeName, GRPC_STATUS_OF, ProtocolError } from "./protocol-error.ts";

/** The response kinds every role's response message has. */
export type CommonKind =
  | { case: "welcome"; value: Welcome }
  | { case: "redirect"; value: Redirect }
  | { case: "error"; value: ErrorMessage };

/** What a role's handler sees of its session. */
export interface SessionChannel<K> {
  /** The Hello's target: the source, sink or partitioner name this session serves. */
  readonly target: string;
  /** The Hello's connector_name: whose streams a source session opens. */
  readonly connectorName: string;
  /** The Hello's instance_id: a newer session of the same instance takes this one's streams. */
  readonly instanceId: string;
  /** What the session authenticated as: its scope (roles, targets, stream prefixes). */
  readonly credential: Credential;
  /** True once the session has ended, however it ended; sends are then dropped. */
  readonly ended: boolean;
  send(kind: K): void;
  /** Sends a response of this role encoded already (as a fast-path codec would have). */
  sendEncoded(message: EncodedMessage): void;
  /** Sends the Error, then ends the call with the status mapped from its code. */
  fail(error: ProtocolError): void;
  /** Sends a Redirect, then ends the call with UNAVAILABLE. */
  redirect(address: string, reason: string): void;
}

export interface RoleHandler<Req> {
  /** Handles one request after the handshake; throws a ProtocolError to end the session. */
  onMessage(request: Req): void;
  /** Called once when the session ends, however it ended. */
  onEnd(): void;
  /** The session is about to end while it can still send (before its Error or Redirect, or as the connector half-closes): send what is held back. */
  flush?(): void;
  /**
   * The credentials were reloaded and the session's credential (still valid for its role and
   * target) may be narrower: throws a ProtocolError if what the session holds is now outside it.
   */
  reauthorized?(): void;
}

export interface RoleBinding<Req, K> {
  role: Role;
  policy: HandshakePolicy;
  limits: ProtocolLimits;
  /** Credits granted with Welcome. */
  initialCredits: number;
  /** Welcome.limits.max_replay_records for a session of this target (0 when absent). */
  maxReplayRecords?(target: string): number;
  /** The Hello a request holds, if it holds one. */
  helloOf(request: Req): Hello | undefined;
  /** Wraps a response kind in the role's response message. */
  respond(kind: K | CommonKind): object;
  /** Resolves when the target can take a session; until then the Welcome (and reading) waits. */
  ready?(target: string): Promise<void>;
  /** Called once Welcome is sent: the handler for the rest of the session. */
  attach(channel: SessionChannel<K>): RoleHandler<Req>;
}

/** What the server holds of every live session: to end them all, to rebalance them, to count them. */
export interface SessionControl {
  /** Set once the Hello has passed the checks. */
  readonly identity: SessionIdentity | undefined;
  /** True once the Welcome is sent. */
  readonly welcomed: boolean;
  fail(error: ProtocolError): void;
  redirect(address: string, reason: string): void;
  /** The credentials changed: a session whose credential no longer allows it ends (UNAUTHENTICATED or PERMISSION_DENIED). */
  reauthorize(): void;
}

/** What every session of a server shares. */
export interface SessionHost {
  live: Set<SessionControl>;
  routing: SessionRouting;
  log: Logger;
}

export function runSession<Req, K>(
  call: ServerDuplexStream<Req | DecodeFailure, object>,
  binding: RoleBinding<Req, K>,
  host: SessionHost,
): void {
  const { live, routing } = host;
  const id = randomUUID();
  let log = host.log.child({ session: id, role: binding.role });
  let identity: SessionIdentity | undefined;
  let connectorName = "";
  let credential: Credential = ANYONE;
  let token = "";
  // The client certificate, under mutual TLS (grpc-js shows it only once verified).
  const peer: PeerCertificate | undefined = call.getAuthContext?.()?.sslPeerCertificate;
  let helloSeen = false;
  let handler: RoleHandler<Req> | undefined;
  let ended = false;

  const finish = (): void => {
    if (ended) return;
    ended = true;
    live.delete(channel);
    handler?.onEnd();
  };

  const endWith = (kind: CommonKind, status: GrpcStatus, details: string): void => {
    if (ended) return;
    handler?.flush?.();
    finish();
    call.write(binding.respond(kind));
    // grpc-js turns an emitted error into the call's status, sent after the writes before it.
    call.emit("error", { code: status, details: boundedDetails(details) });
  };

  const channel: SessionChannel<K> & SessionControl = {
    get target() {
      return identity?.target ?? "";
    },
    get connectorName() {
      return connectorName;
    },
    get instanceId() {
      return identity?.instanceId ?? "";
    },
    get credential() {
      return credential;
    },
    get identity() {
      return identity;
    },
    get welcomed() {
      return handler !== undefined;
    },
    get ended() {
      return ended;
    },
    send(kind) {
      if (!ended) call.write(binding.respond(kind));
    },
    sendEncoded(message) {
      if (!ended) call.write(message);
    },
    fail(error) {
      if (ended) return;
      const name = errorCodeName(error.code);
      if (error.code === ErrorCode.SHUTTING_DOWN) log.info({ code: name }, error.message);
      // Bounded as the status is: a connector must not be able to write 40 KB log lines at will.
      else log.warn({ code: name, reason: boundedDetails(error.message) }, "connector session failed");
      const value = create(ErrorSchema, { code: error.code, message: error.message });
      endWith({ case: "error", value }, GRPC_STATUS_OF[error.code], `${name}: ${error.message}`);
    },
    reauthorize() {
      // Before its Hello passed, a session has no credential yet: the new ones apply when it comes.
      if (ended || identity === undefined) return;
      const was = credential.name;
      try {
        credential = authenticate(binding.policy.auth, token, peer);
        checkScope(credential, identity.role, identity.target);
        handler?.reauthorized?.();
      } catch (err) {
        if (!(err instanceof ProtocolError)) throw err;
        const why = err.code === ErrorCode.UNAUTHENTICATED ? `the credential "${was}" this session used is no longer in force (${err.message})` : err.message;
        channel.fail(new ProtocolError(err.code, `the engine's credentials were reloaded: ${why}`));
      }
    },
    redirect(address, reason) {
      log.info({ address, reason }, "connector session redirected");
      endWith({ case: "redirect", value: create(RedirectSchema, { address, reason }) }, GrpcStatus.UNAVAILABLE, `redirected to ${address}: ${reason}`);
    },
  };
  live.add(channel);

  const welcome = (version: ProtocolVersion): void => {
    const value = create(WelcomeSchema, {
      sessionId: id,
      version,
      initialCredits: binding.initialCredits,
      limits: limitsMessage(binding.limits, binding.maxReplayRecords?.(identity!.target)),
      capabilities: [],
      clusterAddresses: [...routing.addresses()],
    });
    call.write(binding.respond({ case: "welcome", value }));
    handler = binding.attach(channel);
    log.info({ version: `${version.major}.${version.minor}` }, "connector session opened");
  };

  const handshake = (hello: Hello): void => {
    helloSeen = true;
    const checked = checkHello(binding.role, hello, binding.policy, peer);
    const version = checked.version;
    credential = checked.credential;
    token = hello.token;
    identity = { role: binding.role, target: hello.target, instanceId: hello.instanceId };
    connectorName = hello.connectorName;
    log = log.child({ target: hello.target, connector: hello.connectorName, instance: hello.instanceId, credential: credential.name });
    const elsewhere = routing.elsewhere(identity);
    if (elsewhere !== undefined) return channel.redirect(elsewhere, "the cluster serves this session on another worker");
    const ready = binding.ready?.(hello.target);
    if (ready === undefined) return welcome(version);
    // Requests after the Hello stay in grpc-js (flow-controlled) until the session is attached.
    call.pause();
    void ready.then(() => {
      if (ended) return;
      welcome(version);
      call.resume();
    });
  };

  call.on("data", (message: Req | DecodeFailure) => {
    if (ended) return;
    try {
      if (isDecodeFailure(message)) {
        const code = message.decodeFailure === "too_large" ? ErrorCode.BATCH_TOO_LARGE : ErrorCode.MALFORMED;
        throw new ProtocolError(code, message.reason);
      }
      const hello = binding.helloOf(message);
      if (!helloSeen) {
        if (hello === undefined) throw new ProtocolError(ErrorCode.PROTOCOL_VIOLATION, "the first message of a session must be Hello");
        handshake(hello);
      } else if (hello !== undefined) {
        throw new ProtocolError(ErrorCode.PROTOCOL_VIOLATION, "a second Hello on one session");
      } else if (handler === undefined) {
        // Reading is paused until the Welcome, so a request cannot arrive before it.
        throw new ProtocolError(ErrorCode.INTERNAL, "a request arrived before the session was attached");
      } else {
        handler.onMessage(message);
      }
    } catch (err) {
      if (err instanceof ProtocolError) {
        channel.fail(err);
      } else {
        log.error({ err }, "engine error in a connector session");
        channel.fail(new ProtocolError(ErrorCode.INTERNAL, `engine error: ${(err as Error).message}`));
      }
    }
  });
  // The connector half-closed: it will send nothing more, so the session is over.
  call.on("end", () => {
    if (ended) return;
    handler?.flush?.();
    finish();
    log.info("connector session ended by the connector");
    call.end();
  });
  call.on("cancelled", () => {
    if (!ended) log.info("connector session cancelled");
    finish();
  });
  call.on("error", finish);
  call.on("close", finish);
}

/**
 * Status details travel in an HTTP/2 trailer: one longer than the client's header list limit
 * (an error echoing a 40 KB target name did) leaves the call without a status and wedged the
 * client's connection, every session on it included. The Error message keeps the whole text.
 */
const STATUS_DETAILS_MAX = 1024;

function boundedDetails(details: string): string {
  return details.length <= STATUS_DETAILS_MAX ? details : `${details.slice(0, STATUS_DETAILS_MAX - 40)}... (${details.length} characters)`;
}
