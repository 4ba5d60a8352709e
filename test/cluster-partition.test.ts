/**
 * Network partitions between real worker processes. Each worker runs in a network namespace of its
 * own, joined to the others through a bridge in a hub namespace (test/helpers/netns.ts), and one
 * worker is cut off from everything while a steady load runs, then let back. Unlike a SIGSTOP or a
 * kill, the cut-off worker keeps running and its peers' packets vanish without a refusal, so the
 * coordinator can only tell by the silence.
 *
 * Only worker-to-worker traffic and the connectors' sessions cross the bridge: the connectors run
 * in the hub (which reaches every worker until one is cut), and the sink's file is on the shared
 * filesystem.
 */
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { clusterStatus, errors, expectCleanExit, expectEveryWindowOnce, lineCount, settled, steadyLoad, type ClusterStatus } from "./helpers/cluster.ts";
import { createNetwork, removeLeftovers, requireNetns, type Network, type Node } from "./helpers/netns.ts";
import { scratchDir, waitFor, type Running } from "./helpers/process.ts";

const APP = "examples/validation/sequence-window.ts";
// Every namespace has ports of its own, so fixed ones collide with nothing else on the machine.
const CLUSTER_PORT = 7800;
const CONNECTOR_PORT = 7700;
const LOAD_PORT = 7600;
const FAILURE_TIMEOUT_MS = 2000;
/**
 * A worker cut off from its coordinator stops after 10 s without an answer, then gives its engine
 * at most 10 s to stop: well within this, it must have exited.
 */
const LOST_EXIT_MS = 45_000;

type Load = Awaited<ReturnType<typeof steadyLoad>>;

const running: Running[] = [];
const networks: Network[] = [];
afterEach(async () => {
  for (const r of running.splice(0)) r.child.kill("SIGKILL");
  // Throws when a namespace is left behind, so a leak fails the test that made it.
  for (const n of networks.splice(0)) await n.destroy();
});

/**
 * Three workers, each in its own namespace (the first, w0, holds the coordinator and the sinks);
 * in the hub, a TCP source connector and an exactly-once file sink connector. The source's
 * session is redirected to the worker its instance id maps to: that worker is the victim, the
 * one the tests cut off, and the third is the bystander.
 */
async function partitionableCluster(name: string, failureTimeoutMs: number) {
  // In the test itself rather than a hook, so that each test fails, with the reason, where this cannot run.
  await requireNetns();
  await removeLeftovers();
  const dir = scratchDir(name);
  const output = join(dir, "out.txt");
  const net = await createNetwork(3, dir);
  networks.push(net);
  const [first, ...others] = net.nodes as [Node, ...Node[]];
  const cluster = `${first.ip}:${CLUSTER_PORT}`;
  const engineAt = `${first.ip}:${CONNECTOR_PORT}`;
  const engine = net.startKeyway(first.ns, ["run", APP, "--source", "in=connector", "--sink", "out=connector", "--listen", engineAt, "--cluster-listen", cluster,
    "--failure-timeout-ms", String(failureTimeoutMs)]);
  running.push(engine);
  // The test's own namespace reaches nothing inside: status calls and the load go through relays in the hub.
  const status = `127.0.0.1:${await net.forward(first.ip, CLUSTER_PORT)}`;
  await waitFor("the first worker serving", () => (engine.stderr().includes('"msg":"serving workers"') ? true : undefined), 60_000);
  const workers = others.map((node) =>
    net.startKeyway(node.ns, ["worker", APP, "--join", cluster, "--listen", `${node.ip}:${CLUSTER_PORT}`, "--connector-listen", `${node.ip}:${CONNECTOR_PORT}`]));
  running.push(...workers);
  await settled(status, 3, []);
  const source = net.startKeyway(net.hub, ["connector", "tcp-source", "--engine", engineAt, "--target", "in", "--listen", `127.0.0.1:${LOAD_PORT}`, "--instance-id", "load"]);
  const sink = net.startKeyway(net.hub, ["connector", "file-sink", "--engine", engineAt, "--target", "out", "--path", output, "--instance-id", "sink"]);
  running.push(source, sink);
  // The relay accepts at once whether or not the source listens yet: the load must not start before it does.
  await waitFor("the TCP source listening", () => (source.stderr().includes('"msg":"source opened"') ? true : undefined), 60_000);
  // About 10k records/s, within what three workers sustain on two cores: the partition, not overload, is under test.
  const load = await steadyLoad(await net.forward("127.0.0.1", LOAD_PORT), 2000, 50);
  await waitFor("records flowing", () => (lineCount(output) > 5000 ? true : undefined), 60_000);

  // Worker ids follow the order of joining, not of starting: the victim is found by its address.
  const s = await clusterStatus(status);
  const victim = s.workers.find((w) => !w.coordinator && w.connectorSessions > 0);
  if (victim === undefined) throw new Error(`no worker but the first holds the load's session: ${JSON.stringify(s.workers)}`);
  const index = net.nodes.findIndex((n) => victim.address === `${n.ip}:${CLUSTER_PORT}`);
  expect(index).toBeGreaterThan(0);
  const bystander = workers.find((_, i) => i !== index - 1)!;
  return { net, engine, output, status, load, victim: { ...victim, index, process: workers[index - 1]! }, bystander };
}

/**
 * Waits for the coordinator to fence the worker, from its log rather than status (a CLI call that
 * takes a while), so that a heal right after comes soon after the fencing. It must be declared
 * dead by the silence, not by a refused probe: to the others it looks hung, not crashed.
 */
async function fencedBySilence(engine: Running, id: string): Promise<void> {
  const fenced = new RegExp(`"workers":\\["${id}"\\],"reason":"([^"]*)","msg":"workers declared dead and fenced"`);
  const reason = await waitFor(`${id} fenced`, () => fenced.exec(engine.stderr())?.[1], 30_000);
  expect(reason).toBe(`no heartbeat for ${FAILURE_TIMEOUT_MS} ms`);
}

/**
 * The two survivors hold every slot's copies, take the load, and give every window once; the run
 * then ends cleanly, the only errors logged being refusals of the fenced worker's links.
 */
async function survivorsCarryOn(status: string, engine: Running, survivor: Running, output: string, load: Load, fenced: string): Promise<void> {
  await settled(status, 2, [fenced]);
  const atRecovery = load.sent();
  await waitFor("records flowing after the failover", () => (lineCount(output) > atRecovery ? true : undefined), 60_000);
  await expectEveryWindowOnce(load, output);
  expect((await clusterStatus(status)).fenced).toEqual([fenced]);
  const refusal = `worker ${fenced} was declared dead and fenced; its links are refused`;
  engine.child.kill("SIGTERM");
  for (const p of [engine, survivor]) {
    const finished = await p.finished;
    expect(finished.code, finished.stderr).toBe(0);
    expect(errors(finished.stderr).filter((line) => !line.includes(refusal))).toEqual([]);
  }
}

const statusUntil = (status: string, what: string, ok: (s: ClusterStatus) => boolean) =>
  waitFor(what, async () => {
    const s = await clusterStatus(status).catch(() => undefined);
    return s !== undefined && ok(s) ? s : undefined;
  }, 30_000);

describe("cluster partition (network namespaces)", () => {
  it("R=2 on 3 workers: a worker cut off past the failure timeout is fenced, exits FENCED once the network heals, and every window is right, once", async () => {
    const { net, engine, output, status, load, victim, bystander } = await partitionableCluster("partition-healed", FAILURE_TIMEOUT_MS);
    await net.cut(victim.index);
    await fencedBySilence(engine, victim.id);
    await net.heal(victim.index);

    // Back on the network, it hears from the coordinator that it was fenced, and exits.
    const exited = await victim.process.finished;
    expect(exited.code).toBe(1);
    expect(exited.stderr).toMatch(new RegExp(`keyway: error \\[FENCED\\]: worker ${victim.id} was declared dead by the cluster and fenced \\(FENCED: worker ${victim.id} was declared dead after ${FAILURE_TIMEOUT_MS} ms without a heartbeat`));
    await survivorsCarryOn(status, engine, bystander, output, load, victim.id);
  });

  it("R=2 on 3 workers: a worker cut off for good is fenced, gives up on its coordinator and exits WORKER_LOST, and every window is right, once", async () => {
    const { net, engine, output, status, load, victim, bystander } = await partitionableCluster("partition-lasting", FAILURE_TIMEOUT_MS);
    await net.cut(victim.index);
    await fencedBySilence(engine, victim.id);

    // Never told it was fenced, it stops on its own once the coordinator has been silent for 10 s,
    // and it must get out while still cut off: nothing on the other side will ever answer it.
    const exited = await waitFor(`${victim.id}, cut off, to exit on its own (it gives up 10 s after its coordinator's last answer, then has 10 s to stop its engine)`, () => (victim.process.child.exitCode !== null || victim.process.child.signalCode !== null ? victim.process.finished : undefined), LOST_EXIT_MS);
    expect(exited.code).toBe(1);
    expect(exited.stderr).toMatch(/keyway: error \[WORKER_LOST\]: the coordinator at [\d.:]+ has not answered for 10 s; this worker stops/);
    // The source's session died with it; the source has moved to a survivor, or does once the network heals.
    await net.heal(victim.index);
    await survivorsCarryOn(status, engine, bystander, output, load, victim.id);
  });

  it("R=2 on 3 workers: a worker cut off for less than the failure timeout is only marked unreachable, nobody is fenced, and every window is right, once", async () => {
    // Long enough that the cut, plus TCP's retransmission backoff after it, ends well within it.
    const { net, engine, output, status, load, victim, bystander } = await partitionableCluster("partition-short", 10_000);
    await net.cut(victim.index);
    // Past the 2 s after which status marks a silent worker unreachable: the cut is real and seen.
    await statusUntil(status, `${victim.id} unreachable`, (s) => s.workers.some((w) => w.id === victim.id && !w.reachable));
    await net.heal(victim.index);
    await statusUntil(status, `${victim.id} reachable again`, (s) => s.workers.every((w) => w.reachable));

    const atHeal = load.sent();
    await waitFor("records flowing after the heal", () => (lineCount(output) > atHeal ? true : undefined), 60_000);
    await expectEveryWindowOnce(load, output);
    const after = await clusterStatus(status);
    expect(after.fenced).toEqual([]);
    expect(after.workers.map((w) => w.id).sort()).toEqual(["w0", "w1", "w2"]);
    expect(engine.stderr()).not.toMatch(/declared dead/);

    await expectCleanExit(engine);
    for (const p of [victim.process, bystander]) {
      const finished = await p.finished;
      expect(finished.code, finished.stderr).toBe(0);
      expect(errors(finished.stderr)).toEqual([]);
    }
  });
});
