// The exchange-link benchmark's baseline: one bare grpc-js bidirectional stream carrying the same
// encoded payloads as bench/apps/exchange-peer.ts (encodeRecords per batch, decodeRecords on
// arrival), each message the payload's bytes as they are (identity serializers): no protobuf
// envelope, sequence numbers, acks, windows or reconnects; flow control is only the call's write
// backpressure. Same channel options as the exchange. One process per end:
//   receive: writes "listening <port>" on stderr once bound; once every expected record has
//            arrived, a RESULT line on stdout and "complete" on stderr; ends the call when the
//            client does; exits 0 on SIGTERM.
//   send:    writes every batch, waiting for "drain" when write() says so, ends the call and
//            prints a RESULT line once the call has ended OK.
//   node --import tsx bench/baselines/raw-stream-peer.ts '{"role":"send","address":"127.0.0.1:PORT",...}'
import * as grpc from "@grpc/grpc-js";
import { CHANNEL_OPTIONS } from "../../src/exchange/grpc-exchange.ts";
import { bytesBidiMethod } from "../lib/raw-grpc.ts";
import { decodeRecords, encodeRecords } from "../../src/exchange/payload.ts";
import { buildBatches, cpuSecSince, LinkReceiver, OrderSignature, parseArg, printResult, type LinkPlan, type LinkSenderReport } from "../lib/exchange-records.ts";
import { widenReceiveWindow } from "../../src/rpc/receive-window.ts";

type Options = LinkPlan & ({ role: "receive" } | { role: "send"; address: string });

const PATH = "/keyway.bench.RawStream/Pipe";
const PIPE = bytesBidiMethod(PATH);
const definition: grpc.ServiceDefinition = { Pipe: { ...PIPE, originalName: "pipe" } };

const options = parseArg<Options>();
const expected = options.batches * options.batchRecords;

if (options.role === "receive") {
  const receiver = new LinkReceiver(expected, () => {
    printResult(receiver.report());
    process.stderr.write("complete\n");
  });
  const server = new grpc.Server(CHANNEL_OPTIONS);
  server.addService(definition, {
    Pipe(call: grpc.ServerDuplexStream<Buffer, Buffer>) {
      call.on("data", (bytes: Buffer) => receiver.take(decodeRecords(bytes)));
      call.on("end", () => call.end());
      call.on("error", () => undefined);
    },
  });
  process.once("SIGTERM", () => {
    server.forceShutdown();
    process.exit(0);
  });
  server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, port) => {
    if (err !== null) throw err;
    // As the worker's cluster server does (src/cluster/control-rpc.ts).
    widenReceiveWindow(server);
    process.stderr.write(`listening ${port}\n`);
  });
} else {
  const batches = await buildBatches(options);
  const client = new grpc.Client(options.address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
  const call = client.makeBidiStreamRequest<Buffer, Buffer>(PATH, PIPE.requestSerialize, PIPE.responseDeserialize);
  const status = new Promise<grpc.StatusObject>((resolve) => call.on("status", resolve));
  call.on("data", () => undefined);
  call.on("error", () => undefined);
  const signature = new OrderSignature();
  let encodeUs = 0;
  const cpuStart = process.cpuUsage();
  const startedAt = performance.now();
  for (let i = 0; i < options.batches; i++) {
    const batch = batches[i % batches.length]!;
    const before = process.cpuUsage();
    // Batches here are under EXCHANGE_BATCH_RECORDS_MAX: one piece each.
    const { payload } = encodeRecords(batch)[0]!;
    const spent = process.cpuUsage(before);
    encodeUs += spent.user + spent.system;
    signature.add(batch);
    if (!call.write(Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength))) {
      await new Promise((resolve) => call.once("drain", resolve));
    }
  }
  call.end();
  const ended = await status;
  const report: LinkSenderReport = {
    batches: signature.batches,
    records: signature.records,
    signature: signature.toString(),
    sendMs: performance.now() - startedAt,
    cpuSec: cpuSecSince(cpuStart),
    encodeCpuSec: encodeUs / 1e6,
  };
  client.close();
  if (ended.code !== grpc.status.OK) {
    process.stderr.write(`call ended with ${grpc.status[ended.code]}: ${ended.details}\n`);
    process.exitCode = 1;
  }
  printResult(report);
}
