/**
 * A real connector server on an ephemeral port with the real engine running a small app on its
 * Source and Sink objects:
 *   upper:  source "in"  -> toUpperCase                               -> sink "out"
 *   keyed:  source "kin" -> keyBy(partitioner "pk") -> count per key  -> sink "kout"
 */
import { app, partitioner, pipeline } from "../../../src/app/pipeline.ts";
import { silentLogger, type Logger } from "../../../src/log/logger.ts";
import { startConnectorServer, type ConnectorServer, type ProtocolLimits, type SessionPlacement } from "../../../src/protocol/index.ts";
import { partitionerNames } from "../../../src/runtime/dataflow.ts";
import { startEngine, type Engine } from "../../../src/runtime/engine.ts";

export const testApp = app(
  "protocol-test",
  pipeline("upper")
    .source("in")
    .map((line) => line.toUpperCase())
    .sink("out"),
  pipeline("keyed")
    .source("kin")
    .keyBy(partitioner("pk"))
    .state(
      () => ({ count: 0 }),
      (value, state) => {
        state.count += 1;
        return `${value}=${state.count}`;
      },
    )
    .sink("kout"),
);

export interface Harness {
  server: ConnectorServer;
  /** Undefined until startEngine() when the harness was started with deferEngine. */
  engine: Engine | undefined;
  address: string;
  startEngine(): Promise<Engine>;
  stop(): Promise<void>;
}

export interface HarnessOptions {
  limits?: Partial<ProtocolLimits>;
  token?: string;
  dataDir?: string;
  checkpointIntervalMs?: number;
  /** Start only the server; the test starts the engine later. */
  deferEngine?: boolean;
  placement?: SessionPlacement;
  /** --stream-retention-ms: how long a source stream with no session and nothing uncommitted is kept. */
  streamRetentionMs?: number;
  /** --session-timeout-ms: also how long a partitioner request may go unanswered. */
  sessionTimeoutMs?: number;
  /** The server's logger (silent by default). */
  log?: Logger;
}

export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  const server = await startConnectorServer({
    app: testApp,
    listen: "127.0.0.1:0",
    token: options.token,
    limits: options.limits,
    placement: options.placement,
    streamRetentionMs: options.streamRetentionMs,
    ...(options.sessionTimeoutMs === undefined ? {} : { sessionTimeoutMs: options.sessionTimeoutMs }),
    sourceTargets: ["in", "kin"],
    sinkTargets: ["out", "kout"],
    partitioners: testApp.pipelines.flatMap(partitionerNames),
    log: options.log ?? silentLogger(),
  });
  const harness: Harness = {
    server,
    engine: undefined,
    address: server.address,
    async startEngine() {
      harness.engine = await startEngine(
        testApp,
        {
          sources: new Map(["in", "kin"].map((n) => [n, server.sourceFor(n)])),
          sinks: new Map(["out", "kout"].map((n) => [n, server.sinkFor(n)])),
        },
        { partition: server.partition, log: silentLogger(), dataDir: options.dataDir, checkpointIntervalMs: options.checkpointIntervalMs },
      );
      return harness.engine;
    },
    async stop() {
      await server.close();
      // Unacked output would keep the engine's final flush waiting for a sink that is gone.
      await Promise.all(["out", "kout"].map((n) => server.sinkFor(n).close()));
      await harness.engine?.stop().catch(() => undefined);
    },
  };
  if (options.deferEngine !== true) await harness.startEngine();
  return harness;
}
