/**
 * The connector protocol's hand-written codecs, for the grpc adapter: the record-carrying
 * messages and the control messages beside each batch (credits, commits, acks), in both
 * directions; every other message stays with protobuf-es.
 */
import type { MessageCodecs } from "../../rpc/grpc-adapter.ts";
import { decodeSourceRequest, encodeSourceRequest } from "./record-batch-codec.ts";
import { decodeSinkResponse, encodeSinkResponse } from "./sink-batch-codec.ts";
import { decodeSinkRequest, decodeSourceResponse, encodeSinkRequest, encodeSourceResponse } from "./control-codecs.ts";

export const CONNECTOR_CODECS: MessageCodecs = {
  "keyway.v1.SourceRequest": { encode: encodeSourceRequest, decode: decodeSourceRequest },
  "keyway.v1.SinkResponse": { encode: encodeSinkResponse, decode: decodeSinkResponse },
  "keyway.v1.SourceResponse": { encode: encodeSourceResponse, decode: decodeSourceResponse },
  "keyway.v1.SinkRequest": { encode: encodeSinkRequest, decode: decodeSinkRequest },
};
