import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { clusterStatus, corpus, expectCleanExit, expectEveryCountOnce, expectEveryWindowOnce, lineCount, settled, startFileSources, steadyLoad } from "./helpers/cluster.ts";
import { freePort, scratchDir, startKeyway, waitFor, type Running } from "./helpers/process.ts";

const running: Running[] = [];
afterEach((context) => {
  // A rare stall (no output at all in the R=1 test, once in CI) left nothing to go on: on a failure,
  // every process's last log lines go to the report.
  if (context.task.result?.state === "fail") {
    for (const r of running) process.stderr.write(`--- ${r.child.spawnargs.slice(2, 4).join(" ")} (pid ${r.child.pid}):\n${r.stderr().slice(-4000)}\n`);
  }
  for (const r of running.splice(0)) r.child.kill("SIGKILL");
});

/** A sequence-window run over connector sessions: an external TCP source and an exactly-once file sink. */
async function sequenceCluster(name: string, workers: number, replicas: number, extra: string[] = []) {
  const dir = scratchDir(name);
  const output = join(dir, "out.txt");
  const [connectorPort, tcpPort, clusterPort] = [await freePort(), await freePort(), await freePort()];
  const address = `127.0.0.1:${clusterPort}`;
  const engineAt = `127.0.0.1:${connectorPort}`;
  const engine = startKeyway(["run", "examples/validation/sequence-window.ts", "--source", "in=connector", "--sink", "out=connector",
    "--listen", engineAt, "--cluster-listen", address, "--workers", String(workers), "--replicas", String(replicas), ...extra]);
  running.push(engine);
  await settled(address, workers, []);
  const source = startKeyway(["connector", "tcp-source", "--engine", engineAt, "--target", "in", "--listen", `127.0.0.1:${tcpPort}`, "--instance-id", "load"]);
  const sink = startKeyway(["connector", "file-sink", "--engine", engineAt, "--target", "out", "--path", output, "--instance-id", "sink"]);
  running.push(source, sink);
  return { engine, source, sink, output, address, tcpPort };
}

describe("cluster failover", () => {
  it("R=2 on 3 workers: a SIGKILLed worker's slots are led by their backups, copies are rebuilt, and every window is right, once", async () => {
    const { engine, source, output, address, tcpPort } = await sequenceCluster("failover-one", 3, 2);
    const load = await steadyLoad(tcpPort, 2000);
    await waitFor("records flowing", () => (lineCount(output) > 5000 ? true : undefined), 60_000);
    const before = await clusterStatus(address);
    // The worker holding the source's session, if it is not the first; the one killed loses a session too.
    const victim = before.workers.find((w) => !w.coordinator && w.connectorSessions > 0) ?? before.workers.find((w) => !w.coordinator)!;
    process.kill(victim.pid, "SIGKILL");
    const after = await settled(address, 2, [victim.id]);
    expect(after.workers.map((w) => w.id)).not.toContain(victim.id);
    const atRecovery = load.sent();
    await waitFor("records flowing after the failover", () => (lineCount(output) > atRecovery ? true : undefined), 60_000);
    await expectEveryWindowOnce(load, output);
    expect(engine.stderr()).toMatch(/"msg":"workers declared dead and fenced"/);
    expect(engine.stderr()).toMatch(/"msg":"copies restored: every slot has its replicas"/);
    expect(source.stderr()).not.toMatch(/"level":50/);
    await expectCleanExit(engine);
  });

  it("R=3 on 4 workers: two workers SIGKILLed at once, and every window is right, once", async () => {
    const { engine, output, address, tcpPort } = await sequenceCluster("failover-two", 4, 3);
    const load = await steadyLoad(tcpPort, 2000);
    await waitFor("records flowing", () => (lineCount(output) > 5000 ? true : undefined), 60_000);
    const victims = (await clusterStatus(address)).workers.filter((w) => !w.coordinator).slice(0, 2);
    for (const v of victims) process.kill(v.pid, "SIGKILL");
    const after = await settled(address, 2, victims.map((v) => v.id));
    // Two workers left: every slot has two copies, the most there can be.
    expect(after.workers.every((w) => w.slots + w.backups === after.slotCount)).toBe(true);
    await expectEveryWindowOnce(load, output);
    await expectCleanExit(engine);
  });

  it("ten cycles of SIGKILL a worker, then a new one joins: R copies restored after each, every window right, once", async () => {
    const { engine, output, address, tcpPort } = await sequenceCluster("failover-cycles", 1, 2);
    const workers: Running[] = [];
    const join = async (count: number) => {
      const worker = startKeyway(["worker", "examples/validation/sequence-window.ts", "--join", address]);
      running.push(worker);
      workers.push(worker);
      await waitFor("the join", () => (worker.stderr().includes("joined the cluster") ? true : undefined), 60_000);
      return settled(address, count, []);
    };
    await join(2);
    await join(3);
    // 10k records/s: load enough to have records in flight at every kill, while 2 cores also run the rest of the suite.
    const load = await steadyLoad(tcpPort, 1000, 50);
    const fenced: string[] = [];
    for (let cycle = 0; cycle < 10; cycle++) {
      const flowing = lineCount(output);
      await waitFor("records flowing", () => (lineCount(output) > flowing ? true : undefined), 60_000);
      const s = await clusterStatus(address);
      const victim = s.workers.filter((w) => !w.coordinator)[cycle % 2]!;
      process.kill(victim.pid, "SIGKILL");
      fenced.push(victim.id);
      await settled(address, 2, fenced);
      const restored = await join(3);
      expect(restored.replicas).toBe(2);
      expect(restored.underReplicated).toBe(0);
      expect(restored.workers.reduce((n, w) => n + w.backups, 0)).toBe(restored.slotCount);
    }
    await expectEveryWindowOnce(load, output);
    await expectCleanExit(engine);
    // Ten worker starts and joins: about 75 s alone, more beside the rest of the suite on two cores.
  }, 240_000);

  it("a worker stopped past the failure timeout is fenced: once continued, it is refused and exits with a clear message; every window is right, once", async () => {
    const { engine, output, address, tcpPort } = await sequenceCluster("failover-fenced", 1, 2, ["--failure-timeout-ms", "1000"]);
    const worker = startKeyway(["worker", "examples/validation/sequence-window.ts", "--join", address]);
    running.push(worker);
    await settled(address, 2, []);
    const load = await steadyLoad(tcpPort, 1000);
    await waitFor("records flowing", () => (lineCount(output) > 5000 ? true : undefined), 60_000);
    worker.child.kill("SIGSTOP");
    await settled(address, 1, ["w1"]);
    worker.child.kill("SIGCONT");
    const exited = await worker.finished;
    expect(exited.code).not.toBe(0);
    expect(exited.stderr).toMatch(/error \[FENCED\]: worker w1 was declared dead by the cluster and fenced/);
    await expectEveryWindowOnce(load, output);
    const status = await clusterStatus(address);
    expect(status.fenced).toEqual(["w1"]);
    engine.child.kill("SIGTERM");
    const finished = await engine.finished;
    expect(finished.code, finished.stderr).toBe(0);
  });

  it("the first worker stopped past the failure timeout declares nobody dead on waking: every worker stays, every window is right, once", async () => {
    const { engine, output, address, tcpPort } = await sequenceCluster("failover-coordinator-paused", 3, 2);
    const load = await steadyLoad(tcpPort, 1000);
    await waitFor("records flowing", () => (lineCount(output) > 5000 ? true : undefined), 60_000);
    // Twice the failure timeout (2 s by default): every worker's heartbeats wait unread meanwhile.
    engine.child.kill("SIGSTOP");
    await new Promise((r) => setTimeout(r, 4000));
    engine.child.kill("SIGCONT");
    const atWake = lineCount(output);
    await waitFor("records flowing after the pause", () => (lineCount(output) > atWake ? true : undefined), 60_000);
    await expectEveryWindowOnce(load, output);
    const status = await clusterStatus(address);
    expect([status.fenced, status.workers.length]).toEqual([[], 3]);
    expect(engine.stderr()).not.toMatch(/"msg":"workers declared dead and fenced"/);
    await expectCleanExit(engine);
  });

  it("R=1: a SIGKILLed worker takes the only copy of its slots, and the run stops with an error naming them", async () => {
    const { engine, output, address, tcpPort } = await sequenceCluster("failover-lost", 2, 1);
    const load = await steadyLoad(tcpPort, 1000);
    await waitFor("records flowing", () => (lineCount(output) > 2000 ? true : undefined), 60_000);
    const victim = (await clusterStatus(address)).workers.find((w) => !w.coordinator)!;
    process.kill(victim.pid, "SIGKILL");
    const finished = await engine.finished;
    await load.stop().catch(() => undefined);
    expect(finished.code).toBe(1);
    expect(finished.stderr).toMatch(/keyway: error \[STATE_LOST\]: workers w1 died holding the only copies of 2048 slots \(2048-4095\)/);
  });

  it("word count with connector sources: a worker SIGKILLed mid-run, and the exactly-once sink holds every count once, as with no failure", async () => {
    const dir = scratchDir("failover-words");
    const counts = corpus(dir, 4, 150_000);
    const output = join(dir, "out.txt");
    const [connectorPort, clusterPort] = [await freePort(), await freePort()];
    const address = `127.0.0.1:${clusterPort}`;
    const engineAt = `127.0.0.1:${connectorPort}`;
    const engine = startKeyway(["run", "examples/word-count/app.ts", "--source", "lines=connector", "--sink", "counts=connector",
      "--listen", engineAt, "--cluster-listen", address, "--workers", "3"]);
    running.push(engine);
    await settled(address, 3, []);
    const sink = startKeyway(["connector", "file-sink", "--engine", engineAt, "--target", "counts", "--path", output, "--instance-id", "sink"]);
    running.push(sink);
    const sources = startFileSources(dir, engineAt, 4);
    running.push(...sources);
    await waitFor("counts flowing", () => (lineCount(output) > 50_000 ? true : undefined), 60_000);
    const victim = (await clusterStatus(address)).workers.find((w) => !w.coordinator && w.connectorSessions > 0) ?? (await clusterStatus(address)).workers.find((w) => !w.coordinator)!;
    process.kill(victim.pid, "SIGKILL");
    await expectEveryCountOnce(sources, output, counts);
    expect((await clusterStatus(address)).fenced).toEqual([victim.id]);
    engine.child.kill("SIGTERM");
    const finished = await engine.finished;
    expect(finished.code, finished.stderr).toBe(0);
  });
});
