/**
 * The SDK end to end: the real engine (`keyway run`), the bundled connectors as processes of their
 * own (`keyway connector ...`) and a partition function in TypeScript, all over real sockets.
 * Every run's output is compared byte for byte with the plain in-process run of the same input,
 * so a lost, duplicated or reordered output fails the verdict, whatever was killed meanwhile.
 */
import { spawn } from "node:child_process";
import { readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { connect, createServer, type Socket } from "node:net";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { latestCheckpointSeq } from "../../src/durability/checkpoint-chain.ts";
import { freePort, ROOT, runKeyway, scratchDir, startKeyway, waitFor, type Finished, type Running } from "../helpers/process.ts";
import { countWords, generateText } from "../helpers/text.ts";

/** Enough input that a process killed at a fifth of the output is killed mid-stream. */
const WORDS = 800_000;

let dir: string;
let input: string;
let plainOutput: Buffer;

beforeAll(async () => {
  dir = scratchDir("sdk-e2e");
  input = join(dir, "in.txt");
  const text = generateText(WORDS, 23);
  writeFileSync(input, text);
  const plain = join(dir, "plain.txt");
  const result = await runKeyway(["run", "examples/word-count/app.ts", "--source", `lines=file:${input}`, "--sink", `counts=file:${plain}`, "--no-progress"]);
  expect(result.code).toBe(0);
  plainOutput = readFileSync(plain);
  // The plain run is itself checked against an independent count, so equality below means exact.
  const expectedLines = [...countWords(text).values()].reduce((a, b) => a + b, 0);
  expect(plainOutput.toString("utf8").split("\n").length - 1).toBe(expectedLines);
}, 120_000);

afterAll(() => {
  // Each run leaves about 100 MB of inputs, outputs and ledgers behind.
  rmSync(dir, { recursive: true, force: true });
});

/** Every process a test started, so a failing test leaves none behind. */
const started: Running[] = [];

afterEach(() => {
  for (const running of started.splice(0)) if (running.child.exitCode === null && running.child.signalCode === null) running.child.kill("SIGKILL");
});

function track(running: Running): Running {
  started.push(running);
  return running;
}

/** An engine serving word count with its source and sink bound to connectors. */
async function startConnectorEngine(app = "examples/word-count/app.ts", bindings = ["--source", "lines=connector", "--sink", "counts=connector"]): Promise<{ engine: Running; address: string }> {
  const address = `127.0.0.1:${await freePort()}`;
  const engine = track(startKeyway(["run", app, ...bindings, "--listen", address, "--no-progress"]));
  await waitFor("the engine to serve connectors", () => (engine.stderr().includes("serving connectors") ? true : undefined));
  return { engine, address };
}

function connector(kind: string, address: string, ...args: string[]): Running {
  return track(startKeyway(["connector", kind, "--engine", address, "--log-level", "warn", ...args]));
}

function fileBytes(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

/** Waits until the output has reached the plain run's size, then compares the bytes. */
async function expectPlainOutput(path: string): Promise<void> {
  await waitFor("the output to reach the plain run's size", () => (fileBytes(path) >= plainOutput.length ? true : undefined), 90_000);
  const output = readFileSync(path);
  expect(output.length).toBe(plainOutput.length);
  expect(output.equals(plainOutput)).toBe(true);
}

/** A connected socket, or undefined while nothing listens on the port yet. */
function connectOnce(port: number): Promise<Socket | undefined> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    socket.once("connect", () => resolve(socket));
    socket.once("error", () => resolve(undefined));
  });
}

async function stopped(running: Running): Promise<Finished> {
  running.child.kill("SIGTERM");
  return running.finished;
}

/** Kills a process once the output has reached a fifth of its final size; fails if it had already exited. */
async function killMidStream(running: Running, output: string): Promise<void> {
  await waitFor("a fifth of the output", () => (fileBytes(output) >= plainOutput.length / 5 ? true : undefined), 60_000);
  running.child.kill("SIGKILL");
  const finished = await running.finished;
  expect(finished.signal).toBe("SIGKILL");
}

describe("connectors as processes, through the SDK", () => {
  it("word count from `keyway connector file-source` to `file-sink` equals the plain file run", async () => {
    const output = join(dir, "connectors.txt");
    const { engine, address } = await startConnectorEngine();
    const sink = connector("file-sink", address, "--path", output, "--target", "counts");
    const source = connector("file-source", address, "--path", input, "--target", "lines");
    const sent = await source.finished;
    expect(sent.stderr).toBe("");
    expect(sent.code).toBe(0);
    await expectPlainOutput(output);
    expect((await stopped(engine)).code).toBe(0);
    expect((await stopped(sink)).code).toBe(0);
  });

  it("a source killed mid-stream and restarted gives exact counts", async () => {
    const output = join(dir, "source-killed.txt");
    const { engine, address } = await startConnectorEngine();
    const sink = connector("file-sink", address, "--path", output, "--target", "counts");
    await killMidStream(connector("file-source", address, "--path", input, "--target", "lines"), output);
    const again = await connector("file-source", address, "--path", input, "--target", "lines").finished;
    expect(again.code).toBe(0);
    await expectPlainOutput(output);
    await stopped(engine);
    await stopped(sink);
  });

  it("a sink killed mid-stream and restarted writes every output exactly once", async () => {
    const output = join(dir, "sink-killed.txt");
    const { engine, address } = await startConnectorEngine();
    const source = connector("file-source", address, "--path", input, "--target", "lines");
    await killMidStream(connector("file-sink", address, "--path", output, "--target", "counts"), output);
    const sink = connector("file-sink", address, "--path", output, "--target", "counts");
    expect((await source.finished).code).toBe(0);
    await expectPlainOutput(output);
    await stopped(engine);
    expect((await stopped(sink)).code).toBe(0);
  });

  it("an engine killed mid-stream with --data-dir and restarted: the source resumes and the output is exact", async () => {
    const output = join(dir, "engine-killed.txt");
    const dataDir = join(dir, "engine-state");
    const address = `127.0.0.1:${await freePort()}`;
    const args = ["run", "examples/word-count/app.ts", "--source", "lines=connector", "--sink", "counts=connector", "--listen", address,
      "--data-dir", dataDir, "--checkpoint-interval-ms", "200", "--no-progress"];
    const first = track(startKeyway(args));
    await waitFor("the engine to serve connectors", () => (first.stderr().includes("serving connectors") ? true : undefined));
    // Exactly once needs the sink's id window to cover every output replayed after the last
    // checkpoint; on a loaded machine checkpoints lag, so the window here covers the whole run.
    const sink = connector("file-sink", address, "--path", output, "--target", "counts", "--dedup-window", "2000000");
    const source = connector("file-source", address, "--path", input, "--target", "lines");
    await waitFor("a first checkpoint", () => (latestCheckpointSeq(dataDir) !== undefined ? true : undefined), 60_000);
    await killMidStream(first, output);
    // The connectors keep reconnecting with backoff until the engine is back on the same address.
    const second = track(startKeyway(args));
    expect((await source.finished).code).toBe(0);
    await expectPlainOutput(output);
    expect(second.stderr()).toMatch(/restored checkpoint/);
    expect((await stopped(second)).code).toBe(0);
    expect((await stopped(sink)).code).toBe(0);
  });

  it("lines from `keyway connector tcp-source` reach `keyway connector tcp-sink` counted as in the plain run", async () => {
    const text = generateText(50_000, 29);
    const smallInput = join(dir, "small.txt");
    const smallPlain = join(dir, "small-plain.txt");
    writeFileSync(smallInput, text);
    expect((await runKeyway(["run", "examples/word-count/app.ts", "--source", `lines=file:${smallInput}`, "--sink", `counts=file:${smallPlain}`, "--no-progress"])).code).toBe(0);
    const expected = readFileSync(smallPlain);

    const received: Buffer[] = [];
    let receivedBytes = 0;
    const collector = createServer((socket) => socket.on("data", (chunk: Buffer) => {
      received.push(chunk);
      receivedBytes += chunk.length;
    }));
    await new Promise<void>((resolve) => collector.listen(0, "127.0.0.1", resolve));
    const collectorPort = (collector.address() as { port: number }).port;
    try {
      const { engine, address } = await startConnectorEngine();
      const sink = connector("tcp-sink", address, "--connect", `127.0.0.1:${collectorPort}`, "--target", "counts");
      const sourcePort = await freePort();
      const source = connector("tcp-source", address, "--listen", `127.0.0.1:${sourcePort}`, "--target", "lines");
      const client = await waitFor("the tcp source to listen", () => connectOnce(sourcePort));
      client.end(text);
      await waitFor("every output at the collector", () => (receivedBytes >= expected.length ? true : undefined), 60_000);
      expect(Buffer.concat(received).equals(expected)).toBe(true);
      expect((await stopped(source)).code).toBe(0);
      await stopped(engine);
      expect((await stopped(sink)).code).toBe(0);
    } finally {
      collector.close();
    }
  });

  it("a configuration error ends the connector with exit code 1 and the protocol code", async () => {
    const { engine, address } = await startConnectorEngine();
    const result = await connector("file-source", address, "--path", input, "--target", "no-such-source").finished;
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/keyway: error \[UNKNOWN_TARGET\]/);
    await stopped(engine);
  });
});

describe("`keyway connector` usage", () => {
  it("fails at once on a missing input file, before any engine is reachable", async () => {
    const result = await runKeyway(["connector", "file-source", "--path", join(dir, "missing.txt"), "--target", "lines", "--engine", `127.0.0.1:${await freePort()}`]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/keyway: error \[FILE_NOT_FOUND\]/);
  });

  it("rejects a malformed address as bad usage", async () => {
    const result = await runKeyway(["connector", "tcp-source", "--listen", "nowhere", "--target", "lines"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/keyway: error \[USAGE\]: --listen expects HOST:PORT/);
  });

  it("rejects a malformed or out-of-range --engine as bad usage, at once, before dialling anything", async () => {
    for (const engine of ["nonsense", "127.0.0.1:99999"]) {
      const result = await runKeyway(["connector", "file-sink", "--path", join(dir, "never.txt"), "--target", "out", "--engine", engine]);
      expect(result.code, engine).toBe(2);
      expect(result.stderr).toMatch(/^keyway: error \[USAGE\]: --engine: engine must be HOST:PORT, or several separated by commas \(ports 1 to 65535\)/);
    }
  });
});

describe("a partition function in a separate process", () => {
  function partitioner(address: string): Running {
    const child = spawn(process.execPath, ["--import", "tsx", "examples/ts-connectors/partitioner.ts", address], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.stdout!.resume();
    const finished = new Promise<Finished>((resolve, reject) => {
      child.on("error", reject);
      child.on("close", (code, signal) => resolve({ code, signal, stdout: "", stderr }));
    });
    return track({ child, stderr: () => stderr, finished });
  }

  function partitionedRun(output: string): Promise<{ engine: Running; address: string }> {
    return startConnectorEngine("examples/ts-connectors/word-count-partitioned.ts", ["--source", `lines=file:${input}`, "--sink", `counts=file:${output}`]);
  }

  it("gives the same output as the in-app keyBy", async () => {
    const output = join(dir, "partitioned.txt");
    const { engine, address } = await partitionedRun(output);
    const keys = partitioner(address);
    expect((await engine.finished).code).toBe(0);
    await expectPlainOutput(output);
    expect((await stopped(keys)).code).toBe(0);
  });

  it("loses nothing when it is killed mid-run and another one takes over", async () => {
    const output = join(dir, "partitioner-killed.txt");
    const { engine, address } = await partitionedRun(output);
    await killMidStream(partitioner(address), output);
    const successor = partitioner(address);
    expect((await engine.finished).code).toBe(0);
    await expectPlainOutput(output);
    await stopped(successor);
  });
});
