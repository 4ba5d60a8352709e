// A small engine written on raw gRPC (no Keyway runtime), to show the engine cases fail when they
// should. It serves only a source's handshake: Hello checked in order (version, token, target),
// Welcome, and StreamOpened at 0 for every OpenStream; it takes no records, so only the handshake
// cases apply to it. Without --break it keeps those promises; with
//   --break unbounded-details   a status's details repeat the whole Error message, however long:
//                               a 40,000-character target name goes back in the trailer (R-ERROR-TYPED).
//   node --import tsx conformance/negative-controls/engine.ts --listen HOST:PORT --source NAME [--token T] [--break MODE]
import { parseArgs } from "node:util";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { ConnectorService, ErrorCode, SourceResponseSchema, type SourceRequest, type SourceResponse } from "../../src/protocol/gen/keyway/v1/connector_pb.ts";
import { GRPC_STATUS_OF } from "../../src/protocol/protocol-error.ts";
import { isDecodeFailure, serverDefinition, type DecodeFailure } from "../../src/rpc/grpc-adapter.ts";

const { values: args } = parseArgs({ options: { listen: { type: "string" }, source: { type: "string" }, token: { type: "string" }, break: { type: "string" } } });
const broken = args.break ?? "none";
if (!["none", "unbounded-details"].includes(broken)) throw new Error(`unknown --break ${broken}`);
const address = args.listen!;
const token = args.token ?? "";
const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;
const STATUS_DETAILS_MAX = 1024;

function source(call: grpc.ServerDuplexStream<SourceRequest | DecodeFailure, SourceResponse>): void {
  let welcomed = false;
  let ended = false;
  const send = (kind: MessageInitShape<typeof SourceResponseSchema>["kind"]): void => void call.write(create(SourceResponseSchema, { kind }));
  const fail = (code: ErrorCode, message: string): void => {
    ended = true;
    send({ case: "error", value: { code, message } });
    const details = broken === "unbounded-details" ? message : message.slice(0, STATUS_DETAILS_MAX);
    // grpc-js ends the call with an emitted error's code and details, after the writes before it.
    call.emit("error", { code: GRPC_STATUS_OF[code], details });
  };
  const hello = (request: SourceRequest): void => {
    if (request.kind.case !== "hello") return fail(ErrorCode.PROTOCOL_VIOLATION, `the first message was ${request.kind.case ?? "empty"}, not Hello`);
    const { version, target } = request.kind.value;
    if (version?.major !== 1) return fail(ErrorCode.UNSUPPORTED_VERSION, `protocol ${version === undefined ? "(none)" : `${version.major}.${version.minor}`}; this engine speaks 1.x`);
    if (token !== "" && request.kind.value.token !== token) return fail(ErrorCode.UNAUTHENTICATED, "wrong or missing token");
    if (target !== args.source) return fail(ErrorCode.UNKNOWN_TARGET, `no source named "${target}"; sources served: ${args.source}`);
    welcomed = true;
    send({
      case: "welcome",
      value: {
        sessionId: `control-${Date.now()}`,
        version: { major: 1, minor: 0 },
        initialCredits: 100,
        limits: { maxBatchRecords: 100, maxMessageBytes: MAX_MESSAGE_BYTES, maxStreamsPerSession: 16, maxStreamNameBytes: 256 },
        clusterAddresses: [address],
      },
    });
  };
  call.on("data", (request: SourceRequest | DecodeFailure) => {
    if (ended) return;
    if (isDecodeFailure(request)) return fail(ErrorCode.MALFORMED, request.reason);
    if (!welcomed) return hello(request);
    if (request.kind.case === "open") return send({ case: "opened", value: { stream: request.kind.value.stream, resumeAfter: 0n, committed: 0n } });
    fail(ErrorCode.PROTOCOL_VIOLATION, `this control engine takes no ${request.kind.case ?? "empty"} message`);
  });
  call.on("end", () => {
    if (!ended) call.end();
  });
}

const server = new grpc.Server({ "grpc.max_receive_message_length": MAX_MESSAGE_BYTES });
server.addService(serverDefinition(ConnectorService, MAX_MESSAGE_BYTES), { Source: source });
server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err) => {
  if (err !== null) throw err;
});
