/**
 * Checks a session's Hello, in the order the spec fixes: version, then token, then target, so a
 * connector with a stale version learns that first and a wrong token reveals no target names.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { ErrorCode, type Hello, type ProtocolVersion } from "./gen/keyway/v1/connector_pb.ts";
import { ProtocolError } from "./protocol-error.ts";
import { ENGINE_PROTOCOL_VERSION, formatVersion, negotiateVersion } from "./version.ts";

export type Role = "source" | "sink" | "partitioner";

export interface HandshakePolicy {
  /** When set, Hello.token must equal it. */
  token: string | undefined;
  /** The names a session of this role may target. */
  targets: readonly string[];
}

/** The negotiated version; throws the ProtocolError the session ends with. */
export function checkHello(role: Role, hello: Hello, policy: HandshakePolicy): ProtocolVersion {
  const version = negotiateVersion(hello.version);
  if (version === undefined) {
    throw new ProtocolError(
      ErrorCode.UNSUPPORTED_VERSION,
      `connector speaks protocol ${formatVersion(hello.version)}; this engine speaks ${ENGINE_PROTOCOL_VERSION.major}.x`,
    );
  }
  if (policy.token !== undefined && !sameSecret(hello.token, policy.token)) {
    throw new ProtocolError(ErrorCode.UNAUTHENTICATED, hello.token === "" ? "this engine requires a token" : "wrong token");
  }
  if (!policy.targets.includes(hello.target)) {
    const known = policy.targets.length > 0 ? policy.targets.join(", ") : "none";
    throw new ProtocolError(
      ErrorCode.UNKNOWN_TARGET,
      `no ${role} named "${hello.target}" is served over the protocol; ${role}s served: ${known}`,
    );
  }
  return version;
}

/** Compares digests in constant time, so response timing does not leak how much of a guess matched. */
function sameSecret(given: string, expected: string): boolean {
  const digest = (s: string) => createHash("sha256").update(s).digest();
  return timingSafeEqual(digest(given), digest(expected));
}
