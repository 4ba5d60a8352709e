/**
 * Builds grpc-js service definitions from protobuf-es v2 descriptors (protoc-gen-es emits
 * descriptors, not grpc-js stubs). On the serving side a request that does not parse, or is
 * larger than the limit, is handed to the handler as a DecodeFailure instead of failing the call
 * inside grpc-js, so the session can answer with a typed protocol error. A service may give
 * hand-written codecs for some messages (the connector protocol's record batches); whatever they
 * do not take goes through protobuf-es.
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

/**
 * A fast path for one message type. Either function returns undefined for a message or bytes it
 * does not take (then protobuf-es handles them); decode must never accept bytes protobuf-es rejects.
 */
export interface MessageCodec {
  encode?(message: never): Buffer | undefined;
  decode?(bytes: Uint8Array): object | undefined;
}

/** Codecs by message type name (e.g. "keyway.v1.SourceRequest"). */
export type MessageCodecs = Readonly<Record<string, MessageCodec>>;

const ENCODED = Symbol("a message's bytes, encoded already");

/** A message its sender encoded ahead (to keep its bytes, not its objects, until it is acked): written as it is. */
export interface EncodedMessage {
  readonly [ENCODED]: Buffer;
}

export function encodedMessage(bytes: Buffer): EncodedMessage {
  return { [ENCODED]: bytes };
}

/** The bytes of an EncodedMessage; undefined for any other message. */
export function encodedBytes(message: object): Buffer | undefined {
  return (message as Partial<EncodedMessage>)[ENCODED];
}

function serializer(schema: DescMessage, codec: MessageCodec | undefined) {
  const encode = codec?.encode as ((message: object) => Buffer | undefined) | undefined;
  return (message: object): Buffer => {
    const encoded = encodedBytes(message);
    if (encoded !== undefined) return encoded;
    if (encode !== undefined && isMessage(message, schema)) {
      const fast = encode(message);
      if (fast !== undefined) return fast;
    }
    // Callers may pass a plain init object (nested plain objects included): create() completes it.
    const complete = isMessage(message, schema) ? message : create(schema, message as never);
    const bytes = toBinary(schema, complete as never);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

function guardedDeserializer(schema: DescMessage, maxMessageBytes: number, codec: MessageCodec | undefined) {
  const decode = codec?.decode;
  return (bytes: Buffer): object => {
    if (bytes.length > maxMessageBytes) {
      return { decodeFailure: "too_large", bytes: bytes.length, reason: `message of ${bytes.length} bytes exceeds the limit of ${maxMessageBytes}` } satisfies DecodeFailure;
    }
    try {
      return decode?.(bytes) ?? fromBinary(schema, bytes);
    } catch (err) {
      return { decodeFailure: "malformed", bytes: bytes.length, reason: `not a ${schema.typeName}: ${(err as Error).message}` } satisfies DecodeFailure;
    }
  };
}

function plainDeserializer(schema: DescMessage, codec: MessageCodec | undefined) {
  const decode = codec?.decode;
  if (decode === undefined) return (bytes: Buffer): object => fromBinary(schema, bytes);
  return (bytes: Buffer): object => decode(bytes) ?? fromBinary(schema, bytes);
}

type Deserializer = (schema: DescMessage, codec: MessageCodec | undefined) => (bytes: Buffer) => object;

/** The definition a grpc-js server adds; requests over maxMessageBytes arrive as DecodeFailure. */
export function serverDefinition(service: DescService, maxMessageBytes: number, codecs: MessageCodecs = {}): ServiceDefinition {
  return definition(service, codecs, (schema, codec) => guardedDeserializer(schema, maxMessageBytes, codec), plainDeserializer);
}

/** The definition a grpc-js client uses (makeGenericClientConstructor). */
export function clientDefinition(service: DescService, codecs: MessageCodecs = {}): ServiceDefinition {
  return definition(service, codecs, plainDeserializer, plainDeserializer);
}

function definition(service: DescService, codecs: MessageCodecs, requestDeserializer: Deserializer, responseDeserializer: Deserializer): ServiceDefinition {
  const result: Record<string, ServiceDefinition[string]> = {};
  for (const method of service.methods) {
    const input = codecs[method.input.typeName];
    const output = codecs[method.output.typeName];
    result[method.name] = {
      path: `/${service.typeName}/${method.name}`,
      requestStream: method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming",
      responseStream: method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming",
      requestSerialize: serializer(method.input, input),
      requestDeserialize: requestDeserializer(method.input, input),
      responseSerialize: serializer(method.output, output),
      responseDeserialize: responseDeserializer(method.output, output),
      originalName: method.localName,
    };
  }
  return result;
}
