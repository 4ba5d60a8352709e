// The protocol benchmark's external source: the TypeScript SDK's push-style client sending the
// benchmark's records (bench/lib/protocol-records.ts) to the engine, as fast as it takes them or at
// a fixed rate, with `batch` records per RecordBatch. Prints a RESULT line (count, checksum, send
// times) once the engine has committed every record.
//   node --import tsx bench/apps/protocol-source.ts '{"engine":"127.0.0.1:7700","mode":"throughput","records":100000,"batch":100}'
import { connectSource } from "../../src/sdk/index.ts";
import { cpuSecSince, parseArg, printResult, sendAll, type SendPlan } from "../lib/protocol-records.ts";

/** tls: dial over TLS trusting `ca` (PEM paths); with cert and key, mutual TLS. */
type Options = SendPlan & { engine: string; lingerMs?: number; tls?: { ca: string; cert?: string; key?: string } };

const options = parseArg<Options>();
const STREAM = "bench";

const client = await connectSource({
  engine: options.engine,
  target: "in",
  connectorName: "bench-protocol-source",
  batchRecords: options.batch,
  // Throughput: a partial batch only ever waits at the very end. Rate: no linger, so each tick's
  // records leave together once the tick's turn of the event loop is over.
  lingerMs: options.lingerMs ?? (options.mode === "rate" ? 0 : 5),
  ...(options.tls === undefined ? {} : { tlsCa: options.tls.ca, ...(options.tls.cert === undefined ? {} : { tlsCert: options.tls.cert, tlsKey: options.tls.key! }) }),
});
await client.open(STREAM);
const cpuStart = process.cpuUsage();
const report = await sendAll(
  options,
  (_seq, text) => client.send(STREAM, text),
  () => undefined,
);
await client.end(STREAM);
await client.close();
printResult({ ...report, cpuSec: cpuSecSince(cpuStart) });
