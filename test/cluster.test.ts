import { readFileSync, writeFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createControlClients } from "../src/cluster/control-rpc.ts";
import { CLUSTER_VERSION } from "../src/cluster/membership.ts";
import { ControlService, JoinResponseSchema, StatusResponseSchema } from "../src/protocol/gen/keyway/v1/cluster_pb.ts";
import { COORDINATOR_LOST_MS } from "../src/cluster/worker.ts";
import { clusterStatus, corpus, errors, expectCleanExit, expectEveryWindowOnce, expectExact, lineCount, steadyLoad } from "./helpers/cluster.ts";
import { expectOneLineError, freePort, runKeyway, scratchDir, startKeyway, waitFor, type Running } from "./helpers/process.ts";

const running: Running[] = [];
afterEach(() => {
  for (const r of running.splice(0)) {
    r.child.kill("SIGCONT");
    r.child.kill("SIGKILL");
  }
});

describe("cluster", () => {
  it("counts a directory's words exactly on 1, 2 and 3 workers, its files spread over them", async () => {
    const dir = scratchDir("cluster-wc");
    const counts = corpus(dir, 3, 60_000);
    for (const workers of [1, 2, 3]) {
      const output = join(dir, `out-${workers}.txt`);
      const result = await runKeyway(["run", "examples/word-count/app.ts", "--source", `lines=file:${join(dir, "in")}`, "--sink", `counts=file:${output}`, "--workers", String(workers)]);
      expect(result.code, result.stderr).toBe(0);
      expect(result.stderr).not.toMatch(/"level":50/);
      if (workers > 1) {
        expect(result.stderr).toMatch(/"msg":"slots moved"/);
        // Each worker read a file of its own.
        expect(result.stderr.match(/"msg":"reading sources placed here"/g)?.length).toBe(workers);
      }
      expectExact(readFileSync(output, "utf8"), counts);
    }
  });

  it("counts exactly with connector sources attached to the first worker and spread over three by Redirect", async () => {
    const dir = scratchDir("cluster-connectors");
    const counts = corpus(dir, 4, 30_000);
    const output = join(dir, "out.txt");
    const connectorPort = await freePort();
    const clusterAddress = `127.0.0.1:${await freePort()}`;
    const engine = startKeyway(["run", "examples/word-count/app.ts", "--source", "lines=connector", "--sink", `counts=file:${output}`,
      "--listen", `127.0.0.1:${connectorPort}`, "--cluster-listen", clusterAddress, "--workers", "3"]);
    running.push(engine);
    await waitFor("three workers", async () => ((await clusterStatus(clusterAddress).catch(() => undefined))?.workers.length === 3 ? true : undefined), 60_000);
    const sources = [0, 1, 2, 3].map((f) => {
      const source = startKeyway(["connector", "file-source", "--engine", `127.0.0.1:${connectorPort}`, "--target", "lines", "--path", join(dir, "in", `part-${f}.txt`), "--instance-id", `reader-${f}`]);
      running.push(source);
      return source;
    });
    for (const source of sources) {
      const finished = await source.finished;
      expect(finished.code, finished.stderr).toBe(0);
    }
    const total = [...counts.values()].reduce((a, b) => a + b, 0);
    await waitFor("every count at the sink", () => (existsSync(output) && readFileSync(output, "utf8").split("\n").length - 1 >= total ? true : undefined), 60_000);
    const redirected = sources.filter((s) => /engine redirected the session/.test(s.stderr())).length;
    expect(redirected).toBeGreaterThan(0);
    engine.child.kill("SIGTERM");
    const finished = await engine.finished;
    expect(finished.code, finished.stderr).toBe(0);
    expect(finished.stderr).not.toMatch(/"level":50/);
    expectExact(readFileSync(output, "utf8"), counts);
  });

  it("refuses a worker with a wrong token, another app or another protocol major, and the cluster goes on", async () => {
    const address = `127.0.0.1:${await freePort()}`;
    const dir = scratchDir("cluster-token");
    const engine = startKeyway(["run", "examples/validation/sequence-window.ts", "--source", `in=tcp://127.0.0.1:${await freePort()}`,
      "--sink", `out=file:${join(dir, "out.txt")}`, "--cluster-listen", address, "--token", "s3cret"]);
    running.push(engine);
    await waitFor("the cluster", () => clusterStatus(address, "s3cret").catch(() => undefined));
    const refused = await runKeyway(["worker", "examples/validation/sequence-window.ts", "--join", address, "--token", "wrong"]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/error \[UNAUTHENTICATED\]: cannot reach the cluster at .*: wrong or missing cluster token/);
    const otherApp = await runKeyway(["worker", "examples/word-count/app.ts", "--join", address, "--token", "s3cret"]);
    expect(otherApp.code).toBe(2);
    expect(otherApp.stderr).toMatch(/the cluster runs app "sequence-window"/);
    // A worker of another major version of the cluster protocol, spoken raw.
    const clients = createControlClients("s3cret");
    const incompatible = await clients
      .call(address, "Join", { version: { major: CLUSTER_VERSION.major + 1, minor: 0 }, address: "127.0.0.1:1", app: "sequence-window", appDigest: "" }, JoinResponseSchema)
      .then(() => "joined", (err: { details?: string }) => err.details ?? "");
    clients.close();
    expect(incompatible).toContain(`cluster protocol ${CLUSTER_VERSION.major + 1}.0 is not compatible with this cluster's ${CLUSTER_VERSION.major}.${CLUSTER_VERSION.minor}`);
    const ok = startKeyway(["worker", "examples/validation/sequence-window.ts", "--join", address, "--token", "s3cret"]);
    running.push(ok);
    await waitFor("two workers", async () => ((await clusterStatus(address, "s3cret")).workers.length === 2 ? true : undefined));
  });

  it("a worker refused at its join exits, though it had started serving connectors", async () => {
    const address = `127.0.0.1:${await freePort()}`;
    const engine = startKeyway(["run", "examples/word-count/app.ts", "--source", "lines=connector", "--sink", "counts=connector", "--listen", "127.0.0.1:0", "--cluster-listen", address, "--no-progress"]);
    running.push(engine);
    await waitFor("the cluster", () => clusterStatus(address).catch(() => undefined));
    // Another app: the coordinator refuses it after it has built its connector edge.
    const refused = await runKeyway(["worker", "test/fixtures/paced-word-count.ts", "--join", address]);
    expect(refused.code, refused.stderr).toBe(2);
    expect(refused.stderr).toMatch(/error \[USAGE\]: join refused by .*the cluster runs app "word-count"/);
    expect((await clusterStatus(address)).workers).toHaveLength(1);
  });

  it("refuses every cluster call made without the token, on the first worker and on the others, and nothing changes", async () => {
    const address = `127.0.0.1:${await freePort()}`;
    const dir = scratchDir("cluster-auth");
    const engine = startKeyway(["run", "examples/validation/sequence-window.ts", "--source", `in=tcp://127.0.0.1:${await freePort()}`,
      "--sink", `out=file:${join(dir, "out.txt")}`, "--cluster-listen", address, "--token", "s3cret", "--workers", "2"]);
    running.push(engine);
    await waitFor("the move to w1", () => (engine.stderr().includes('"msg":"slots moved"') ? true : undefined), 60_000);
    const before = await clusterStatus(address, "s3cret");
    expect(before.workers.map((w) => w.slots)).toEqual([2048, 2048]);
    const intruder = createControlClients(undefined);
    const wrong = createControlClients("guess");
    for (const target of before.workers.map((w) => w.address)) {
      for (const method of ControlService.methods) {
        for (const clients of [intruder, wrong]) {
          const outcome = await clients.call(target, method.name, {}, StatusResponseSchema, 10_000).then(() => "answered", (err: { code?: number; details?: string }) => `${err.code}: ${err.details}`);
          expect(outcome, `${method.name} at ${target}`).toBe("16: wrong or missing cluster token");
        }
      }
    }
    intruder.close();
    wrong.close();
    const after = await clusterStatus(address, "s3cret");
    expect(after.epoch).toBe(before.epoch);
    expect(after.workers.map((w) => [w.id, w.slots, w.data])).toEqual(before.workers.map((w) => [w.id, w.slots, w.data]));
    // The exchange refuses a link without the token too.
    const { checkExchangeRefusesWithoutToken } = await import("./helpers/exchange-probe.ts");
    expect(await checkExchangeRefusesWithoutToken(before.workers[1]!.address)).toBe("16: wrong or missing cluster token");
    const status = await runKeyway(["cluster", "status", "--address", address]);
    expect(status.code).toBe(1);
    expect(status.stderr).toMatch(/error \[UNAUTHENTICATED\]: status at .*: wrong or missing cluster token/);
  });

  it("shows a worker that stopped answering as unreachable within a few seconds, with each worker's pid and sources", async () => {
    const address = `127.0.0.1:${await freePort()}`;
    const dir = scratchDir("cluster-silent");
    const engine = startKeyway(["run", "examples/validation/sequence-window.ts", "--source", `in=tcp://127.0.0.1:${await freePort()}`,
      "--sink", `out=file:${join(dir, "out.txt")}`, "--cluster-listen", address, "--failure-timeout-ms", "60000"]);
    running.push(engine);
    await waitFor("the cluster", () => clusterStatus(address).catch(() => undefined));
    const worker = startKeyway(["worker", "examples/validation/sequence-window.ts", "--join", address]);
    running.push(worker);
    const joined = await waitFor("w1 reachable", async () => {
      const s = await clusterStatus(address);
      return s.workers.find((w) => w.id === "w1" && w.reachable && w.slots > 0) === undefined ? undefined : s;
    });
    expect(joined.workers.map((w) => w.pid)).toEqual([engine.child.pid, worker.child.pid]);
    expect(joined.workers[0]!.sources).toEqual(["in"]);
    worker.child.kill("SIGSTOP");
    const stoppedAt = Date.now();
    await waitFor("w1 unreachable", async () => ((await clusterStatus(address)).workers.find((w) => w.id === "w1")?.reachable === false ? true : undefined), 10_000);
    expect(Date.now() - stoppedAt).toBeLessThan(8000);
    worker.child.kill("SIGCONT");
    await waitFor("w1 reachable again", async () => ((await clusterStatus(address)).workers.find((w) => w.id === "w1")?.reachable === true ? true : undefined), 10_000);
  });

  it("a worker paused past the coordinator-lost limit asks again on waking, stays, and every window is right, once", async () => {
    const address = `127.0.0.1:${await freePort()}`;
    const dir = scratchDir("cluster-paused");
    const output = join(dir, "out.txt");
    const tcpPort = await freePort();
    const engine = startKeyway(["run", "examples/validation/sequence-window.ts", "--source", `in=tcp://127.0.0.1:${tcpPort}`,
      "--sink", `out=file:${output}`, "--cluster-listen", address, "--replicas", "1", "--failure-timeout-ms", "60000"]);
    running.push(engine);
    await waitFor("the cluster", () => clusterStatus(address).catch(() => undefined));
    const worker = startKeyway(["worker", "examples/validation/sequence-window.ts", "--join", address]);
    running.push(worker);
    await waitFor("w1 holding slots", async () => ((await clusterStatus(address)).workers.find((w) => w.id === "w1" && w.slots > 0) === undefined ? undefined : true));
    const load = await steadyLoad(tcpPort, 500);
    await waitFor("records flowing", () => (lineCount(output) > 1000 ? true : undefined));
    // Stopped longer than COORDINATOR_LOST_MS: its heartbeats' deadlines pass while it cannot ask.
    worker.child.kill("SIGSTOP");
    await new Promise((r) => setTimeout(r, COORDINATOR_LOST_MS + 2000));
    worker.child.kill("SIGCONT");
    await waitFor("w1 reachable again", async () => ((await clusterStatus(address)).workers.find((w) => w.id === "w1")?.reachable === true ? true : undefined), 20_000);
    await expectEveryWindowOnce(load, output);
    expect(worker.child.exitCode).toBe(null);
    expect(errors(worker.stderr())).toEqual([]);
    await expectCleanExit(engine);
  });
});

describe("cluster sources", () => {
  it("passes a leaving worker's unread files on to the others, resumed where they stood, and the counts stay exact", async () => {
    const dir = scratchDir("cluster-handoff");
    // The third file, read by w2, is the long one: w2 is still reading it when it is removed (at
    // 2M words it once finished while the shrink moved its slots under load).
    const counts = corpus(dir, 3, [100_000, 100_000, 4_000_000]);
    const output = join(dir, "out.txt");
    const address = `127.0.0.1:${await freePort()}`;
    const engine = startKeyway(["run", "examples/word-count/app.ts", "--source", `lines=file:${join(dir, "in")}`, "--sink", `counts=file:${output}`,
      "--workers", "3", "--cluster-listen", address]);
    running.push(engine);
    await waitFor("output flowing", () => (existsSync(output) && readFileSync(output).length > 100_000 ? true : undefined), 60_000);
    const shrink = await runKeyway(["cluster", "shrink", "--address", address, "--worker", "w2"]);
    expect(shrink.code, shrink.stderr).toBe(0);
    const finished = await engine.finished;
    expect(finished.code, finished.stderr).toBe(0);
    expect(finished.stderr).not.toMatch(/"level":50/);
    // Three files placed at the start, one per worker, and w2's unfinished one placed again.
    expect(finished.stderr.match(/"msg":"reading sources placed here"/g)?.length).toBe(4);
    expectExact(readFileSync(output, "utf8"), counts);
    // The summary counts w2's work too, though w2 is gone by the end.
    const lines = [0, 1, 2].reduce((n, f) => n + readFileSync(join(dir, "in", `part-${f}.txt`), "utf8").split("\n").length - 1, 0);
    const words = [...counts.values()].reduce((a, b) => a + b, 0);
    const whole = new Intl.NumberFormat("en");
    expect(finished.stderr).toContain(`: ${whole.format(lines)} records in, ${whole.format(words)} out,`);
  });
});

describe("cluster refusals", () => {
  it("refuses a partition function after a keyed stage in a cluster, with one line and exit 2", async () => {
    const dir = scratchDir("cluster-late-partitioner");
    const app = join(dir, "app.ts");
    writeFileSync(app, `import { partitioner, pipeline } from "keyway";
export default pipeline("late")
  .source("in")
  .keyBy((line: string) => line)
  .state(() => ({}), (line: string) => line)
  .keyBy(partitioner("pk"))
  .state(() => ({}), (line: string) => line)
  .sink("out");
`);
    await expectOneLineError(["run", app, "--source", `in=file:${app}`, "--sink", `out=file:${join(dir, "out.txt")}`, "--workers", "2"], 2,
      /keyway: error \[USAGE\]: pipeline "late" keys by a partition function after a keyed stage/);
  });
});
