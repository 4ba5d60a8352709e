// A small partitioner written on raw gRPC (no SDK), to show the conformance suite fails when it
// should. Without --break it keeps every promise (key = the value's text); with
//   --break no-answer     it grants credits but never answers a request (R-PART-ANSWER).
//   --break no-failover   it redials only its configured address when its engine is gone (R-FAILOVER).
//   node --import tsx conformance/negative-controls/partitioner.ts [--break MODE]
// The engine's address, token and target come from KEYWAY_ENGINE, KEYWAY_TOKEN and KEYWAY_TARGET.
import { parseArgs } from "node:util";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { ConnectorService, PartitionRequestSchema, type PartitionRequest, type PartitionResponse } from "../../src/protocol/gen/keyway/v1/connector_pb.ts";
import { clientDefinition } from "../../src/rpc/grpc-adapter.ts";
import { runWithReconnects, type SessionOutcome } from "./reconnect.ts";

const { values: args } = parseArgs({ options: { break: { type: "string" } } });
const broken = args.break ?? "none";
if (!["none", "no-answer", "no-failover"].includes(broken)) throw new Error(`unknown --break ${broken}`);
const method = clientDefinition(ConnectorService).Partition!;
const decoder = new TextDecoder();

function session(address: string, learn: (clusterAddresses: readonly string[]) => void): Promise<SessionOutcome> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure(), { "grpc.max_receive_message_length": 64 << 20, "grpc.enable_retries": 0 });
  const call = client.makeBidiStreamRequest<PartitionRequest, PartitionResponse>(method.path, method.requestSerialize, method.responseDeserialize as (b: Buffer) => PartitionResponse);
  const send = (kind: MessageInitShape<typeof PartitionRequestSchema>["kind"]): void => void call.write(create(PartitionRequestSchema, { kind }));
  let ending: SessionOutcome | undefined;
  return new Promise((resolve) => {
    call.on("data", (response: PartitionResponse) => {
      const kind = response.kind;
      switch (kind.case) {
        case "welcome":
          learn(kind.value.clusterAddresses);
          ending = { kind: "welcomed" };
          // R-PART-CREDITS: keep at least max_batch_records granted.
          return send({ case: "credits", value: { records: Math.max(1000, kind.value.limits?.maxBatchRecords ?? 0) } });
        case "batch":
          if (broken === "no-answer") return;
          send({ case: "keys", value: { requestId: kind.value.requestId, keys: kind.value.values.map((v) => ({ kind: { case: "text" as const, value: decoder.decode(v) } })) } });
          return send({ case: "credits", value: { records: kind.value.values.length } });
        case "error":
          ending = { kind: "error", code: kind.value.code, message: kind.value.message };
          return;
        case "redirect":
          ending = { kind: "redirect", address: kind.value.address };
          return;
        default:
          return;
      }
    });
    call.on("error", () => undefined);
    call.on("status", (status: grpc.StatusObject) => {
      client.close();
      if (ending?.kind === "error") resolve({ ...ending, status: status.code });
      else if (ending?.kind === "redirect") resolve(ending);
      else resolve({ kind: "status", status: status.code, welcomed: ending !== undefined });
    });
    const hello = { version: { major: 1, minor: 0 }, connectorName: "negative-control-partitioner", instanceId: `control-${process.pid}`, target: process.env.KEYWAY_TARGET!, token: process.env.KEYWAY_TOKEN ?? "" };
    send({ case: "hello", value: hello });
  });
}

process.exitCode = await runWithReconnects(process.env.KEYWAY_ENGINE!, session, { failover: broken !== "no-failover" });
