/**
 * A RabbitMQ node of the conformance tests' own (its own node name and ports on 127.0.0.1), so it
 * never races the shared broker other tests start and stop (scripts/rabbitmq-start.sh). Stopping it
 * leaves the Erlang port mapper alone, which other nodes may still use.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";

const execFileP = promisify(execFile);
const START_MS_MAX = 120_000;

export interface PrivateRabbitMQ {
  /** What a process needs in its environment to use this node: AMQP_URL and the RABBITMQ_* of rabbitmqctl. */
  env: Record<string, string>;
  stop(): Promise<void>;
}

/** `port` for AMQP, `distPort` for Erlang distribution (rabbitmqctl): two free ports. */
export async function startPrivateRabbitMQ(port: number, distPort: number): Promise<PrivateRabbitMQ> {
  const node = `keyway-conformance-${port}@localhost`;
  const env: Record<string, string> = {
    RABBITMQ_NODENAME: node,
    RABBITMQ_NODE_PORT: String(port),
    RABBITMQ_NODE_IP_ADDRESS: "127.0.0.1",
    RABBITMQ_DIST_PORT: String(distPort),
    ERL_EPMD_ADDRESS: "127.0.0.1",
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: "-kernel inet_dist_use_interface {127,0,0,1}",
    AMQP_URL: `amqp://guest:guest@127.0.0.1:${port}/%2F`,
  };
  const options = { env: { ...process.env, ...env }, timeout: START_MS_MAX };
  await execFileP("rabbitmq-server", ["-detached"], options);
  const deadline = Date.now() + START_MS_MAX;
  for (;;) {
    try {
      await execFileP("rabbitmqctl", ["-q", "-n", node, "await_startup"], options);
      break;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`RabbitMQ node ${node} did not start: ${(err as Error).message}`);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
  return {
    env,
    stop: async () => {
      await execFileP("rabbitmqctl", ["-q", "-n", node, "stop"], options).catch(() => undefined);
    },
  };
}
