/** Reconnect delays and the classification of session endings: pure functions, no sockets. */
import { describe, expect, it } from "vitest";
import { backoffDelayMs, resolveBackoff } from "../../src/util/backoff.ts";
import { ConnectorError, GrpcStatus, ProtocolErrorCode } from "../../src/sdk/index.ts";

describe("backoff", () => {
  it("doubles the ceiling from 100 ms per failure up to 5 s, drawing each delay below it", () => {
    const atCeiling = resolveBackoff({ random: () => 0.999999 });
    const ceilings = [1, 2, 3, 4, 5, 6, 7, 8, 20].map((failures) => backoffDelayMs(atCeiling, failures));
    expect(ceilings).toEqual([99, 199, 399, 799, 1599, 3199, 4999, 4999, 4999]);
    const atFloor = resolveBackoff({ random: () => 0 });
    expect(backoffDelayMs(atFloor, 10)).toBe(0);
  });

  it("rejects settings that would make a tight loop or never grow", () => {
    expect(() => resolveBackoff({ initialMs: 0 })).toThrow(RangeError);
    expect(() => resolveBackoff({ multiplier: 0.5 })).toThrow(RangeError);
    expect(() => resolveBackoff({ initialMs: 200, maxMs: 100 })).toThrow(RangeError);
  });
});

describe("ConnectorError", () => {
  it("treats wrong version, token and target, another connector's stream, and a shared instance id, as configuration errors, and everything else as retryable", () => {
    const fatal = [ProtocolErrorCode.UNSUPPORTED_VERSION, ProtocolErrorCode.UNAUTHENTICATED, ProtocolErrorCode.UNKNOWN_TARGET, ProtocolErrorCode.STREAM_OWNED, ProtocolErrorCode.SESSION_REPLACED, ProtocolErrorCode.PERMISSION_DENIED];
    for (const code of fatal) expect(new ConnectorError(code, GrpcStatus.UNKNOWN, "x").isConfigurationError).toBe(true);
    for (const code of [ProtocolErrorCode.STREAM_BUSY, ProtocolErrorCode.SHUTTING_DOWN, ProtocolErrorCode.CREDITS_EXCEEDED, ProtocolErrorCode.TOO_MANY_STREAMS]) {
      expect(new ConnectorError(code, GrpcStatus.NOT_FOUND, "x").isConfigurationError).toBe(false);
    }
    expect(new ConnectorError(ProtocolErrorCode.UNKNOWN_TARGET, GrpcStatus.NOT_FOUND, "x").codeName).toBe("UNKNOWN_TARGET");
  });

  it("judges an ending without a code, or with a code from a newer version, by its gRPC status", () => {
    const unknownCode = 99 as ProtocolErrorCode;
    expect(new ConnectorError(ProtocolErrorCode.UNSPECIFIED, GrpcStatus.UNAVAILABLE, "x").isConfigurationError).toBe(false);
    expect(new ConnectorError(ProtocolErrorCode.UNSPECIFIED, GrpcStatus.UNAUTHENTICATED, "x").isConfigurationError).toBe(true);
    expect(new ConnectorError(unknownCode, GrpcStatus.NOT_FOUND, "x").isConfigurationError).toBe(true);
    expect(new ConnectorError(unknownCode, GrpcStatus.RESOURCE_EXHAUSTED, "x").isConfigurationError).toBe(false);
  });
});
