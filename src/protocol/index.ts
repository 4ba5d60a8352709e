// The connector protocol server (docs/protocol.md): sessions, credits, positions, acks, partitioners.
export { startConnectorServer, type ConnectorServer, type ConnectorServerOptions, type SessionCounts } from "./server.ts";
export type { SessionPlacement } from "./placement.ts";
export { PROTOCOL_LIMITS_DEFAULT, type ProtocolLimits } from "./limits.ts";
export { ENGINE_PROTOCOL_VERSION } from "./version.ts";
export { GRPC_STATUS_OF } from "./protocol-error.ts";
export type { SourceProgress } from "./source/progress.ts";
