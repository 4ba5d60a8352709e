// The ws-ingest benchmark's baseline receiver: a bare `ws` WebSocketServer on 127.0.0.1 (any free
// port, path /in, no compression, as the engine's ws source serves) that counts the messages of
// every client and does nothing else. Writes "listening <port>" on stderr once bound, "all
// <count>" on stderr the moment the expected count has arrived, and a RESULT line on stdout then
// (or on SIGTERM, with what it has): hrtime (ns) of the first message, of the one completing
// firstMeasured messages and of the last, and its CPU seconds from the first message to the last.
//   node --import tsx bench/baselines/ws-raw-server.ts '{"messages":200000,"firstMeasured":20000}'
import { WebSocketServer } from "ws";
import { cpuSecSince, parseArg, printResult } from "../lib/protocol-records.ts";

interface Options {
  messages: number;
  firstMeasured: number;
}

export interface WsRawServerReport {
  received: number;
  connections: number;
  firstNs: number;
  windowStartNs: number;
  windowStartCount: number;
  lastNs: number;
  cpuSec: number | null;
}

const options = parseArg<Options>();
let received = 0;
let connections = 0;
let firstNs = 0;
let windowStartNs = 0;
let windowStartCount = 0;
let lastNs = 0;
let cpuStart: NodeJS.CpuUsage | undefined;
let cpuSec: number | null = null;
let reported = false;

const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, path: "/in", perMessageDeflate: false, clientTracking: false });

function report(): void {
  if (reported) return;
  reported = true;
  const result: WsRawServerReport = { received, connections, firstNs, windowStartNs, windowStartCount, lastNs, cpuSec };
  printResult(result);
}

wss.on("connection", (ws) => {
  connections++;
  ws.on("message", () => {
    if (++received === 1) {
      cpuStart = process.cpuUsage();
      firstNs = Number(process.hrtime.bigint());
    }
    if (received === options.firstMeasured) {
      windowStartNs = Number(process.hrtime.bigint());
      windowStartCount = received;
    }
    if (received === options.messages) {
      lastNs = Number(process.hrtime.bigint());
      cpuSec = cpuSecSince(cpuStart!);
      process.stderr.write(`all ${received}\n`);
      report();
    }
  });
  ws.on("error", () => {});
});
wss.on("listening", () => process.stderr.write(`listening ${(wss.address() as { port: number }).port}\n`));
process.once("SIGTERM", () => {
  report();
  wss.close();
  process.exit(0);
});
