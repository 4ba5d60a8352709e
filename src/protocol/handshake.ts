/**
 * Checks a session's Hello, in the order the spec fixes: version, then authentication (the token,
 * or the client certificate), then target, then the credential's scope, so a connector with a
 * stale version learns that first and a wrong token reveals no target names.
 */
import type { PeerCertificate } from "node:tls";
import { ErrorCode, type Hello, type ProtocolVersion } from "./gen/keyway/v1/connector_pb.ts";
import { allowsTarget, type Authenticator, type Credential, type Role } from "./credentials.ts";
import { ProtocolError } from "./protocol-error.ts";
import { ENGINE_PROTOCOL_VERSION, formatVersion, negotiateVersion } from "./version.ts";

export type { Role } from "./credentials.ts";

export interface HandshakePolicy {
  /** Who may open sessions; undefined when anyone may (no token, no credentials, no client certificates). */
  auth: Authenticator | undefined;
  /** The names a session of this role may target. */
  targets: readonly string[];
}

/** What a session may do with no authentication configured. */
export const ANYONE: Credential = { name: "anyone", all: true, grants: [] };

/** The negotiated version and the session's credential; throws the ProtocolError the session ends with. */
export function checkHello(role: Role, hello: Hello, policy: HandshakePolicy, peer?: PeerCertificate): { version: ProtocolVersion; credential: Credential } {
  const version = negotiateVersion(hello.version);
  if (version === undefined) {
    throw new ProtocolError(
      ErrorCode.UNSUPPORTED_VERSION,
      `connector speaks protocol ${formatVersion(hello.version)}; this engine speaks ${ENGINE_PROTOCOL_VERSION.major}.x`,
    );
  }
  const credential = authenticate(policy.auth, hello.token, peer);
  if (!policy.targets.includes(hello.target)) {
    const known = policy.targets.length > 0 ? policy.targets.join(", ") : "none";
    throw new ProtocolError(
      ErrorCode.UNKNOWN_TARGET,
      `no ${role} named "${hello.target}" is served over the protocol; ${role}s served: ${known}`,
    );
  }
  checkScope(credential, role, hello.target);
  return { version, credential };
}

/** The credential a token or certificate stands for; throws UNAUTHENTICATED when none. */
export function authenticate(auth: Authenticator | undefined, token: string, peer: PeerCertificate | undefined): Credential {
  if (auth === undefined) return ANYONE;
  const credential = auth.authenticate(token, peer);
  if (credential !== undefined) return credential;
  if (token !== "" && auth.hasTokens) throw new ProtocolError(ErrorCode.UNAUTHENTICATED, "wrong token");
  if (peer === undefined) throw new ProtocolError(ErrorCode.UNAUTHENTICATED, auth.hasTokens ? "this engine requires a token" : "this engine requires a client certificate that its credentials name");
  const subject = Object.entries(peer.subject ?? {}).map(([k, v]) => `${k}=${String(v)}`).join(",");
  throw new ProtocolError(ErrorCode.UNAUTHENTICATED, `no credential of this engine names the client certificate's subject (${subject})${auth.hasTokens ? ", and no token was given" : ""}`);
}

/** Throws PERMISSION_DENIED unless the credential may open a session of this role on this target. */
export function checkScope(credential: Credential, role: Role, target: string): void {
  if (!allowsTarget(credential, role, target)) {
    throw new ProtocolError(ErrorCode.PERMISSION_DENIED, `credential "${credential.name}" may not open a ${role} session on "${target}"`);
  }
}
