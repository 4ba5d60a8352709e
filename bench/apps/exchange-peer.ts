// One end of the exchange-link benchmark through the real exchange (src/exchange/grpc-exchange.ts),
// one process per end, as two workers are:
//   receive: serves an Exchange (a grpc-js Server with the worker's channel options and
//            exchange.definition/service) as worker "w1"; each batch is decoded with decodeRecords,
//            counted and signed, and reported applied and done at once. Writes "listening <port>"
//            on stderr once bound; once every expected record has arrived, a RESULT line on
//            stdout and "complete" on stderr; exits 0 on SIGTERM.
//   send:    an Exchange as worker "w0" with the receiver as its one peer; sends the plan's batches
//            (encodeRecords per batch) the way the engine's source loop does: waiting for
//            exchange.ready() and for at most 64 unfinished batches. Prints a RESULT line once every
//            batch is done at the receiver, and exits.
//   node --import tsx bench/apps/exchange-peer.ts '{"role":"receive","corpusPath":...,"batchRecords":1000,"distinctBatches":64,"batches":2000}'
import * as grpc from "@grpc/grpc-js";
import { CHANNEL_OPTIONS, createExchange } from "../../src/exchange/grpc-exchange.ts";
import { decodeRecords, encodeRecords } from "../../src/exchange/payload.ts";
import { createLogger } from "../../src/log/logger.ts";
import { buildBatches, cpuSecSince, INFLIGHT_BATCHES_MAX, LinkReceiver, OrderSignature, parseArg, printResult, type LinkPlan, type LinkSenderReport } from "../lib/exchange-records.ts";
import { widenReceiveWindow } from "../../src/rpc/receive-window.ts";

type Options = LinkPlan & ({ role: "receive" } | { role: "send"; address: string });

const options = parseArg<Options>();
const log = createLogger("warn");
const expected = options.batches * options.batchRecords;

if (options.role === "receive") {
  const resolved = Promise.resolve();
  const receiver = new LinkReceiver(expected, () => {
    printResult(receiver.report());
    process.stderr.write("complete\n");
  });
  const exchange = createExchange({
    self: () => "w1",
    log,
    receive: (batch) => {
      receiver.take(decodeRecords(batch.payload));
      return { applied: resolved, done: resolved };
    },
  });
  const server = new grpc.Server(CHANNEL_OPTIONS);
  server.addService(exchange.definition, exchange.service);
  process.once("SIGTERM", () => {
    exchange.close();
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
  const exchange = createExchange({
    self: () => "w0",
    log,
    receive: () => {
      throw new Error("the sending end receives nothing");
    },
  });
  exchange.setPeers([{ id: "w1", address: options.address }]);
  const signature = new OrderSignature();
  const inflight: Promise<void>[] = [];
  let encodeUs = 0;
  const cpuStart = process.cpuUsage();
  const startedAt = performance.now();
  for (let i = 0; i < options.batches; i++) {
    await exchange.ready();
    if (inflight.length >= INFLIGHT_BATCHES_MAX) await inflight.shift();
    const batch = batches[i % batches.length]!;
    const before = process.cpuUsage();
    // Batches here are under EXCHANGE_BATCH_RECORDS_MAX: one piece each.
    const { payload } = encodeRecords(batch)[0]!;
    const spent = process.cpuUsage(before);
    encodeUs += spent.user + spent.system;
    signature.add(batch);
    inflight.push(exchange.send("w1", { epoch: 1, pipeline: 0, stage: 0, toSink: false, hops: 0, records: batch.keys.length, payload }));
  }
  await Promise.all(inflight);
  const report: LinkSenderReport = {
    batches: signature.batches,
    records: signature.records,
    signature: signature.toString(),
    sendMs: performance.now() - startedAt,
    cpuSec: cpuSecSince(cpuStart),
    encodeCpuSec: encodeUs / 1e6,
  };
  exchange.close();
  printResult(report);
}
