// The protocol benchmark's baseline receiver: a bare grpc-js server with one bidirectional method,
// the connector protocol's Source (its SourceRequest messages, decoded by protobuf-es exactly as
// the engine decodes them), and nothing else: no sessions, credits, queues or pipeline. It checks
// and times records like the SDK sink does (bench/lib/protocol-records.ts), writes
// "listening <port>" on stderr once bound and a RESULT line on stdout once every expected record
// has arrived (or on SIGTERM, with what it has).
//   node --import tsx bench/baselines/grpc-raw-server.ts '{"records":100000,"firstMeasured":0,"latency":false}'
import { Server, ServerCredentials, type ServerDuplexStream } from "@grpc/grpc-js";
import { ConnectorService, type SourceRequest } from "../../src/protocol/gen/keyway/v1/connector_pb.ts";
import { serverDefinition } from "../../src/rpc/grpc-adapter.ts";
import { cpuSecSince, parseArg, printResult, Receiver } from "../lib/protocol-records.ts";

interface Options {
  records: number;
  firstMeasured: number;
  latency: boolean;
}

const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;
const options = parseArg<Options>();
const receiver = new Receiver(options.records, options.firstMeasured, options.latency);
let recordsPerMessageMax = 0;
let reported = false;
let cpuStart: NodeJS.CpuUsage | undefined;
const server = new Server({ "grpc.max_receive_message_length": MAX_MESSAGE_BYTES * 2 });

function report(): void {
  if (reported) return;
  reported = true;
  printResult({ ...receiver.report(), recordsPerMessageMax, cpuSec: cpuStart === undefined ? null : cpuSecSince(cpuStart) });
  server.forceShutdown();
}

const source = serverDefinition(ConnectorService, MAX_MESSAGE_BYTES).Source!;
server.addService(
  { Source: source },
  {
    Source(call: ServerDuplexStream<SourceRequest, object>) {
      call.on("data", (request: SourceRequest) => {
        if (request.kind.case !== "batch") return;
        const records = request.kind.value.records;
        if (records.length > recordsPerMessageMax) recordsPerMessageMax = records.length;
        receiver.take(records.map((r) => r.value));
      });
      call.on("end", () => {
        call.end();
        // Whatever the client sent has arrived; a short count is reported as such.
        setImmediate(report);
      });
      call.on("error", () => {});
    },
  },
);
process.once("SIGTERM", report);
server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, port) => {
  if (err !== null) throw err;
  cpuStart = process.cpuUsage();
  process.stderr.write(`listening ${port}\n`);
});
