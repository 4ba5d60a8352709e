// A small source written on raw gRPC (no SDK), to show the conformance suite fails when it should.
// Without --break it keeps every promise; each --break mode breaks exactly one:
//   --break credits     ignores credits: sends every record at once, in batches within the limit (R-SRC-CREDITS)
//   --break early-ack   acknowledges upstream as it sends, before Committed (R-SRC-COMMIT)
//   --break from-zero   restarts from the first record instead of resume_after (R-SRC-RESUME)
// Upstream: the lines of --input, position = line number; "acknowledging" record p writes p to --acks.
//   node --import tsx conformance/negative-controls/source.ts --input FILE --acks FILE [--break MODE]
// The engine's address, token and target come from KEYWAY_ENGINE, KEYWAY_TOKEN and KEYWAY_TARGET.
import { readFileSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { ConnectorService, SourceRequestSchema, type SourceRequest, type SourceResponse } from "../../src/protocol/gen/keyway/v1/connector_pb.ts";
import { clientDefinition } from "../../src/rpc/grpc-adapter.ts";
import { runWithReconnects, type SessionOutcome } from "./reconnect.ts";

const { values: args } = parseArgs({ options: { input: { type: "string" }, acks: { type: "string" }, break: { type: "string" } } });
const broken = args.break ?? "none";
if (!["none", "credits", "early-ack", "from-zero"].includes(broken)) throw new Error(`unknown --break ${broken}`);
const lines = readFileSync(args.input!, "utf8").split("\n").filter((l) => l !== "");
const stream = "lines";
let acked = 0;
const ack = (position: number): void => {
  if (position <= acked) return;
  acked = position;
  writeFileSync(args.acks!, String(acked));
};

const method = clientDefinition(ConnectorService).Source!;

function session(address: string, learn: (clusterAddresses: readonly string[]) => void): Promise<SessionOutcome> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure(), { "grpc.max_receive_message_length": 64 << 20, "grpc.enable_retries": 0 });
  const call = client.makeBidiStreamRequest<SourceRequest, SourceResponse>(method.path, method.requestSerialize, method.responseDeserialize as (b: Buffer) => SourceResponse);
  const send = (kind: MessageInitShape<typeof SourceRequestSchema>["kind"]): void => void call.write(create(SourceRequestSchema, { kind }));
  let credits = 0;
  let batchMax = 100;
  let next = 0; // index of the next line to send; 0 until StreamOpened
  let open = false;
  let endSent = false;
  let ending: SessionOutcome | undefined;
  const pump = (): void => {
    while (open && next < lines.length && (credits > 0 || broken === "credits")) {
      const count = Math.min(broken === "credits" ? Infinity : credits, batchMax, lines.length - next);
      const records = lines.slice(next, next + count).map((value, i) => ({ position: BigInt(next + i + 1), value: Buffer.from(value) }));
      send({ case: "batch", value: { stream, records } });
      credits -= count;
      next += count;
      if (broken === "early-ack") ack(next);
    }
    if (open && next >= lines.length && !endSent) {
      endSent = true;
      send({ case: "end", value: { stream } });
    }
  };
  return new Promise((resolve) => {
    call.on("data", (response: SourceResponse) => {
      const kind = response.kind;
      switch (kind.case) {
        case "welcome":
          learn(kind.value.clusterAddresses);
          credits = kind.value.initialCredits;
          batchMax = Math.min(100, kind.value.limits?.maxBatchRecords || 100);
          ending = { kind: "welcomed" };
          send({ case: "open", value: { stream } });
          return;
        case "opened":
          open = true;
          next = broken === "from-zero" ? 0 : Number(kind.value.resumeAfter);
          ack(Number(kind.value.committed));
          return pump();
        case "credits":
          credits += kind.value.records;
          return pump();
        case "committed":
          return ack(Number(kind.value.position));
        case "ended":
          ack(Number(kind.value.position));
          ending = { kind: "done" };
          return void call.end();
        case "error":
          ending = { kind: "error", code: kind.value.code, message: kind.value.message };
          return;
        case "redirect":
          ending = { kind: "redirect", address: kind.value.address };
          return;
        default:
          return; // a kind from a newer minor: ignored (R-VERSION-UNKNOWN-FIELDS)
      }
    });
    call.on("error", () => undefined);
    call.on("status", (status: grpc.StatusObject) => {
      client.close();
      if (ending?.kind === "error") resolve({ ...ending, status: status.code });
      else if (ending?.kind === "welcomed" || ending === undefined) resolve({ kind: "status", status: status.code, welcomed: ending !== undefined });
      else resolve(ending);
    });
    const hello = { version: { major: 1, minor: 0 }, connectorName: "negative-control-source", instanceId: `control-${process.pid}`, target: process.env.KEYWAY_TARGET!, token: process.env.KEYWAY_TOKEN ?? "" };
    send({ case: "hello", value: hello });
  });
}

process.exitCode = await runWithReconnects(process.env.KEYWAY_ENGINE!, session);
