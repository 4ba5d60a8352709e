/**
 * Builds grpc-js service definitions from protobuf-es v2 descriptors (protoc-gen-es emits
 * descriptors, not grpc-js stubs). On the serving side a request that does not parse, or is
 * larger than the limit, is handed to the handler as a DecodeFailure instead of failing the call
 * inside grpc-js, so the session can answer with a typed protocol error.
 */
import { create, fromBinary, isMessage, toBinary, type DescMessage, type DescService } from "@bufbuild/protobuf";
import type { ServiceDefinition } from "@grpc/grpc-js";

export interface DecodeFailure {
  readonly decodeFailure: "malformed" | "too_large";
  readonly bytes: number;
  readonly reason: string;
}

export function isDecodeFailure(value: unknown): value is DecodeFailure {
  return typeof value === "object" && value !== null && "decodeFailure" in value;
}

function serializer(schema: DescMessage) {
  return (message: object): Buffer => {
    // Callers may pass a plain init object (nested plain objects included): create() completes it.
    const complete = isMessage(message, schema) ? message : create(schema, message as never);
    const bytes = toBinary(schema, complete as never);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

function guardedDeserializer(schema: DescMessage, maxMessageBytes: number) {
  return (bytes: Buffer): object => {
    if (bytes.length > maxMessageBytes) {
      return { decodeFailure: "too_large", bytes: bytes.length, reason: `message of ${bytes.length} bytes exceeds the limit of ${maxMessageBytes}` } satisfies DecodeFailure;
    }
    try {
      return fromBinary(schema, bytes);
    } catch (err) {
      return { decodeFailure: "malformed", bytes: bytes.length, reason: `not a ${schema.typeName}: ${(err as Error).message}` } satisfies DecodeFailure;
    }
  };
}

function plainDeserializer(schema: DescMessage) {
  return (bytes: Buffer): object => fromBinary(schema, bytes);
}

/** The definition a grpc-js server adds; requests over maxMessageBytes arrive as DecodeFailure. */
export function serverDefinition(service: DescService, maxMessageBytes: number): ServiceDefinition {
  return definition(service, (schema) => guardedDeserializer(schema, maxMessageBytes), plainDeserializer);
}

/** The definition a grpc-js client uses (makeGenericClientConstructor). */
export function clientDefinition(service: DescService): ServiceDefinition {
  return definition(service, plainDeserializer, plainDeserializer);
}

function definition(
  service: DescService,
  requestDeserializer: (schema: DescMessage) => (bytes: Buffer) => object,
  responseDeserializer: (schema: DescMessage) => (bytes: Buffer) => object,
): ServiceDefinition {
  const result: Record<string, ServiceDefinition[string]> = {};
  for (const method of service.methods) {
    result[method.name] = {
      path: `/${service.typeName}/${method.name}`,
      requestStream: method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming",
      responseStream: method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming",
      requestSerialize: serializer(method.input),
      requestDeserialize: requestDeserializer(method.input),
      responseSerialize: serializer(method.output),
      responseDeserialize: responseDeserializer(method.output),
      originalName: method.localName,
    };
  }
  return result;
}
