import { createServer, connect, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { clusterStatus, corpus, expectEveryCountOnce, expectEveryWindowOnce, lineCount, settled, startFileSources, steadyLoad } from "./helpers/cluster.ts";
import { startEtcd, type Etcd } from "./helpers/etcd.ts";
import { freePort, runKeyway, scratchDir, startKeyway, waitFor, type Running } from "./helpers/process.ts";

const running: Running[] = [];
const pids: number[] = [];
const etcds: Etcd[] = [];
afterEach(async () => {
  for (const r of running.splice(0)) r.child.kill("SIGKILL");
  for (const pid of pids.splice(0)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  await Promise.all(etcds.splice(0).map((e) => e.stop()));
});

/**
 * A sequence-window run on etcd: `keyway run` with local workers, an external TCP source and an
 * exactly-once file sink whose sessions may attach to any worker (so they survive the first's death).
 */
async function etcdCluster(name: string, workers: number, extra: string[] = []) {
  const etcd = await startEtcd(name);
  etcds.push(etcd);
  const dir = scratchDir(name);
  const output = join(dir, "out.txt");
  const [connectorPort, tcpPort, clusterPort] = [await freePort(), await freePort(), await freePort()];
  const address = `127.0.0.1:${clusterPort}`;
  const engine = startKeyway(["run", "examples/validation/sequence-window.ts", "--source", "in=connector", "--sink", "out=connector",
    "--listen", `127.0.0.1:${connectorPort}`, "--cluster-listen", address, "--workers", String(workers), "--replicas", "2", "--coordinator", etcd.uri, ...extra]);
  running.push(engine);
  const status = await settled(address, workers, []);
  pids.push(...status.workers.map((w) => w.pid));
  const engines = status.workers.map((w) => w.connectorAddress).join(",");
  const source = startKeyway(["connector", "tcp-source", "--engine", engines, "--target", "in", "--listen", `127.0.0.1:${tcpPort}`, "--instance-id", "load"]);
  const sink = startKeyway(["connector", "file-sink", "--engine", engines, "--target", "out", "--path", output, "--instance-id", "sink"]);
  running.push(source, sink);
  return { etcd, engine, source, sink, output, address, tcpPort, status };
}

describe("a cluster on etcd", () => {
  it("SIGKILL of the coordinator's worker (R=2, 3 workers): another worker leads, the sinks move with it, and every window is right, once", async () => {
    const { engine, output, tcpPort, status } = await etcdCluster("etcd-leader", 3);
    const leader = status.workers.find((w) => w.coordinator)!;
    const survivor = status.workers.find((w) => !w.coordinator)!;
    const load = await steadyLoad(tcpPort, 2000);
    await waitFor("records flowing", () => (lineCount(output) > 5000 ? true : undefined), 60_000);
    process.kill(leader.pid, "SIGKILL");
    const after = await settled(survivor.address, 2, [leader.id]);
    const successor = after.workers.find((w) => w.coordinator);
    expect(successor?.id).toBeDefined();
    expect(successor!.id).not.toBe(leader.id);
    // Status from any worker names the same coordinator.
    for (const w of after.workers) expect((await clusterStatus(w.address)).workers.find((x) => x.coordinator)?.id).toBe(successor!.id);
    const atRecovery = load.sent();
    await waitFor("records flowing after the coordinator's death", () => (lineCount(output) > atRecovery ? true : undefined), 60_000);
    await expectEveryWindowOnce(load, output);
    expect(engine.stderr()).toMatch(/"msg":"elected coordinator"/);
  });

  it("word count with connector sources: the coordinator's worker SIGKILLed mid-run, and the exactly-once sink holds every count once, as with no failure", async () => {
    const etcd = await startEtcd("etcd-words");
    etcds.push(etcd);
    const dir = scratchDir("etcd-words");
    const counts = corpus(dir, 4, 150_000);
    const output = join(dir, "out.txt");
    const [connectorPort, clusterPort] = [await freePort(), await freePort()];
    const address = `127.0.0.1:${clusterPort}`;
    const engine = startKeyway(["run", "examples/word-count/app.ts", "--source", "lines=connector", "--sink", "counts=connector",
      "--listen", `127.0.0.1:${connectorPort}`, "--cluster-listen", address, "--workers", "3", "--coordinator", etcd.uri]);
    running.push(engine);
    const status = await settled(address, 3, []);
    pids.push(...status.workers.map((w) => w.pid));
    const engines = status.workers.map((w) => w.connectorAddress).join(",");
    // When the sinks' worker dies, the output not yet known acked comes again (about a second of it
    // under this load) and may land behind fresh output: the sink's id window must still hold what
    // it wrote of it (docs/operations.md, "A control plane on etcd"), so it is sized for that here.
    const sink = startKeyway(["connector", "file-sink", "--engine", engines, "--target", "counts", "--path", output, "--instance-id", "sink", "--dedup-window", "1000000"]);
    running.push(sink);
    const sources = startFileSources(dir, engines, 4);
    running.push(...sources);
    await waitFor("counts flowing", () => (lineCount(output) > 50_000 ? true : undefined), 60_000);
    const leader = status.workers.find((w) => w.coordinator)!;
    process.kill(leader.pid, "SIGKILL");
    await expectEveryCountOnce(sources, output, counts);
    const after = await clusterStatus(status.workers.find((w) => !w.coordinator)!.address);
    expect(after.fenced).toEqual([leader.id]);
    expect(after.workers.find((w) => w.coordinator)?.id).not.toBe(leader.id);
  });

  it("etcd stopped for 5 s under load: processing goes on throughout, each worker says so once, and every window is right, once", async () => {
    const { etcd, engine, output, tcpPort } = await etcdCluster("etcd-down", 3);
    const load = await steadyLoad(tcpPort, 2000);
    await waitFor("records flowing", () => (lineCount(output) > 5000 ? true : undefined), 60_000);
    await etcd.stop();
    const [stoppedAt, atStop] = [Date.now(), lineCount(output)];
    await waitFor("records flowing while etcd is down", () => (lineCount(output) > atStop + 20_000 ? true : undefined), 4000);
    await new Promise((resolve) => setTimeout(resolve, stoppedAt + 5000 - Date.now()));
    const beforeStart = lineCount(output);
    await etcd.restart();
    await waitFor("every worker seeing etcd again", () => ((engine.stderr().match(/"msg":"etcd reachable again"/g) ?? []).length >= 3 ? true : undefined), 30_000);
    expect(beforeStart).toBeGreaterThan(atStop);
    await expectEveryWindowOnce(load, output);
    expect((engine.stderr().match(/"msg":"etcd unreachable: going on/g) ?? []).length).toBe(3);
    expect(engine.stderr()).not.toMatch(/declared dead|FENCED/);
  });

  it("a worker cut off from etcd past its lease fences itself before the cluster promotes its slots' backups; every window is right, once", async () => {
    const { etcd, engine, output, tcpPort, status } = await etcdCluster("etcd-cut", 2, ["--failure-timeout-ms", "3000"]);
    // A third worker reaches etcd only through a proxy this test can cut.
    const proxy = await tcpProxy(etcd.endpoint);
    const joiner = startKeyway(["worker", "examples/validation/sequence-window.ts", "--coordinator", `etcd://127.0.0.1:${proxy.port}`, "--listen", "127.0.0.1:0"]);
    running.push(joiner);
    await settled(status.workers[0]!.address, 3, []);
    const load = await steadyLoad(tcpPort, 2000);
    await waitFor("records flowing", () => (lineCount(output) > 5000 ? true : undefined), 60_000);
    proxy.cut();
    const exited = await joiner.finished;
    expect(exited.code).toBe(1);
    expect(exited.stderr).toMatch(/keyway: error \[FENCED\]: this worker could not renew its etcd lease for 3 s/);
    await settled(status.workers[0]!.address, 2, ["w2"]);
    const fencedAt = timeOf(exited.stderr, /"msg":"etcd lease lost: this worker stops taking writes"/);
    expect(fencedAt).toBeDefined();
    const promotedAt = timeOf(engine.stderr(), /"msg":"workers declared dead and fenced"/);
    expect(promotedAt).toBeDefined();
    expect(fencedAt!).toBeLessThan(promotedAt!);
    await expectEveryWindowOnce(load, output);
    proxy.close();
  });

  it("etcd unreachable at start: one line naming it, exit 1", async () => {
    const port = await freePort();
    const finished = await runKeyway(["run", "examples/validation/sequence-window.ts", "--source", "in=connector", "--sink", "out=connector", "--listen", "127.0.0.1:0", "--coordinator", `etcd://127.0.0.1:${port}`]);
    expect(finished.code).toBe(1);
    expect(finished.stderr.trim()).toBe(`keyway: error [UNAVAILABLE]: cannot reach etcd at 127.0.0.1:${port}: connection refused`);
  });
});

/** The "time" of the first JSON log line matching re. */
function timeOf(stderr: string, re: RegExp): number | undefined {
  const line = stderr.split("\n").find((l) => re.test(l) && l.startsWith("{"));
  return line === undefined ? undefined : (JSON.parse(line) as { time: number }).time;
}

/** A TCP proxy to `target` that can be cut: every connection through it dropped, new ones refused. */
async function tcpProxy(target: string): Promise<{ port: number; cut(): void; close(): void }> {
  const [host, port] = [target.slice(0, target.lastIndexOf(":")), Number(target.slice(target.lastIndexOf(":") + 1))];
  const sockets = new Set<Socket>();
  let open = true;
  const server: Server = createServer((client) => {
    if (!open) return client.destroy();
    const upstream = connect(port, host);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("error", () => undefined);
      s.on("close", () => sockets.delete(s));
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as { port: number }).port,
    cut() {
      open = false;
      for (const s of sockets) s.destroy();
    },
    close() {
      server.close();
    },
  };
}
