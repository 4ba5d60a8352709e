/**
 * The typed error a session ends with, and the one place that maps each protocol error code to
 * the gRPC status the call then ends with (the codes' meanings are in connector.proto).
 */
import { status as GrpcStatus } from "@grpc/grpc-js";
import { ErrorCode } from "./gen/keyway/v1/connector_pb.ts";

export const GRPC_STATUS_OF: Readonly<Record<ErrorCode, GrpcStatus>> = {
  // Never sent: a code the engine failed to choose is a bug.
  [ErrorCode.UNSPECIFIED]: GrpcStatus.INTERNAL,
  [ErrorCode.MALFORMED]: GrpcStatus.INVALID_ARGUMENT,
  [ErrorCode.UNSUPPORTED_VERSION]: GrpcStatus.FAILED_PRECONDITION,
  [ErrorCode.UNAUTHENTICATED]: GrpcStatus.UNAUTHENTICATED,
  [ErrorCode.UNKNOWN_TARGET]: GrpcStatus.NOT_FOUND,
  [ErrorCode.PROTOCOL_VIOLATION]: GrpcStatus.FAILED_PRECONDITION,
  [ErrorCode.STREAM_BUSY]: GrpcStatus.ALREADY_EXISTS,
  [ErrorCode.CREDITS_EXCEEDED]: GrpcStatus.RESOURCE_EXHAUSTED,
  [ErrorCode.POSITION_REGRESSED]: GrpcStatus.INVALID_ARGUMENT,
  [ErrorCode.BATCH_TOO_LARGE]: GrpcStatus.RESOURCE_EXHAUSTED,
  [ErrorCode.UNKNOWN_SEQUENCE]: GrpcStatus.INVALID_ARGUMENT,
  [ErrorCode.SHUTTING_DOWN]: GrpcStatus.UNAVAILABLE,
  [ErrorCode.INTERNAL]: GrpcStatus.INTERNAL,
  [ErrorCode.STREAM_OWNED]: GrpcStatus.FAILED_PRECONDITION,
  [ErrorCode.TOO_MANY_STREAMS]: GrpcStatus.RESOURCE_EXHAUSTED,
  [ErrorCode.SESSION_REPLACED]: GrpcStatus.ABORTED,
  [ErrorCode.PERMISSION_DENIED]: GrpcStatus.PERMISSION_DENIED,
};

/** A connector broke the protocol (or the engine is going away): ends that one session. */
export class ProtocolError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.name = "ProtocolError";
    this.code = code;
  }
}

/** "PROTOCOL_VIOLATION" for ErrorCode.PROTOCOL_VIOLATION: for logs and status details. */
export function errorCodeName(code: ErrorCode): string {
  return ErrorCode[code] ?? `ERROR_CODE_${code}`;
}
