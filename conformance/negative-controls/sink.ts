// A small sink written on raw gRPC (no SDK), to show the conformance suite fails when it should.
// Without --break it keeps every promise: it appends each value to --out as a line, once per
// record id (remembering the last 1000 ids, or more when Welcome says a restart may resend more),
// and acks a batch once it is written. Each --break mode breaks exactly one promise:
//   --break no-dedup          writes a redelivered record again (R-SINK-REDELIVERY, R-SINK-IDS)
//   --break ack-before-write  acks a batch as it arrives and writes it 1.5 s later (R-SINK-ACK)
//   --break fixed-window      keeps 1000 ids whatever max_replay_records says (R-SINK-REPLAY-WINDOW)
//   node --import tsx conformance/negative-controls/sink.ts --out FILE [--break MODE]
// The engine's address, token and target come from KEYWAY_ENGINE, KEYWAY_TOKEN and KEYWAY_TARGET.
import { appendFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { ConnectorService, SinkRequestSchema, type SinkBatch, type SinkRequest, type SinkResponse } from "../../src/protocol/gen/keyway/v1/connector_pb.ts";
import { clientDefinition } from "../../src/rpc/grpc-adapter.ts";
import { createIdWindow } from "../../src/sdk/id-window.ts";
import { runWithReconnects, type SessionOutcome } from "./reconnect.ts";

const { values: args } = parseArgs({ options: { out: { type: "string" }, break: { type: "string" } } });
const broken = args.break ?? "none";
if (!["none", "no-dedup", "ack-before-write", "fixed-window"].includes(broken)) throw new Error(`unknown --break ${broken}`);
const method = clientDefinition(ConnectorService).Sink!;
const written = createIdWindow(1000);
const WRITE_DELAY_MS = 1_500;

function write(batch: SinkBatch): void {
  const lines: string[] = [];
  for (const r of batch.records) {
    if (written.has(r.id) && broken !== "no-dedup") continue;
    written.add(r.id);
    lines.push(`${Buffer.from(r.value).toString("utf8")}\n`);
  }
  appendFileSync(args.out!, lines.join(""));
}

function session(address: string, learn: (clusterAddresses: readonly string[]) => void): Promise<SessionOutcome> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure(), { "grpc.max_receive_message_length": 64 << 20, "grpc.enable_retries": 0 });
  const call = client.makeBidiStreamRequest<SinkRequest, SinkResponse>(method.path, method.requestSerialize, method.responseDeserialize as (b: Buffer) => SinkResponse);
  const send = (kind: MessageInitShape<typeof SinkRequestSchema>["kind"]): void => void call.write(create(SinkRequestSchema, { kind }));
  let ending: SessionOutcome | undefined;
  // Batches arrive in order and are written in order; acking each by its own sequence right
  // after writing it is correct when they also arrive in increasing order (§8.3). A lower
  // sequence after a higher one is acked after everything received is written.
  const received: bigint[] = [];
  return new Promise((resolve) => {
    call.on("data", (response: SinkResponse) => {
      const kind = response.kind;
      switch (kind.case) {
        case "welcome": {
          learn(kind.value.clusterAddresses);
          ending = { kind: "welcomed" };
          const credits = Math.max(1000, kind.value.limits?.maxBatchRecords ?? 0);
          if (broken !== "fixed-window") written.grow(credits + (kind.value.limits?.maxReplayRecords ?? 0));
          return send({ case: "credits", value: { records: credits } });
        }
        case "batch": {
          const batch = kind.value;
          received.push(batch.sequence);
          const ackNow = (): void => {
            const highest = received.reduce((a, b) => (a > b ? a : b));
            send({ case: "ack", value: { sequence: batch.sequence === highest ? batch.sequence : highest } });
            send({ case: "credits", value: { records: batch.records.length } });
          };
          if (broken === "ack-before-write") {
            ackNow();
            setTimeout(() => write(batch), WRITE_DELAY_MS);
          } else {
            write(batch);
            ackNow();
          }
          return;
        }
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
    const hello = { version: { major: 1, minor: 0 }, connectorName: "negative-control-sink", instanceId: `control-${process.pid}`, target: process.env.KEYWAY_TARGET!, token: process.env.KEYWAY_TOKEN ?? "" };
    send({ case: "hello", value: hello });
  });
}

process.exitCode = await runWithReconnects(process.env.KEYWAY_ENGINE!, session);
