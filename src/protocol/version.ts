/** The protocol version this engine speaks, and the negotiation rule (docs/protocol.md, handshake). */
import { create } from "@bufbuild/protobuf";
import { ProtocolVersionSchema, type ProtocolVersion } from "./gen/keyway/v1/connector_pb.ts";

export const ENGINE_PROTOCOL_VERSION = { major: 1, minor: 0 } as const;

/** Every version the engine speaks, one per major with its highest minor (DescribeResponse.versions). */
export function engineVersions(): ProtocolVersion[] {
  return [create(ProtocolVersionSchema, ENGINE_PROTOCOL_VERSION)];
}

/**
 * The negotiated version for a connector's: undefined when the majors differ (a Hello without a
 * version reads as major 0, which no engine speaks); otherwise the lower of the two minors.
 */
export function negotiateVersion(connector: ProtocolVersion | undefined): ProtocolVersion | undefined {
  if (connector === undefined || connector.major !== ENGINE_PROTOCOL_VERSION.major) return undefined;
  return create(ProtocolVersionSchema, {
    major: ENGINE_PROTOCOL_VERSION.major,
    minor: Math.min(ENGINE_PROTOCOL_VERSION.minor, connector.minor),
  });
}

export function formatVersion(version: ProtocolVersion | undefined): string {
  return version === undefined ? "no version" : `${version.major}.${version.minor}`;
}
