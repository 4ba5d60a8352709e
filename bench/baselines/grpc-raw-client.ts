// The protocol benchmark's baseline sender: a bare grpc-js client opening one bidirectional call
// to bench/baselines/grpc-raw-server.ts and writing the connector protocol's RecordBatch messages
// (SourceRequest, built with protobuf-es as the SDK builds them) of `batch` records, as fast as
// the call's flow control takes them or at a fixed rate (each tick's records at once, in messages
// of at most `batch`). The client options are the SDK's (no per-call retry buffer). Prints a
// RESULT line once the call has ended.
//   node --import tsx bench/baselines/grpc-raw-client.ts '{"address":"127.0.0.1:PORT","mode":"throughput","records":100000,"batch":100}'
import * as grpc from "@grpc/grpc-js";
import { create } from "@bufbuild/protobuf";
import {
  ConnectorService,
  RecordBatchSchema,
  RecordSchema,
  SourceRequestSchema,
  type Record as WireRecord,
  type SourceRequest,
} from "../../src/protocol/gen/keyway/v1/connector_pb.ts";
import { clientDefinition } from "../../src/rpc/grpc-adapter.ts";
import { cpuSecSince, parseArg, printResult, sendAll, type SendPlan } from "../lib/protocol-records.ts";

type Options = SendPlan & { address: string };

const options = parseArg<Options>();
const STREAM = "bench";
const method = clientDefinition(ConnectorService).Source!;
const client = new grpc.Client(options.address, grpc.credentials.createInsecure(), {
  "grpc.per_rpc_retry_buffer_size": 0,
  "grpc.enable_retries": 0,
});
// Connected before the first record, as the SDK source is (it sends only after its Welcome).
await new Promise<void>((resolve, reject) => client.waitForReady(Date.now() + 30_000, (err) => (err ? reject(err) : resolve())));
const cpuStart = process.cpuUsage();
const call = client.makeBidiStreamRequest(
  method.path,
  method.requestSerialize as (request: SourceRequest) => Buffer,
  method.responseDeserialize as (bytes: Buffer) => object,
);
const status = new Promise<grpc.StatusObject>((resolve) => call.on("status", resolve));
call.on("data", () => {});
call.on("error", () => {});

let records: WireRecord[] = [];
function write(): void | Promise<void> {
  const request = create(SourceRequestSchema, { kind: { case: "batch", value: create(RecordBatchSchema, { stream: STREAM, records }) } });
  records = [];
  if (call.write(request)) return;
  return new Promise((resolve) => call.once("drain", resolve));
}

const report = await sendAll(
  options,
  (seq, text) => {
    records.push(create(RecordSchema, { position: BigInt(seq + 1), value: Buffer.from(text, "utf8") }));
    if (records.length >= options.batch) return write();
  },
  () => (records.length > 0 ? write() : undefined),
);
call.end();
const ended = await status;
client.close();
if (ended.code !== grpc.status.OK) {
  process.stderr.write(`call ended with ${grpc.status[ended.code]}: ${ended.details}\n`);
  process.exitCode = 1;
}
printResult({ ...report, cpuSec: cpuSecSince(cpuStart) });
