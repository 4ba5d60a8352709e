/**
 * The connector protocol's hand-written codecs, for the grpc adapter: the record-carrying
 * messages and the control messages beside each batch (credits, commits, acks), in both
 * directions; every other message stays with protobuf-es. The engine's sink batches are encoded
 * ahead, as they are cut (encodeSinkEntries, sinkBatchResponse), and go out as EncodedMessage.
 */
import type { MessageCodecs } from "../../rpc/grpc-adapter.ts";
import { decodeSourceRequest, encodeSourceRequest } from "./record-batch-codec.ts";
import { decodeSinkResponse } from "./sink-batch-codec.ts";
import { decodeSinkRequest, decodeSourceResponse, encodeSinkRequest, encodeSourceResponse } from "./control-codecs.ts";

export const CONNECTOR_CODECS: MessageCodecs = {
  "keyway.v1.SourceRequest": { encode: encodeSourceRequest, decode: decodeSourceRequest },
  "keyway.v1.SinkResponse": { decode: decodeSinkResponse },
  "keyway.v1.SourceResponse": { encode: encodeSourceResponse, decode: decodeSourceResponse },
  "keyway.v1.SinkRequest": { encode: encodeSinkRequest, decode: decodeSinkRequest },
};
