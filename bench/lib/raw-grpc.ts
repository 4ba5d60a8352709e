/** A grpc-js bidi method whose messages are raw bytes (identity serializers), for baselines that skip protobuf. */
import type * as grpc from "@grpc/grpc-js";

const identity = (bytes: Buffer): Buffer => bytes;

export function bytesBidiMethod(path: string): grpc.MethodDefinition<Buffer, Buffer> {
  return {
    path,
    requestStream: true,
    responseStream: true,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  };
}
