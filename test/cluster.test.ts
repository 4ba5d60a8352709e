import { readFileSync, writeFileSync, existsSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { checkSequenceWindows } from "../examples/validation/check.ts";
import { createControlClients } from "../src/cluster/control-rpc.ts";
import { JoinResponseSchema } from "../src/protocol/gen/keyway/v1/cluster_pb.ts";
import { countWords, generateText } from "./helpers/text.ts";
import { freePort, runKeyway, scratchDir, startKeyway, waitFor, type Running } from "./helpers/process.ts";

/** Each word's output lines, in order: the per-word sequence the engine must keep on any worker count. */
function perWord(output: string): Map<string, string[]> {
  const groups = new Map<string, string[]>();
  for (const line of output.split("\n")) {
    if (line === "") continue;
    const word = line.slice(0, line.lastIndexOf(" "));
    let list = groups.get(word);
    if (list === undefined) groups.set(word, (list = []));
    list.push(line);
  }
  return groups;
}

interface ClusterStatus {
  epoch: number;
  slotCount: number;
  workers: Array<{ id: string; slots: number; keys: number; coordinator: boolean }>;
}

async function status(address: string): Promise<ClusterStatus> {
  const result = await runKeyway(["cluster", "status", "--address", address, "--json"]);
  if (result.code !== 0) throw new Error(`cluster status failed: ${result.stderr}`);
  return JSON.parse(result.stdout) as ClusterStatus;
}

const running: Running[] = [];
afterEach(() => {
  for (const r of running.splice(0)) r.child.kill("SIGKILL");
});

describe("cluster", () => {
  it("gives identical per-word output on 1, 2 and 3 workers", async () => {
    const dir = scratchDir("cluster-wc");
    const input = join(dir, "in.txt");
    const text = generateText(300_000, 5);
    writeFileSync(input, text);
    const outputs: string[] = [];
    for (const workers of [1, 2, 3]) {
      const output = join(dir, `out-${workers}.txt`);
      const result = await runKeyway(["run", "examples/word-count/app.ts", "--source", `lines=file:${input}`, "--sink", `counts=file:${output}`, "--workers", String(workers)]);
      expect(result.code, result.stderr).toBe(0);
      if (workers > 1) expect(result.stderr).toMatch(/"msg":"slots moved"/);
      outputs.push(readFileSync(output, "utf8"));
    }
    const [one, two, three] = outputs.map(perWord);
    expect(one!.size).toBe(countWords(text).size);
    expect(two).toEqual(one);
    expect(three).toEqual(one);
  });

  it("grows 1->2->3 and shrinks 3->2->1 under load, twice, with nothing lost, duplicated or reordered", async () => {
    const dir = scratchDir("cluster-grow");
    const output = join(dir, "out.txt");
    const [sourcePort, clusterPort] = [await freePort(), await freePort()];
    const address = `127.0.0.1:${clusterPort}`;
    const engine = startKeyway(["run", "examples/validation/sequence-window.ts", "--source", `in=tcp://127.0.0.1:${sourcePort}`,
      "--sink", `out=file:${output}`, "--cluster-listen", address]);
    running.push(engine);

    // Constant load: KEYS keys, each counting up, a small batch every few milliseconds.
    const KEYS = 500;
    const next = new Array<number>(KEYS).fill(0);
    let sent = 0;
    const socket = await waitFor("the engine's TCP source", () =>
      new Promise<Socket | undefined>((resolve) => {
        const s = connect(sourcePort, "127.0.0.1");
        s.once("connect", () => resolve(s));
        s.once("error", () => resolve(undefined));
      }));
    let loading = true;
    const load = (async () => {
      while (loading) {
        let chunk = "";
        for (let j = 0; j < 200; j++) {
          const k = (sent + j) % KEYS;
          chunk += `k${k} ${++next[k]!}\n`;
        }
        sent += 200;
        if (!socket.write(chunk)) await new Promise((r) => socket.once("drain", r));
        await new Promise((r) => setTimeout(r, 5));
      }
    })();

    const workers: Running[] = [];
    const expectShape = async (count: number) => {
      const s = await waitFor(`${count} workers`, async () => {
        const now = await status(address);
        return now.workers.length === count ? now : undefined;
      });
      expect(s.slotCount).toBe(4096);
      expect(s.workers.reduce((n, w) => n + w.slots, 0)).toBe(4096);
      for (const w of s.workers) expect(w.slots).toBeGreaterThan(0);
    };
    for (let cycle = 0; cycle < 2; cycle++) {
      for (const count of [2, 3]) {
        const worker = startKeyway(["worker", "examples/validation/sequence-window.ts", "--join", address]);
        running.push(worker);
        workers.push(worker);
        // The step is over when the join answers, that is once every slot it brings has moved.
        await waitFor("the join to complete", () => (worker.stderr().includes("joined the cluster") ? true : undefined));
        await expectShape(count);
        await waitFor("records flowing", () => (existsSync(output) && readFileSync(output).length > 0 ? true : undefined));
      }
      for (const count of [2, 1]) {
        const shrink = await runKeyway(["cluster", "shrink", "--address", address, "--count", "1"]);
        expect(shrink.code, shrink.stderr).toBe(0);
        await expectShape(count);
      }
      for (const worker of workers.splice(0)) {
        const finished = await worker.finished;
        expect(finished.code, finished.stderr).toBe(0);
        expect(finished.stderr).not.toMatch(/"level":50/);
      }
    }

    loading = false;
    await load;
    socket.end();
    const expected = new Map(next.map((n, k) => [`k${k}`, n]));
    await waitFor("every record at the sink", () => {
      const lines = existsSync(output) ? readFileSync(output, "utf8").split("\n").length - 1 : 0;
      return lines >= sent ? true : undefined;
    }, 60_000);
    engine.child.kill("SIGTERM");
    const finished = await engine.finished;
    expect(finished.code).toBe(0);
    expect(finished.stderr).not.toMatch(/"level":50/);
    const verdict = checkSequenceWindows(readFileSync(output, "utf8"), expected);
    expect(verdict.problems).toEqual([]);
    expect(verdict.outputs).toBe(sent);
  });

  it("refuses a worker with a wrong token, another app or another protocol major, and the cluster goes on", async () => {
    const clusterPort = await freePort();
    const address = `127.0.0.1:${clusterPort}`;
    const dir = scratchDir("cluster-token");
    const engine = startKeyway(["run", "examples/validation/sequence-window.ts", "--source", `in=tcp://127.0.0.1:${await freePort()}`,
      "--sink", `out=file:${join(dir, "out.txt")}`, "--cluster-listen", address, "--token", "s3cret"]);
    running.push(engine);
    await waitFor("the cluster", () => status(address).catch(() => undefined));
    const refused = await runKeyway(["worker", "examples/validation/sequence-window.ts", "--join", address, "--token", "wrong"]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/join refused by .*: wrong or missing cluster token/);
    const otherApp = await runKeyway(["worker", "examples/word-count/app.ts", "--join", address, "--token", "s3cret"]);
    expect(otherApp.code).toBe(2);
    expect(otherApp.stderr).toMatch(/the cluster runs app "sequence-window"/);
    // A worker of another major version of the cluster protocol, spoken raw.
    const peers = createControlClients("s3cret");
    const incompatible = await peers
      .call(address, "Join", { version: { major: 3, minor: 0 }, address: "127.0.0.1:1", app: "sequence-window", appDigest: "" }, JoinResponseSchema)
      .then(() => "joined", (err: { details?: string }) => err.details ?? "");
    peers.close();
    expect(incompatible).toMatch(/cluster protocol 2\.0 is not compatible with this cluster's 1\.0/);
    const ok = startKeyway(["worker", "examples/validation/sequence-window.ts", "--join", address, "--token", "s3cret"]);
    running.push(ok);
    await waitFor("two workers", async () => ((await status(address)).workers.length === 2 ? true : undefined));
  });

  it("reports a worker killed during a migration clearly", async () => {
    const [sourcePort, clusterPort] = [await freePort(), await freePort()];
    const address = `127.0.0.1:${clusterPort}`;
    const dir = scratchDir("cluster-kill");
    const output = join(dir, "out.txt");
    const engine = startKeyway(["run", "examples/validation/sequence-window.ts", "--source", `in=tcp://127.0.0.1:${sourcePort}`,
      "--sink", `out=file:${output}`, "--cluster-listen", address, "--workers", "2"]);
    running.push(engine);
    await waitFor("two workers", async () => ((await status(address).catch(() => undefined))?.workers.length === 2 ? true : undefined));
    // Enough keys that moving their state takes a while, so the kill lands mid-move.
    const KEYS = 600_000;
    const socket = connect(sourcePort, "127.0.0.1");
    for (let i = 0; i < KEYS; i += 10_000) {
      socket.write(Array.from({ length: 10_000 }, (_, j) => `k${i + j} 1\n`).join(""));
    }
    await waitFor("every key in state", () => (existsSync(output) && readFileSync(output, "utf8").split("\n").length > KEYS ? true : undefined), 60_000);

    const third = startKeyway(["worker", "examples/validation/sequence-window.ts", "--join", address]);
    running.push(third);
    await waitFor("the move to w2", () => (/"worker":"w2"[^\n]*"msg":"worker joining"/.test(engine.stderr()) ? true : undefined));
    third.child.kill("SIGKILL");
    const report = await waitFor("the coordinator's report", () =>
      engine.stderr().split("\n").find((l) => l.includes('"level":50') && l.includes("w2")));
    expect(report).toMatch(/worker w2 joining failed|state was lost|w2 at .* failed to process records/);
    socket.destroy();
  });
});
