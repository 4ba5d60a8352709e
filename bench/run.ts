/**
 * `npm run bench`: runs every benchmark beside its baseline, prints a table and writes
 * bench/results/latest.{json,md} plus a dated copy. Benchmarks measure and report; they assert no
 * timings. The exit code is 1 only when a benchmark could not run or its outputs were wrong.
 *
 * usage: npm run bench [-- [--quick] [word-count] [tcp-latency] [cluster] [replication] [control-plane] [protocol] [protocol-tls] [rabbitmq] [python-sdk] [checkpoint] [ws-ingest] [metrics]]
 *   --quick   small inputs and short runs, to check the harness; results go to bench/.data/results/
 */
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { BenchContext } from "./lib/context.ts";
import { gitInfo, machineInfo, mergeGitInfo } from "./lib/machine.ts";
import { consoleTable, markdown, type BenchResult, type RunReport } from "./lib/report.ts";
import { runCheckpoint } from "./checkpoint.ts";
import { runCluster } from "./cluster.ts";
import { runControlPlane } from "./control-plane.ts";
import { runMetrics } from "./metrics.ts";
import { runProtocol, runProtocolTls } from "./protocol.ts";
import { runPythonSdk } from "./python-sdk.ts";
import { runRabbitMQ } from "./rabbitmq.ts";
import { runReplication } from "./replication.ts";
import { runTcpLatency } from "./tcp-latency.ts";
import { runWordCount } from "./word-count.ts";
import { runWsIngest } from "./ws-ingest.ts";

const BENCHMARKS: ReadonlyArray<{ name: string; title: string; run: (ctx: BenchContext) => Promise<BenchResult> }> = [
  { name: "word-count", title: "Word count", run: runWordCount },
  { name: "tcp-latency", title: "TCP latency", run: runTcpLatency },
  { name: "cluster", title: "Cluster", run: runCluster },
  { name: "replication", title: "Replication", run: runReplication },
  { name: "control-plane", title: "Control plane (etcd)", run: runControlPlane },
  { name: "protocol", title: "Connector protocol", run: runProtocol },
  { name: "protocol-tls", title: "Connector protocol over TLS", run: runProtocolTls },
  { name: "rabbitmq", title: "RabbitMQ source (Python SDK)", run: runRabbitMQ },
  { name: "python-sdk", title: "Python SDK source vs raw grpcio", run: runPythonSdk },
  { name: "checkpoint", title: "Checkpoints (--data-dir): incremental vs full", run: runCheckpoint },
  { name: "ws-ingest", title: "WebSocket source ingest", run: runWsIngest },
  { name: "metrics", title: "Prometheus metrics on vs off", run: runMetrics },
];

const benchDir = dirname(fileURLToPath(import.meta.url));
const root = dirname(benchDir);
const args = process.argv.slice(2);
const quick = args.includes("--quick");
const selected = args.filter((a) => !a.startsWith("--"));
const unknown = selected.filter((name) => !BENCHMARKS.some((b) => b.name === name));
if (unknown.length > 0) {
  process.stderr.write(`unknown benchmark ${unknown.join(", ")}; known: ${BENCHMARKS.map((b) => b.name).join(", ")}\n`);
  process.exit(2);
}

const ctx: BenchContext = {
  root,
  dataDir: join(benchDir, ".data"),
  quick,
  log: (message) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`),
};

const startedAt = performance.now();
const date = new Date().toISOString();
const gitAtStart = gitInfo(root);
const results: BenchResult[] = [];
for (const bench of BENCHMARKS) {
  if (selected.length > 0 && !selected.includes(bench.name)) continue;
  const benchStartedAt = performance.now();
  try {
    results.push(await bench.run(ctx));
  } catch (err) {
    // A crash in one benchmark is reported as its result; the others still run.
    results.push({
      name: bench.name,
      title: bench.title,
      ok: false,
      errors: [`crashed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`],
      notes: [],
      comparisons: [],
      details: {},
      durationMs: performance.now() - benchStartedAt,
    });
  }
}

const report: RunReport = {
  date,
  machine: machineInfo(),
  git: mergeGitInfo(root, gitAtStart, gitInfo(root)),
  quick,
  durationMs: performance.now() - startedAt,
  benchmarks: results,
};

const resultsDir = quick ? join(ctx.dataDir, "results") : join(benchDir, "results");
mkdirSync(resultsDir, { recursive: true });
const latestJson = join(resultsDir, "latest.json");
const latestMd = join(resultsDir, "latest.md");
writeFileSync(latestJson, `${JSON.stringify(report, null, 2)}\n`);
writeFileSync(latestMd, markdown(report));
// Colons are not portable in file names; the dated copy keeps a history next to "latest".
const stamp = date.replace(/:/g, "-").replace(/\.\d+Z$/, "Z");
copyFileSync(latestJson, join(resultsDir, `${stamp}.json`));
copyFileSync(latestMd, join(resultsDir, `${stamp}.md`));

process.stdout.write(`${consoleTable(report)}\n\nresults: ${latestJson}, ${latestMd} (+ ${stamp}.{json,md})\n`);
process.exitCode = results.every((r) => r.ok) ? 0 : 1;
