import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { checkSequenceWindows } from "../examples/validation/check.ts";
import { createSlotOf } from "../src/routing/hash.ts";
import { clusterStatus, steadyLoad } from "./helpers/cluster.ts";
import { freePort, runKeyway, scratchDir, startKeyway, waitFor, type Running } from "./helpers/process.ts";

const running: Running[] = [];
afterEach((context) => {
  // A failure under a loaded suite is rarely reproduced alone: every process's last log lines go to the report.
  if (context.task.result?.state === "fail") {
    for (const r of running) process.stderr.write(`--- ${r.child.spawnargs.slice(2, 4).join(" ")} (pid ${r.child.pid}):\n${r.stderr().slice(-4000)}\n`);
  }
  for (const r of running.splice(0)) r.child.kill("SIGKILL");
});

const lineCount = (path: string) => (existsSync(path) ? readFileSync(path, "utf8").split("\n").length - 1 : 0);
const noErrors = (stderr: string) => stderr.split("\n").filter((l) => l.includes('"level":50'));

describe("cluster moves", () => {
  it("grows 1->2->3 and shrinks 3->2->1 three times under connector load, the last time giving the first worker's data role away", async () => {
    const dir = scratchDir("cluster-cycles");
    const output = join(dir, "out.txt");
    const [connectorPort, tcpPort, clusterPort] = [await freePort(), await freePort(), await freePort()];
    const address = `127.0.0.1:${clusterPort}`;
    const engineAt = `127.0.0.1:${connectorPort}`;
    const engine = startKeyway(["run", "examples/validation/sequence-window.ts", "--source", "in=connector", "--sink", "out=connector",
      "--listen", engineAt, "--cluster-listen", address]);
    running.push(engine);
    await waitFor("the cluster", () => clusterStatus(address).catch(() => undefined));
    // External connector processes: a TCP source (its stream moves between workers) and an exactly-once file sink.
    const source = startKeyway(["connector", "tcp-source", "--engine", engineAt, "--target", "in", "--listen", `127.0.0.1:${tcpPort}`, "--instance-id", "load"]);
    const sink = startKeyway(["connector", "file-sink", "--engine", engineAt, "--target", "out", "--path", output, "--instance-id", "sink"]);
    running.push(source, sink);
    const load = await steadyLoad(tcpPort, 500);
    await waitFor("records flowing", () => (lineCount(output) > 0 ? true : undefined));

    const workers: Running[] = [];
    const dataWorkers = async (count: number) =>
      waitFor(`${count} data workers`, async () => {
        const s = await clusterStatus(address);
        const data = s.workers.filter((w) => w.data);
        if (data.length !== count || data.reduce((n, w) => n + w.slots, 0) !== 4096 || data.some((w) => w.slots === 0)) return undefined;
        return s;
      }, 60_000);
    for (let cycle = 0; cycle < 3; cycle++) {
      for (const count of [2, 3]) {
        const worker = startKeyway(["worker", "examples/validation/sequence-window.ts", "--join", address]);
        running.push(worker);
        workers.push(worker);
        await waitFor("the join to complete", () => (worker.stderr().includes("joined the cluster") ? true : undefined), 60_000);
        await dataWorkers(count);
      }
      const lastCycle = cycle === 2;
      const shrinks = lastCycle ? [["--worker", "w0"], ["--count", "1"]] : [["--count", "1"], ["--count", "1"]];
      for (const [i, args] of shrinks.entries()) {
        const shrink = await runKeyway(["cluster", "shrink", "--address", address, ...args]);
        expect(shrink.code, shrink.stderr).toBe(0);
        await dataWorkers(2 - i);
      }
      if (lastCycle) {
        const s = await clusterStatus(address);
        const w0 = s.workers.find((w) => w.id === "w0")!;
        expect([w0.data, w0.slots, w0.coordinator]).toEqual([false, 0, true]);
      }
    }

    await load.stop();
    await waitFor("every record at the sink", () => (lineCount(output) >= load.sent() ? true : undefined), 60_000);
    // Sessions followed the slots: the source was sent between workers, the sink stayed with the first.
    expect(source.stderr()).toMatch(/engine redirected the session/);
    const verdict = checkSequenceWindows(readFileSync(output, "utf8"), load.expected());
    expect(verdict.problems).toEqual([]);
    expect(verdict.outputs).toBe(load.sent());
    for (const worker of workers) expect(noErrors(worker.stderr())).toEqual([]);
    engine.child.kill("SIGTERM");
    const finished = await engine.finished;
    expect(finished.code, finished.stderr).toBe(0);
    expect(noErrors(finished.stderr)).toEqual([]);
  });

  it("keeps records of slots that do not move flowing while a move is stalled, and loses none of the moving ones", async () => {
    const dir = scratchDir("cluster-flowing");
    const output = join(dir, "out.txt");
    const [tcpPort, clusterPort] = [await freePort(), await freePort()];
    const address = `127.0.0.1:${clusterPort}`;
    // Small move steps over many keys: the move is still under way when its new owner is stopped.
    const engine = startKeyway(["run", "examples/validation/sequence-window.ts", "--source", `in=tcp://127.0.0.1:${tcpPort}`, "--sink", `out=file:${output}`,
      "--cluster-listen", address, "--migration-chunk-keys", "1000", "--failure-timeout-ms", "60000"]);
    running.push(engine);
    const KEYS = 100_000;
    const load = await steadyLoad(tcpPort, KEYS, 5000, 1);
    await waitFor("every key in state", () => (lineCount(output) >= KEYS ? true : undefined), 60_000);
    await load.stop();
    // Growing 1->2 moves the upper half of the slots: keys below slot 2048 stay with the first worker.
    const slotOf = await createSlotOf(4096);
    let n = 0;
    while (slotOf(`still${n}`) >= 2048) n++;
    const still = `still${n}`;
    const steady = await steadyLoad(tcpPort, n + 1, n + 1, 2, "still");
    const stillOutputs = () => readFileSync(output, "utf8").split("\n").filter((l) => l.startsWith(`${still} `)).length;
    const worker = startKeyway(["worker", "examples/validation/sequence-window.ts", "--join", address]);
    running.push(worker);
    await waitFor("the move to start", () => (/"msg":"worker joining"/.test(engine.stderr()) ? true : undefined), 30_000);
    worker.child.kill("SIGSTOP");
    const atStop = stillOutputs();
    await new Promise((r) => setTimeout(r, 1500));
    // The move cannot finish while its new owner is stopped, yet the key that stays keeps flowing.
    expect(engine.stderr()).not.toMatch(/"msg":"slots moved"/);
    expect(stillOutputs() - atStop).toBeGreaterThan(50);
    worker.child.kill("SIGCONT");
    await waitFor("the move to end", () => (/"msg":"slots moved"/.test(engine.stderr()) ? true : undefined), 120_000);
    await steady.stop();
    // The moved keys carry on from where they stood.
    const more = await steadyLoad(tcpPort, KEYS, 5000, 1, "k", load.counts());
    await more.stop();
    const total = load.sent() + steady.sent() + more.sent();
    await waitFor("every record at the sink", () => (lineCount(output) >= total ? true : undefined), 60_000);
    const expected = new Map([...steady.expected(), ...more.expected()]);
    const verdict = checkSequenceWindows(readFileSync(output, "utf8"), expected);
    expect(verdict.problems).toEqual([]);
    expect(verdict.outputs).toBe(total);
    expect(noErrors(engine.stderr())).toEqual([]);
  });

  it("reports a worker killed during a move clearly", async () => {
    const [sourcePort, clusterPort] = [await freePort(), await freePort()];
    const address = `127.0.0.1:${clusterPort}`;
    const dir = scratchDir("cluster-kill");
    const output = join(dir, "out.txt");
    const engine = startKeyway(["run", "examples/validation/sequence-window.ts", "--source", `in=tcp://127.0.0.1:${sourcePort}`,
      "--sink", `out=file:${output}`, "--cluster-listen", address, "--workers", "2", "--migration-chunk-keys", "2000"]);
    running.push(engine);
    await waitFor("two workers", async () => ((await clusterStatus(address).catch(() => undefined))?.workers.length === 2 ? true : undefined), 60_000);
    const KEYS = 200_000;
    const load = await steadyLoad(sourcePort, KEYS, 10_000, 1);
    await waitFor("every key in state", () => (lineCount(output) >= KEYS ? true : undefined), 60_000);
    await load.stop();
    const third = startKeyway(["worker", "examples/validation/sequence-window.ts", "--join", address]);
    running.push(third);
    await waitFor("the move to w2", () => (/"worker":"w2"[^\n]*"msg":"worker joining"/.test(engine.stderr()) ? true : undefined));
    third.child.kill("SIGKILL");
    const report = await waitFor("the coordinator's report", () => engine.stderr().split("\n").find((l) => l.includes('"level":50') && l.includes("w2")), 60_000);
    expect(report).toMatch(/worker w2 joining failed|state was lost/);
  });
});
