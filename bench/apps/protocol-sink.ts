// The protocol benchmark's external sink: the TypeScript SDK's runSink, checking that every record
// arrives exactly once (bench/lib/protocol-records.ts: a bitmap of indexes and a checksum) and
// timing each on arrival. It writes "ready" on stderr once the engine has welcomed it, and a
// RESULT line on stdout once every expected record has arrived (or on SIGTERM, with what it has).
//   node --import tsx bench/apps/protocol-sink.ts '{"engine":"127.0.0.1:7700","records":100000,"firstMeasured":0,"latency":false}'
import { runSink } from "../../src/sdk/index.ts";
import type { Logger } from "../../src/log/logger.ts";
import { cpuSecSince, parseArg, printResult, Receiver } from "../lib/protocol-records.ts";

interface Options {
  engine: string;
  records: number;
  firstMeasured: number;
  latency: boolean;
  creditWindowRecords?: number;
  /** Dial over TLS trusting `ca` (PEM paths); with cert and key, mutual TLS. */
  tls?: { ca: string; cert?: string; key?: string };
}

const options = parseArg<Options>();
const receiver = new Receiver(options.records, options.firstMeasured, options.latency);
const stop = new AbortController();
/** After the last expected record, duplicates still in flight get this long to show up. */
const GRACE_MS = 200;
let recordsPerBatchMax = 0;
let cpuStart: NodeJS.CpuUsage | undefined;

/** The SDK logs "session welcomed" at debug level: the moment this sink can take output. */
const log: Logger = {
  debug(obj: object | string, msg?: string) {
    if (msg === "session welcomed" && cpuStart === undefined) {
      cpuStart = process.cpuUsage();
      process.stderr.write("ready\n");
    }
    void obj;
  },
  info() {},
  warn(obj: object | string, msg?: string) {
    process.stderr.write(`${msg ?? ""} ${JSON.stringify(obj)}\n`);
  },
  error(obj: object | string, msg?: string) {
    process.stderr.write(`${msg ?? ""} ${JSON.stringify(obj)}\n`);
  },
  child() {
    return log;
  },
};

let finishing = false;
function finish(): void {
  if (finishing) return;
  finishing = true;
  setTimeout(() => stop.abort(), GRACE_MS);
}
process.once("SIGTERM", () => stop.abort());

await runSink(
  {
    engine: options.engine,
    target: "out",
    connectorName: "bench-protocol-sink",
    creditWindowRecords: options.creditWindowRecords ?? 20_000,
    signal: stop.signal,
    log,
    ...(options.tls === undefined ? {} : { tlsCa: options.tls.ca, ...(options.tls.cert === undefined ? {} : { tlsCert: options.tls.cert, tlsKey: options.tls.key! }) }),
  },
  async ({ records }) => {
    if (records.length > recordsPerBatchMax) recordsPerBatchMax = records.length;
    if (receiver.take(records.map((r) => r.value))) finish();
  },
);
printResult({ ...receiver.report(), recordsPerMessageMax: recordsPerBatchMax, cpuSec: cpuStart === undefined ? null : cpuSecSince(cpuStart) });
