/**
 * Mutual TLS on a cluster's links (issue 15 item 2), with real worker processes: the control
 * plane and the exchange go over TLS, a worker whose certificate the cluster's CA did not sign
 * cannot join, and no cluster call works without both a trusted certificate and the token.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { createControlClients } from "../../src/cluster/control-rpc.ts";
import { ControlService, StatusResponseSchema } from "../../src/protocol/gen/keyway/v1/cluster_pb.ts";
import { makeCerts, type TestCerts } from "../helpers/certs.ts";
import { checkExchangeRefusesWithoutToken } from "../helpers/exchange-probe.ts";
import { runKeyway, scratchDir, startKeyway, waitFor, type Running } from "../helpers/process.ts";
import { countWords, generateText } from "../helpers/text.ts";

const APP = "examples/word-count/app.ts";
const TOKEN = "cluster-s3cret";
let certs: TestCerts;
const running: Running[] = [];

beforeAll(() => {
  certs = makeCerts();
});

afterEach(async () => {
  for (const r of running) if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill("SIGKILL");
  await Promise.all(running.map((r) => r.finished));
  running.length = 0;
});

const start = (args: string[]): Running => {
  const r = startKeyway(args);
  running.push(r);
  return r;
};

/** The --cluster-tls-* flags for a worker holding `pair`, trusting `ca`. */
const clusterTls = (pair = certs.server, ca = certs.ca) => ["--cluster-tls-cert", pair.cert, "--cluster-tls-key", pair.key, "--cluster-tls-ca", ca];

const logged = (r: Running, msg: string) =>
  waitFor(`"${msg}" in the log`, () => {
    const line = r.stderr().split("\n").find((l) => l.includes(`"msg":"${msg}`));
    return line === undefined ? undefined : (JSON.parse(line) as { address: string });
  });

async function status(address: string, extra: string[]) {
  return runKeyway(["cluster", "status", "--address", address, "--json", ...extra]);
}

describe("a cluster over mutual TLS", () => {
  it("takes a worker with a trusted certificate and refuses one without, and counts across both over TLS", async () => {
    const dir = scratchDir("cluster-tls");
    const out = join(dir, "counts.txt");
    const first = start(["run", APP, "--source", "lines=connector", "--sink", `counts=file:${out}`, "--listen", "127.0.0.1:0",
      "--cluster-listen", "127.0.0.1:0", "--token", TOKEN, "--no-progress", ...clusterTls()]);
    const { address } = await logged(first, "serving workers");
    const connectors = (await logged(first, "serving connectors on")).address;

    // Joiners whose certificates the cluster does not trust, or with none, never get in.
    const intruder = await runKeyway(["worker", APP, "--join", address, "--token", TOKEN, ...clusterTls(certs.untrusted, certs.ca)]);
    expect(intruder.code, intruder.stderr).toBe(2);
    expect(intruder.stderr).toMatch(/error \[USAGE\]: cannot reach the cluster at 127\.0\.0\.1:\d+: the worker at 127\.0\.0\.1:\d+ closed the connection after the TLS handshake: it refused this worker's client certificate, which must be signed by the cluster's CA/);
    const plaintext = await runKeyway(["worker", APP, "--join", address, "--token", TOKEN]);
    expect(plaintext.code, plaintext.stderr).toBe(2);
    expect(plaintext.stderr).toMatch(/the worker at 127\.0\.0\.1:\d+ serves TLS and this worker dials plaintext: give it the CA of the worker's certificate \(--cluster-tls-ca\)/);
    const wrongCa = await runKeyway(["worker", APP, "--join", address, "--token", TOKEN, ...clusterTls(certs.untrusted, certs.untrustedCa)]);
    expect(wrongCa.code, wrongCa.stderr).toBe(2);
    expect(wrongCa.stderr).toMatch(/this worker does not trust the worker's certificate/);

    const trusted = certs.signed("worker-1");
    start(["worker", APP, "--join", address, "--token", TOKEN, ...clusterTls(trusted)]);
    const tlsStatus = ["--token", TOKEN, ...clusterTls(certs.signed("operator"))];
    await waitFor("two workers holding slots", async () => {
      const s = await status(address, tlsStatus);
      if (s.code !== 0) return undefined;
      const workers = (JSON.parse(s.stdout) as { workers: Array<{ slots: number }> }).workers;
      return workers.length === 2 && workers.every((w) => w.slots > 0) ? true : undefined;
    }, 60_000);

    // Records cross the exchange between the two (each holds half the slots): exact counts.
    const input = join(dir, "in.txt");
    const text = generateText(20_000, 5);
    writeFileSync(input, text);
    const source = await runKeyway(["connector", "file-source", "--engine", connectors, "--target", "lines", "--path", input, "--token", TOKEN, "--log-level", "warn"]);
    expect(source.code, source.stderr).toBe(0);
    const counts = new Map<string, number>();
    for (const line of readFileSync(out, "utf8").split("\n")) {
      if (line === "") continue;
      const space = line.lastIndexOf(" ");
      counts.set(line.slice(0, space), Number(line.slice(space + 1)));
    }
    expect(counts).toEqual(countWords(text));
  }, 180_000);

  it("answers no cluster call without a trusted certificate and the token: control plane, exchange and the CLI", async () => {
    const dir = scratchDir("cluster-tls-calls");
    const first = start(["run", APP, "--source", "lines=connector", "--sink", `counts=file:${join(dir, "out.txt")}`, "--listen", "127.0.0.1:0",
      "--cluster-listen", "127.0.0.1:0", "--token", TOKEN, "--no-progress", ...clusterTls()]);
    const { address } = await logged(first, "serving workers");
    const read = (p: string) => readFileSync(p);
    const trusted = certs.signed("operator");
    const asTrusted = { cert: read(trusted.cert), key: read(trusted.key), ca: read(certs.ca) };
    const asIntruder = { cert: read(certs.untrusted.cert), key: read(certs.untrusted.key), ca: read(certs.ca) };
    const outcomes = async (clients: ReturnType<typeof createControlClients>) => {
      const seen = new Set<string>();
      for (const method of ControlService.methods) {
        seen.add(await clients.call(address, method.name, {}, StatusResponseSchema, 10_000).then(() => "answered", (err: grpc.ServiceError) => `${grpc.status[err.code]}`));
      }
      clients.close();
      return [...seen];
    };
    // A trusted certificate without the token: refused by the token check, nothing runs.
    expect(await outcomes(createControlClients(undefined, asTrusted))).toEqual(["UNAUTHENTICATED"]);
    expect(await outcomes(createControlClients("guess", asTrusted))).toEqual(["UNAUTHENTICATED"]);
    // The token without a trusted certificate, or in plaintext: no connection at all.
    expect(await outcomes(createControlClients(TOKEN, asIntruder))).toEqual(["UNAVAILABLE"]);
    expect(await outcomes(createControlClients(TOKEN))).toEqual(["UNAVAILABLE"]);
    // Both: answered.
    expect(await outcomes(createControlClients(TOKEN, asTrusted))).toContain("answered");

    const tlsCredentials = (pair: { cert: Buffer; key: Buffer; ca: Buffer }) => grpc.credentials.createSsl(pair.ca, pair.key, pair.cert);
    expect(await checkExchangeRefusesWithoutToken(address, tlsCredentials(asTrusted))).toBe("16: wrong or missing cluster token");
    expect(await checkExchangeRefusesWithoutToken(address, tlsCredentials(asIntruder))).toMatch(/^14: /);
    expect(await checkExchangeRefusesWithoutToken(address)).toMatch(/^14: /);

    const noTls = await status(address, ["--token", TOKEN]);
    expect(noTls.code).toBe(2);
    expect(noTls.stderr).toMatch(/error \[USAGE\]: status at 127\.0\.0\.1:\d+: the worker at 127\.0\.0\.1:\d+ serves TLS and this command dials plaintext/);
    const noToken = await status(address, clusterTls(trusted));
    expect(noToken.code).toBe(1);
    expect(noToken.stderr).toMatch(/error \[UNAUTHENTICATED\]: status at .*: wrong or missing cluster token/);
    const intruder = await status(address, ["--token", TOKEN, ...clusterTls(certs.untrusted)]);
    expect(intruder.code).toBe(2);
    expect(intruder.stderr).toMatch(/refused this command's client certificate/);
    const ok = await status(address, ["--token", TOKEN, ...clusterTls(trusted)]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ app: "word-count" });
  }, 120_000);

  it("keyway run --workers 2 passes its certificates to the local workers, and refuses --cluster-tls-* flags that are partial or without a cluster", async () => {
    const dir = scratchDir("cluster-tls-local");
    const input = join(dir, "in");
    const { mkdirSync } = await import("node:fs");
    mkdirSync(input);
    let text = "";
    for (const f of [0, 1]) {
      const part = generateText(10_000, 30 + f);
      writeFileSync(join(input, `part-${f}.txt`), part);
      text += part;
    }
    const out = join(dir, "out.txt");
    const run = await runKeyway(["run", APP, "--source", `lines=file:${input}`, "--sink", `counts=file:${out}`, "--workers", "2", "--token", TOKEN, "--no-progress", ...clusterTls()]);
    expect(run.code, run.stderr).toBe(0);
    const counts = new Map<string, number>();
    for (const line of readFileSync(out, "utf8").split("\n")) {
      if (line === "") continue;
      const space = line.lastIndexOf(" ");
      counts.set(line.slice(0, space), Math.max(counts.get(line.slice(0, space)) ?? 0, Number(line.slice(space + 1))));
    }
    expect(counts).toEqual(countWords(text));

    const partial = await runKeyway(["run", APP, "--source", `lines=file:${input}`, "--sink", `counts=file:${out}`, "--workers", "2", "--cluster-tls-cert", certs.server.cert]);
    expect(partial.code).toBe(2);
    expect(partial.stderr).toMatch(/\[USAGE\]: --cluster-tls-cert, --cluster-tls-key and --cluster-tls-ca go together/);
    const alone = await runKeyway(["run", APP, "--source", `lines=file:${input}`, "--sink", `counts=file:${out}`, ...clusterTls()]);
    expect(alone.code).toBe(2);
    expect(alone.stderr).toMatch(/\[USAGE\]: .*protect a cluster's links: give --workers N or --cluster-listen too/);
  }, 180_000);
});
