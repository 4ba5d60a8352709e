/**
 * The protocol on the wire for the conformance harness: each role's request and response schemas,
 * encoding a response with unknown fields added (to prove a peer ignores them, R-VERSION-UNKNOWN-
 * FIELDS), and the names of error codes and gRPC statuses as the case files spell them.
 *
 * Unlike the engine's adapter, the harness must be able to send bytes a well-behaved peer never
 * would, so every encoder here returns bytes and every serializer passes bytes through.
 */
import { create, fromBinary, toBinary, type DescMessage } from "@bufbuild/protobuf";
import { status as GrpcStatus } from "@grpc/grpc-js";
import {
  ErrorCode,
  PartitionRequestSchema,
  PartitionResponseSchema,
  SinkRequestSchema,
  SinkResponseSchema,
  SourceRequestSchema,
  SourceResponseSchema,
} from "../protocol/gen/keyway/v1/connector_pb.ts";

export type Role = "source" | "sink" | "partitioner";
export const ROLES: readonly Role[] = ["source", "sink", "partitioner"];

/** The gRPC method name of each role's session. */
export const METHOD_OF: Readonly<Record<Role, "Source" | "Sink" | "Partition">> = {
  source: "Source",
  sink: "Sink",
  partitioner: "Partition",
};

export const REQUEST_SCHEMA: Readonly<Record<Role, DescMessage>> = {
  source: SourceRequestSchema,
  sink: SinkRequestSchema,
  partitioner: PartitionRequestSchema,
};

export const RESPONSE_SCHEMA: Readonly<Record<Role, DescMessage>> = {
  source: SourceResponseSchema,
  sink: SinkResponseSchema,
  partitioner: PartitionResponseSchema,
};

/** A decoded message of any role: the oneof `kind` is all the harness reads. */
export interface Kinded {
  kind: { case: string | undefined; value?: unknown };
}

/** No keyway.v1 message uses field numbers this high: "unknown" in any message. */
export const UNKNOWN_FIELD_NUMBER = 1000;
/** A oneof case no v1 message defines: the receiver sees an unset `kind`. */
export const UNKNOWN_KIND_FIELD_NUMBER = 999;

function varint(value: number): number[] {
  const out: number[] = [];
  let v = value;
  while (v > 0x7f) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
}

/** One length-delimited field: tag, length, payload. */
export function lengthDelimited(fieldNumber: number, payload: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from(varint(fieldNumber * 8 + 2)), Buffer.from(varint(payload.length)), payload]);
}

/** A field no keyway.v1 message defines, to append to any encoded message. */
export function unknownField(): Buffer {
  return lengthDelimited(UNKNOWN_FIELD_NUMBER, Buffer.from("keyway-conformance: ignore me"));
}

/**
 * Encodes a role's response `{kind: {case, value}}`. With `unknownFields`, both the wrapper and the
 * message inside it carry a field the receiver does not know.
 */
export function encodeResponse(role: Role, kindCase: string, value: object, unknownFields = false): Buffer {
  return encodeKind(RESPONSE_SCHEMA[role], kindCase, value, unknownFields);
}

export function encodeRequest(role: Role, kindCase: string, value: object, unknownFields = false): Buffer {
  return encodeKind(REQUEST_SCHEMA[role], kindCase, value, unknownFields);
}

function encodeKind(schema: DescMessage, kindCase: string, value: object, unknownFields: boolean): Buffer {
  if (!unknownFields) {
    const message = create(schema, { kind: { case: kindCase, value } } as never);
    return Buffer.from(toBinary(schema, message));
  }
  const field = schema.fields.find((f) => f.localName === kindCase);
  if (field === undefined || field.fieldKind !== "message") throw new Error(`${schema.typeName} has no message case "${kindCase}"`);
  const inner = Buffer.concat([Buffer.from(toBinary(field.message, create(field.message, value as never))), unknownField()]);
  return Buffer.concat([lengthDelimited(field.number, inner), unknownField()]);
}

/** A response whose only field is a oneof case v1 does not define: the peer sees an unset kind. */
export function unknownKindMessage(): Buffer {
  return lengthDelimited(UNKNOWN_KIND_FIELD_NUMBER, Buffer.from([]));
}

export type Decoded<T> = { ok: true; message: T } | { ok: false; reason: string; bytes: number };

export function decode<T>(schema: DescMessage, bytes: Uint8Array): Decoded<T> {
  try {
    return { ok: true, message: fromBinary(schema, bytes) as T };
  } catch (err) {
    return { ok: false, reason: (err as Error).message, bytes: bytes.length };
  }
}

/** "UNAUTHENTICATED" -> ErrorCode.UNAUTHENTICATED; a number passes through (codes unknown to v1). */
export function errorCodeOf(name: string | number): ErrorCode {
  if (typeof name === "number") return name as ErrorCode;
  const code = (ErrorCode as unknown as Record<string, number>)[name.replace(/^ERROR_CODE_/, "")];
  if (code === undefined) throw new Error(`unknown error code "${name}"`);
  return code as ErrorCode;
}

export function errorCodeName(code: number): string {
  return ErrorCode[code] ?? String(code);
}

/** "UNAVAILABLE" -> 14. */
export function grpcStatusOf(name: string): GrpcStatus {
  const code = (GrpcStatus as unknown as Record<string, number>)[name];
  if (code === undefined) throw new Error(`unknown gRPC status "${name}"`);
  return code as GrpcStatus;
}

export function grpcStatusName(code: number): string {
  return GrpcStatus[code] ?? String(code);
}
