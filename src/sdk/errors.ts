/**
 * The SDK's one error type. A session that ends carries the engine's protocol code (sent in an
 * Error message before the engine ends the call) and the gRPC status the call ended with; a
 * session that ends without an Error (the engine is down, the network broke) carries only the
 * status, with code UNSPECIFIED.
 */
import { status as GrpcStatus } from "@grpc/grpc-js";
import { ErrorCode } from "../protocol/gen/keyway/v1/connector_pb.ts";

export { ErrorCode as ProtocolErrorCode, GrpcStatus };

/**
 * Codes that mean the connector is configured wrong: retrying cannot help, so the SDK stops and
 * rejects instead of reconnecting (docs/protocol.md, R-ERROR-CONFIG-FATAL). STREAM_OWNED: another
 * connector (another connector_name) owns the stream name. SESSION_REPLACED: a newer session with
 * this instance_id took this one's place, so another running instance shares the id.
 * PERMISSION_DENIED: the connector's credential does not allow its role, target or stream name.
 */
const CONFIGURATION_CODES: ReadonlySet<ErrorCode> = new Set([
  ErrorCode.UNAUTHENTICATED,
  ErrorCode.UNSUPPORTED_VERSION,
  ErrorCode.UNKNOWN_TARGET,
  ErrorCode.STREAM_OWNED,
  ErrorCode.SESSION_REPLACED,
  ErrorCode.PERMISSION_DENIED,
]);

export class ConnectorError extends Error {
  /** The protocol code from the engine's Error message; UNSPECIFIED when it sent none. */
  readonly code: ErrorCode;
  /** The gRPC status the session ended with. */
  readonly grpcStatus: GrpcStatus;

  /** Set when the SDK itself found the configuration wrong (a TLS mismatch), whatever the code and status. */
  private readonly configuration: boolean;

  constructor(code: ErrorCode, grpcStatus: GrpcStatus, message: string, options: { configuration?: boolean } = {}) {
    super(message);
    this.name = "ConnectorError";
    this.code = code;
    this.grpcStatus = grpcStatus;
    this.configuration = options.configuration === true;
  }

  /** The code's enum name without its prefix, e.g. "UNKNOWN_TARGET", for messages and logs. */
  get codeName(): string {
    return ErrorCode[this.code] ?? String(this.code);
  }

  /**
   * True when reconnecting cannot help: a wrong token, version or target name, or a stream name
   * another connector owns; or a TLS misconfiguration the SDK found after a failed dial (the
   * engine speaks TLS and this connector does not, or the reverse, a certificate not trusted or
   * refused). A code this SDK
   * does not know, or an ending without one, is judged by its gRPC status (protocol §11).
   */
  get isConfigurationError(): boolean {
    if (this.configuration || CONFIGURATION_CODES.has(this.code)) return true;
    if (ErrorCode[this.code] !== undefined && this.code !== ErrorCode.UNSPECIFIED) return false;
    return this.grpcStatus === GrpcStatus.UNAUTHENTICATED || this.grpcStatus === GrpcStatus.NOT_FOUND;
  }
}

export function isConnectorError(err: unknown): err is ConnectorError {
  return err instanceof ConnectorError;
}
