/**
 * TLS and mutual TLS on the connector protocol, with real processes and real sockets: the engine
 * (`keyway run --tls-cert --tls-key [--tls-client-ca]`), connectors in TypeScript (`keyway
 * connector`) and Python (examples/python-partitioner), and `keyway conformance` both ways.
 * Certificates are made for each run by openssl (test/helpers/certs.ts).
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { resolveTls } from "../../src/sdk/session.ts";
import { makeCerts, type TestCerts } from "../helpers/certs.ts";
import { expectOneLineError, runKeyway, scratchDir, waitFor, type Finished, type Running } from "../helpers/process.ts";
import { countWords, generateText } from "../helpers/text.ts";
import { Processes, requirePython } from "../python/helpers.ts";

const APP = "examples/word-count/app.ts";
let certs: TestCerts;
const procs = new Processes();

beforeAll(() => {
  certs = makeCerts();
});

afterEach(async () => {
  await procs.killAll();
});

/** Starts `keyway run` with a connector source and waits for its connector address. */
async function startEngine(args: string[]): Promise<{ engine: Running; address: string }> {
  const engine = procs.keyway(["run", "--listen", "127.0.0.1:0", "--no-progress", ...args]);
  const address = await waitFor("the engine's connector address", () => {
    const line = engine.stderr().split("\n").find((l) => l.includes("serving connectors on"));
    return line === undefined ? undefined : (JSON.parse(line) as { address: string }).address;
  });
  return { engine, address };
}

const tlsServer = () => ["--tls-cert", certs.server.cert, "--tls-key", certs.server.key];

function fileSource(address: string, path: string, stream: string, tls: string[]): Promise<Finished> {
  return procs.keyway(["connector", "file-source", "--engine", address, "--target", "lines", "--path", path, "--stream", stream, "--log-level", "silent", ...tls]).finished;
}

/** The last count of each word in a word-count output file. */
function lastCounts(path: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const line of readFileSync(path, "utf8").split("\n")) {
    if (line === "") continue;
    const space = line.lastIndexOf(" ");
    counts.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return counts;
}

/** The one line a connector that stops on a configuration error prints. */
function oneErrorLine(result: Finished): string {
  expect(result.code, result.stderr).toBe(1);
  const lines = result.stderr.trimEnd().split("\n");
  expect(lines, result.stderr).toHaveLength(1);
  return lines[0]!;
}

describe("TLS on the connector protocol", () => {
  it("under mutual TLS serves a connector with a certificate the engine trusts, and refuses plaintext, no certificate and an untrusted one with clear errors", async () => {
    const dir = scratchDir("tls-mutual");
    const out = join(dir, "counts.txt");
    const input = join(dir, "in.txt");
    const text = generateText(5_000, 3);
    writeFileSync(input, text);
    const { address } = await startEngine([APP, "--source", "lines=connector", "--sink", `counts=file:${out}`, ...tlsServer(), "--tls-client-ca", certs.ca]);

    const plaintext = oneErrorLine(await fileSource(address, input, "s", []));
    expect(plaintext).toMatch(/^keyway: error \[UNAVAILABLE\]: .*the engine at 127\.0\.0\.1:\d+ serves TLS and this connector dials plaintext: give it the CA of the engine's certificate \(tlsCa, --tls-ca\)$/);

    const noCert = oneErrorLine(await fileSource(address, input, "s", ["--tls-ca", certs.ca]));
    expect(noCert).toMatch(/requires a client certificate \(mutual TLS\)/);

    const intruder = oneErrorLine(await fileSource(address, input, "s", ["--tls-ca", certs.ca, "--tls-cert", certs.untrusted.cert, "--tls-key", certs.untrusted.key]));
    expect(intruder).toMatch(/refused this connector's client certificate/);

    const client = certs.signed("lines-source");
    const ok = await fileSource(address, input, "s", ["--tls-ca", certs.ca, "--tls-cert", client.cert, "--tls-key", client.key]);
    expect(ok.code, ok.stderr).toBe(0);
    // The source exits once everything it sent is committed, that is, in the sink.
    expect(lastCounts(out)).toEqual(countWords(text));
  }, 120_000);

  it("over TLS without client certificates: a connector trusting the engine's CA is served; one trusting another CA, or dialling TLS to a plaintext engine, gets a clear error", async () => {
    const dir = scratchDir("tls-server");
    const out = join(dir, "counts.txt");
    const input = join(dir, "in.txt");
    writeFileSync(input, "one two\nthree two\n");
    const { address } = await startEngine([APP, "--source", "lines=connector", "--sink", `counts=file:${out}`, ...tlsServer()]);

    const wrongCa = oneErrorLine(await fileSource(address, input, "s", ["--tls-ca", certs.untrustedCa]));
    expect(wrongCa).toMatch(/this connector does not trust the engine's certificate at 127\.0\.0\.1:\d+ \([^)]+\): give it the CA that signed the engine's certificate/);

    // By name as well as by address: the certificate lists both.
    const port = address.split(":")[1];
    const ok = await fileSource(`localhost:${port}`, input, "s", ["--tls-ca", certs.ca]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(readFileSync(out, "utf8")).toBe("one 1\ntwo 1\nthree 1\ntwo 2\n");

    const plain = await startEngine([APP, "--source", "lines=connector", "--sink", `counts=file:${join(dir, "plain.txt")}`]);
    const tlsToPlain = oneErrorLine(await fileSource(plain.address, input, "s", ["--tls-ca", certs.ca]));
    expect(tlsToPlain).toMatch(/the engine at 127\.0\.0\.1:\d+ does not speak TLS \(it serves plaintext\) and this connector dials TLS/);
  }, 120_000);

  it("refuses missing, unreadable and mismatched certificate files as bad usage, naming the flag and the path", async () => {
    const dir = scratchDir("tls-usage");
    const missing = join(dir, "nope.pem");
    const notPem = join(dir, "not.pem");
    writeFileSync(notPem, "hello\n");
    const run = (extra: string[]) => ["run", APP, "--source", "lines=connector", "--sink", "counts=file:/dev/null", "--listen", "127.0.0.1:0", ...extra];
    await expectOneLineError(run(["--tls-cert", missing, "--tls-key", certs.server.key]), 2, new RegExp(`\\[USAGE\\]: --tls-cert: cannot read ${missing} \\(ENOENT\\)$`));
    await expectOneLineError(run(["--tls-cert", certs.server.cert, "--tls-key", notPem]), 2, new RegExp(`\\[USAGE\\]: --tls-key: ${notPem} holds no PEM data`));
    await expectOneLineError(run(["--tls-cert", certs.server.cert, "--tls-key", certs.untrusted.key]), 2, /\[USAGE\]: --tls-key .* is not the key of --tls-cert /);
    await expectOneLineError(run(["--tls-cert", certs.server.cert]), 2, /\[USAGE\]: --tls-cert and --tls-key go together/);
    await expectOneLineError(run(["--tls-client-ca", certs.ca]), 2, /\[USAGE\]: --tls-client-ca requires --tls-cert and --tls-key/);
    await expectOneLineError(run([...tlsServer(), "--tls-client-ca", missing]), 2, new RegExp(`\\[USAGE\\]: --tls-client-ca: cannot read ${missing}`));
    const connector = (extra: string[]) => ["connector", "file-source", "--engine", "127.0.0.1:1", "--target", "lines", "--path", notPem, ...extra];
    await expectOneLineError(connector(["--tls-ca", missing]), 2, new RegExp(`\\[USAGE\\]: --tls-ca: cannot read ${missing} \\(ENOENT\\)$`));
    await expectOneLineError(connector(["--tls-ca", certs.ca, "--tls-cert", certs.server.cert]), 2, /\[USAGE\]: --tls-cert and --tls-key go together/);
    await expectOneLineError(["worker", APP, "--join", "127.0.0.1:1", "--tls-cert", missing, "--tls-key", certs.server.key], 2, /\[USAGE\]: --tls-cert: cannot read/);
    // The SDK checks its options the same way, before dialling.
    expect(() => resolveTls({ tlsCa: missing })).toThrow(`tlsCa: cannot read ${missing} (ENOENT)`);
    expect(() => resolveTls({ tlsCert: certs.server.cert })).toThrow(/tlsCert and tlsKey go together/);
    expect(resolveTls({ tls: true })).toEqual({});
    expect(resolveTls({})).toBeUndefined();
  }, 120_000);

  it("a Python connector attaches under mutual TLS with a trusted certificate, and stops with a clear error without one or in plaintext", async () => {
    await requirePython();
    const dir = scratchDir("tls-python");
    const input = join(dir, "in.txt");
    const text = generateText(20_000, 11);
    writeFileSync(input, text);
    const out = join(dir, "counts.txt");
    const { engine, address } = await startEngine(["examples/python-partitioner/app.ts", "--source", `lines=file:${input}`, "--sink", `counts=file:${out}`, ...tlsServer(), "--tls-client-ca", certs.ca]);

    const plaintext = await procs.python("examples/python-partitioner/partitioner.py", ["--engine", address]).finished;
    expect(plaintext.code).toBe(1);
    expect(plaintext.stderr).toMatch(/failed: the engine at 127\.0\.0\.1:\d+ serves TLS and this connector dials plaintext: give it the CA of the engine's certificate \(tls_ca, --tls-ca\)/);
    const noCert = await procs.python("examples/python-partitioner/partitioner.py", ["--engine", address, "--tls-ca", certs.ca]).finished;
    expect(noCert.code).toBe(1);
    expect(noCert.stderr).toMatch(/requires a client certificate \(mutual TLS\)/);
    const intruder = await procs.python("examples/python-partitioner/partitioner.py", ["--engine", address, "--tls-ca", certs.ca, "--tls-cert", certs.untrusted.cert, "--tls-key", certs.untrusted.key]).finished;
    expect(intruder.code).toBe(1);
    expect(intruder.stderr).toMatch(/refused this connector's client certificate/);

    const client = certs.signed("python-partitioner");
    const partitioner = procs.python("examples/python-partitioner/partitioner.py", ["--engine", address, "--tls-ca", certs.ca, "--tls-cert", client.cert, "--tls-key", client.key]);
    const finished = await engine.finished;
    expect(finished.code, finished.stderr).toBe(0);
    expect(lastCounts(out)).toEqual(countWords(text));
    expect(partitioner.stderr()).not.toMatch(/Traceback/);
  }, 180_000);

  it("keyway conformance runs over TLS: engine mode against an engine under mutual TLS, connector mode serving the connector over TLS", async () => {
    const { address } = await startEngine(["conformance/engine-app.ts", "--source", "in=connector", "--sink", "out=connector", "--token", "c0nf", "--max-batch-records", "100", ...tlsServer(), "--tls-client-ca", certs.ca]);
    const harness = certs.signed("conformance-harness");
    const cases = ["engine.describe", "engine.health", "engine.welcome-source", "engine.welcome-sink", "engine.token-wrong", "engine.drop-replays"];
    const engineMode = await runKeyway([
      "conformance", "engine", "--target", address, "--token", "c0nf", "--source", "in", "--sink", "out", "--partitioner", "pk",
      "--tls-ca", certs.ca, "--tls-cert", harness.cert, "--tls-key", harness.key, ...cases.flatMap((c) => ["--case", c]),
    ]);
    expect(engineMode.code, engineMode.stdout + engineMode.stderr).toBe(0);
    expect(engineMode.stdout).toMatch(/6 passed/);

    const connectorMode = await runKeyway([
      "conformance", "source", "--fixture", "conformance/fixtures/file-source.json", "--tls-cert", certs.server.cert, "--tls-key", certs.server.key,
      "--case", "source.positions", "--case", "source.redirect", "--",
      process.execPath, "bin/keyway.js", "connector", "file-source", "--engine", "{engine}", "--target", "{target}", "--token", "{token}", "--path", "{workdir}/in.txt", "--log-level", "warn", "--tls-ca", certs.ca,
    ]);
    expect(connectorMode.code, connectorMode.stdout + connectorMode.stderr).toBe(0);
    expect(connectorMode.stdout).toMatch(/2 passed/);
  }, 180_000);
});
