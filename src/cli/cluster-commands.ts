/** `keyway worker` and `keyway cluster status|shrink`. */
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import type { Command } from "commander";
import { Option } from "commander";
import { ErrorCode, KeywayError } from "../errors.ts";
import { createLogger, type LogLevel } from "../log/logger.ts";
import type { StatusResponse } from "../protocol/gen/keyway/v1/cluster_pb.ts";
import { loadApp } from "./load-app.ts";

// gRPC and the cluster code load only when a cluster command runs, to keep other commands' start-up short.
const clusterModules = () => Promise.all([import("@grpc/grpc-js"), import("../cluster/grpc.ts"), import("../protocol/gen/keyway/v1/cluster_pb.ts")]);

async function clusterCall<O extends DescMessage>(address: string, method: string, request: object, output: O): Promise<MessageShape<O>> {
  const [{ status: grpcStatus }, { createPeerClients }] = await clusterModules();
  const peers = createPeerClients();
  return peers
    .call(address, method, request, output, 10 * 60_000)
    .catch((err: grpc.ServiceError) => {
      const unreachable = err.code === grpcStatus.UNAVAILABLE || err.code === grpcStatus.DEADLINE_EXCEEDED;
      throw new KeywayError(unreachable ? ErrorCode.USAGE : ErrorCode.INTERNAL, `${method.toLowerCase()} at ${address}: ${err.details || err.message}`);
    })
    .finally(() => peers.close());
}

function formatStatus(status: StatusResponse): string {
  const rows = status.workers.map((w) =>
    [w.id + (w.coordinator ? " *" : ""), w.address, String(w.slots), String(w.keys), w.recordsPerSecond.toFixed(0)].map((c) => c.padEnd(18)).join(""),
  );
  return [
    `app ${status.app}, epoch ${status.epoch}, ${status.slotCount} slots, ${status.workers.length} workers (* coordinator)`,
    ["worker", "address", "slots", "keys", "records/s"].map((c) => c.padEnd(18)).join(""),
    ...rows,
  ].join("\n");
}

export function addClusterCommands(program: Command, setExitCode: (code: number) => void): void {
  program
    .command("worker")
    .description("Join a running cluster as a worker and run the stages of the slots it is given.")
    .argument("<app>", "the same app module the cluster runs")
    .requiredOption("--join <host:port>", "the address any worker of the cluster serves workers on")
    .option("--listen <host:port>", "where this worker serves other workers", "127.0.0.1:0")
    .option("--token <token>", "the cluster token (default: env KEYWAY_TOKEN)")
    .addOption(new Option("--log-level <level>", "log level").choices(["debug", "info", "warn", "error", "silent"]).default("info"))
    .option("--verbose", "print stack traces with errors", false)
    .action(async (appPath: string, flags: { join: string; listen: string; token?: string; logLevel: LogLevel }) => {
      const app = await loadApp(appPath);
      const log = createLogger(flags.logLevel);
      const { runWorker } = await import("../cluster/worker-process.ts");
      await runWorker({ app, join: flags.join, listen: flags.listen, token: flags.token ?? process.env.KEYWAY_TOKEN, log });
      setExitCode(0);
    });

  const cluster = program.command("cluster").description("Watch and resize a running cluster.");
  cluster
    .command("status")
    .description("Workers, slots and keys per worker, the map's epoch, records/s.")
    .requiredOption("--address <host:port>", "the worker address of any worker")
    .option("--json", "print JSON", false)
    .action(async (flags: { address: string; json: boolean }) => {
      const [, , { StatusResponseSchema }] = await clusterModules();
      const status = await clusterCall(flags.address, "Status", {}, StatusResponseSchema);
      if (flags.json) {
        process.stdout.write(
          `${JSON.stringify({
            app: status.app,
            epoch: Number(status.epoch),
            slotCount: status.slotCount,
            workers: status.workers.map((w) => ({ id: w.id, address: w.address, slots: w.slots, keys: Number(w.keys), recordsPerSecond: w.recordsPerSecond, coordinator: w.coordinator })),
          })}\n`,
        );
      } else {
        process.stdout.write(`${formatStatus(status)}\n`);
      }
      setExitCode(0);
    });
  cluster
    .command("shrink")
    .description("Remove workers: their slots and state move to the others, then they exit.")
    .requiredOption("--address <host:port>", "the worker address of any worker")
    .option("--worker <id>", "a worker to remove (repeatable)", (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option("--count <n>", "remove the newest n workers")
    .option("--token <token>", "the cluster token (default: env KEYWAY_TOKEN)")
    .action(async (flags: { address: string; worker: string[]; count?: string; token?: string }) => {
      const count = flags.count === undefined ? 0 : Number(flags.count);
      if (flags.worker.length === 0 && !(Number.isSafeInteger(count) && count > 0)) {
        throw new KeywayError(ErrorCode.USAGE, "cluster shrink needs --worker ID or --count N");
      }
      const [, , { ShrinkResponseSchema }] = await clusterModules();
      const response = await clusterCall(
        flags.address,
        "Shrink",
        { token: flags.token ?? process.env.KEYWAY_TOKEN ?? "", workerIds: flags.worker, count },
        ShrinkResponseSchema,
      );
      process.stdout.write(`removed ${response.removed.join(", ")}\n`);
      setExitCode(0);
    });
}
