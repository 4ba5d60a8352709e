/**
 * Scoped credentials (issue 15 item 3): `--credentials FILE` names tokens and client-certificate
 * subjects, each with the roles, targets and stream prefixes it may use; outside its scope a
 * session gets PERMISSION_DENIED; SIGHUP reloads the file without a restart, revoking what it no
 * longer holds. Real engine processes, raw sessions and the real connectors.
 */
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { afterEach, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { ErrorCode } from "../../src/protocol/gen/keyway/v1/connector_pb.ts";
import { CredentialStore, parseCredentials } from "../../src/protocol/credentials.ts";
import { makeCerts, type TestCerts } from "../helpers/certs.ts";
import { expectOneLineError, runKeyway, scratchDir, waitFor, type Finished, type Running } from "../helpers/process.ts";
import { Processes, requirePython } from "../python/helpers.ts";
import { TestSink, TestSource } from "../protocol/helpers/connectors.ts";
import { closeClients, failure, hello, openSink, openSource } from "../protocol/helpers/raw-session.ts";

const APP = "examples/word-count/app.ts";
const procs = new Processes();
let certs: TestCerts;

beforeAll(() => {
  certs = makeCerts();
});

afterEach(async () => {
  closeClients();
  await procs.killAll();
});

const LINES_TOKEN = "lines-t0ken";
const COUNTS_TOKEN = "counts-t0ken";
const ADMIN_TOKEN = "admin-t0ken";

function writeCredentials(path: string, credentials: unknown[]): void {
  writeFileSync(path, JSON.stringify({ credentials }, null, 2));
}

const linesFeed = { name: "lines-feed", token: LINES_TOKEN, allow: [{ role: "source", targets: ["lines"], streamPrefixes: ["feed/"] }] };
const countsOut = { name: "counts-out", tokenSha256: createHash("sha256").update(COUNTS_TOKEN).digest("hex"), allow: [{ role: "sink", targets: ["counts"] }] };

async function startEngine(args: string[]): Promise<{ engine: Running; address: string }> {
  const engine = procs.keyway(["run", APP, "--source", "lines=connector", "--sink", "counts=connector", "--listen", "127.0.0.1:0", "--no-progress", ...args]);
  const address = await waitFor("the engine's connector address", () => {
    const line = engine.stderr().split("\n").find((l) => l.includes("serving connectors on"));
    return line === undefined ? undefined : (JSON.parse(line) as { address: string }).address;
  });
  return { engine, address };
}

/** A source Hello with this token, refused: its code name and message. */
async function refusedSource(address: string, token: string, target = "lines"): Promise<{ code: string; message: string; status: string }> {
  const s = openSource(address);
  s.send(hello(target, { token }));
  const f = await failure(s);
  return { code: ErrorCode[f.error.code]!, message: f.error.message, status: grpc.status[f.status.code]! };
}

function oneErrorLine(result: Finished): string {
  expect(result.code, result.stderr).toBe(1);
  const lines = result.stderr.trimEnd().split("\n");
  expect(lines, result.stderr).toHaveLength(1);
  return lines[0]!;
}

describe("scoped credentials", () => {
  it("a credential scoped to source lines cannot open sink counts nor a stream outside its prefix; one scoped to sink counts serves the sink; --token has every scope", async () => {
    const dir = scratchDir("credentials-scope");
    const file = join(dir, "credentials.json");
    writeCredentials(file, [linesFeed, countsOut]);
    const { address } = await startEngine(["--credentials", file, "--token", ADMIN_TOKEN]);

    // The lines credential on the sink: refused at Hello, typed, with the gRPC status to match.
    const s = openSink(address);
    s.send(hello("counts", { token: LINES_TOKEN }));
    const denied = await failure(s);
    expect(ErrorCode[denied.error.code]).toBe("PERMISSION_DENIED");
    expect(denied.error.message).toBe('credential "lines-feed" may not open a sink session on "counts"');
    expect(grpc.status[denied.status.code]).toBe("PERMISSION_DENIED");

    // On its source: a stream outside "feed/" ends the session; one inside opens.
    const outside = await TestSource.connect(address, "lines", { token: LINES_TOKEN });
    outside.session.send({ kind: { case: "open", value: { stream: "other/1" } } });
    const f = await failure(outside.session);
    expect(ErrorCode[f.error.code]).toBe("PERMISSION_DENIED");
    expect(f.error.message).toBe('credential "lines-feed" may not open stream "other/1" on source "lines": its stream names start with "feed/"');

    const sink = await TestSink.connect(address, "counts", { token: COUNTS_TOKEN });
    const source = await TestSource.connect(address, "lines", { token: LINES_TOKEN });
    await source.open("feed/1");
    await source.send("feed/1", [{ position: 1, value: "a b a" }]);
    await sink.untilValues(3);
    expect(sink.values()).toEqual(["a 1", "b 1", "a 2"]);

    // The counts credential on the source, a wrong token, none: refused, each with its code.
    expect(await refusedSource(address, COUNTS_TOKEN)).toEqual({ code: "PERMISSION_DENIED", message: 'credential "counts-out" may not open a source session on "lines"', status: "PERMISSION_DENIED" });
    expect(await refusedSource(address, "guess")).toEqual({ code: "UNAUTHENTICATED", message: "wrong token", status: "UNAUTHENTICATED" });
    expect(await refusedSource(address, "")).toEqual({ code: "UNAUTHENTICATED", message: "this engine requires a token", status: "UNAUTHENTICATED" });
    // An unknown target is still UNKNOWN_TARGET (checked before the scope).
    expect((await refusedSource(address, LINES_TOKEN, "nope")).code).toBe("UNKNOWN_TARGET");

    // --token opens anything, any stream.
    const admin = await TestSource.connect(address, "lines", { token: ADMIN_TOKEN });
    await admin.open("anything");

    // The SDK stops on PERMISSION_DENIED (a configuration error), with one line naming it.
    const input = join(dir, "in.txt");
    writeFileSync(input, "x\n");
    const sdk = oneErrorLine(await procs.keyway(["connector", "file-source", "--engine", address, "--target", "lines", "--token", LINES_TOKEN, "--path", input, "--stream", "elsewhere", "--log-level", "silent"]).finished);
    expect(sdk).toMatch(/^keyway: error \[PERMISSION_DENIED\]: .*may not open stream "elsewhere" on source "lines"/);
  }, 120_000);

  it("SIGHUP reloads the file without a restart: a revoked token's live session ends and new ones are refused; a malformed file changes nothing", async () => {
    const dir = scratchDir("credentials-reload");
    const file = join(dir, "credentials.json");
    writeCredentials(file, [linesFeed, countsOut]);
    const { engine, address } = await startEngine(["--credentials", file]);
    const sink = await TestSink.connect(address, "counts", { token: COUNTS_TOKEN });
    const live = await TestSource.connect(address, "lines", { token: LINES_TOKEN });
    await live.open("feed/1");

    // A malformed file: logged, and everything stays as it was.
    writeFileSync(file, "{ not json");
    engine.child.kill("SIGHUP");
    await waitFor("the failed reload in the log", () => (engine.stderr().includes("credentials not reloaded") ? true : undefined));
    expect(engine.stderr()).toMatch(/"level":50.*not JSON.*"msg":"credentials not reloaded: the ones in force stay"/);
    await live.send("feed/1", [{ position: 1, value: "still" }]);
    await sink.untilValues(1);

    // The lines credential revoked: its live session ends with UNAUTHENTICATED, new ones are refused.
    writeCredentials(file, [countsOut]);
    engine.child.kill("SIGHUP");
    const ended = await failure(live.session);
    expect(ErrorCode[ended.error.code]).toBe("UNAUTHENTICATED");
    expect(ended.error.message).toBe('the engine\'s credentials were reloaded: the credential "lines-feed" this session used is no longer in force (wrong token)');
    expect(await refusedSource(address, LINES_TOKEN)).toMatchObject({ code: "UNAUTHENTICATED", message: "wrong token" });
    expect(engine.stderr()).toMatch(/"credentials":1,"msg":"credentials reloaded"/);

    // Given back, narrower: the stream a live session holds is checked again.
    writeCredentials(file, [countsOut, { ...linesFeed, allow: [{ role: "source", targets: ["lines"], streamPrefixes: ["feed/2"] }] }]);
    engine.child.kill("SIGHUP");
    await waitFor("the second reload", () => (engine.stderr().match(/"msg":"credentials reloaded"/g)?.length === 2 ? true : undefined));
    const again = await TestSource.connect(address, "lines", { token: LINES_TOKEN });
    await again.open("feed/2a");
    writeCredentials(file, [countsOut, { ...linesFeed, allow: [{ role: "source", targets: ["lines"], streamPrefixes: ["feed/3"] }] }]);
    engine.child.kill("SIGHUP");
    const narrowedEnd = await failure(again.session);
    expect(ErrorCode[narrowedEnd.error.code]).toBe("PERMISSION_DENIED");
    expect(narrowedEnd.error.message).toMatch(/^the engine's credentials were reloaded: credential "lines-feed" may not open stream "feed\/2a"/);
    // The sink's session, still within its credential, was never touched.
    expect(sink.session.responses.some((r) => r.kind.case === "error")).toBe(false);
  }, 120_000);

  it("under mutual TLS a certificate's subject is a credential: the one named opens its target with no token, another is refused, and neither leaves its scope", async () => {
    const dir = scratchDir("credentials-subject");
    const file = join(dir, "credentials.json");
    writeCredentials(file, [
      { name: "lines-cert", subject: "CN=lines-source", allow: [{ role: "source", targets: ["lines"] }] },
      { name: "counts-out", token: COUNTS_TOKEN, allow: [{ role: "sink", targets: ["counts"] }] },
    ]);
    const engine = procs.keyway(["run", APP, "--source", "lines=connector", "--sink", "counts=connector", "--listen", "127.0.0.1:0", "--no-progress",
      "--tls-cert", certs.server.cert, "--tls-key", certs.server.key, "--tls-client-ca", certs.ca, "--credentials", file]);
    const address = await waitFor("the engine's connector address", () => {
      const line = engine.stderr().split("\n").find((l) => l.includes("serving connectors on"));
      return line === undefined ? undefined : (JSON.parse(line) as { address: string }).address;
    });
    const input = join(dir, "in.txt");
    writeFileSync(input, "one two\n");
    const named = certs.signed("lines-source");
    const other = certs.signed("someone-else");
    const tls = (pair: { cert: string; key: string }) => ["--tls-ca", certs.ca, "--tls-cert", pair.cert, "--tls-key", pair.key];
    const connector = (kind: string, target: string, extra: string[]) =>
      procs.keyway(["connector", kind, "--engine", address, "--target", target, "--path", kind === "file-source" ? input : join(dir, "out.txt"), "--log-level", "silent", ...extra]);

    // Every connection needs a certificate the CA signed (mutual TLS); the token then names the credential.
    connector("file-sink", "counts", [...tls(other), "--token", COUNTS_TOKEN]);
    const ok = await connector("file-source", "lines", tls(named)).finished;
    expect(ok.code, ok.stderr).toBe(0);
    const stranger = oneErrorLine(await connector("file-source", "lines", tls(other)).finished);
    expect(stranger).toMatch(/\[UNAUTHENTICATED\]: .*no credential of this engine names the client certificate's subject \(CN=someone-else\), and no token was given/);
    const wrongRole = oneErrorLine(await connector("file-sink", "counts", tls(named)).finished);
    expect(wrongRole).toMatch(/\[PERMISSION_DENIED\]: .*credential "lines-cert" may not open a sink session on "counts"/);
    await expectOneLineError(["run", APP, "--source", "lines=connector", "--sink", "counts=file:/dev/null", "--listen", "127.0.0.1:0", "--credentials", file], 2,
      /\[USAGE\]: --credentials .*: "lines-cert" names a certificate subject, but the engine does not ask connectors for certificates: give --tls-client-ca \(mutual TLS\) too$/);
  }, 120_000);

  it("keyway run --workers 2 gives its local worker the credentials file and passes SIGHUP on: both reload, and both enforce the scopes", async () => {
    const dir = scratchDir("credentials-cluster");
    const file = join(dir, "credentials.json");
    writeCredentials(file, [linesFeed, countsOut]);
    const engine = procs.keyway(["run", APP, "--source", "lines=connector", "--sink", "counts=connector", "--listen", "127.0.0.1:0", "--no-progress",
      "--workers", "2", "--token", ADMIN_TOKEN, "--credentials", file]);
    // The local worker's log lines come on the first worker's stderr.
    await waitFor("the local worker to join", () => (engine.stderr().includes('"msg":"joined the cluster"') ? true : undefined), 60_000);
    const addresses = engine.stderr().split("\n").filter((l) => l.includes("serving connectors on")).map((l) => (JSON.parse(l) as { address: string }).address);
    expect(addresses).toHaveLength(2);
    // Its pid, to end it should the test fail before the cluster is stopped (it would outlive a SIGKILLed first worker).
    const clusterAddress = (JSON.parse(engine.stderr().split("\n").find((l) => l.includes('"msg":"serving workers"'))!) as { address: string }).address;
    const status = await runKeyway(["cluster", "status", "--address", clusterAddress, "--token", ADMIN_TOKEN, "--json"]);
    const localPid = (JSON.parse(status.stdout) as { workers: Array<{ pid: number }> }).workers.map((w) => w.pid).find((pid) => pid !== engine.child.pid);
    onTestFinished(() => {
      if (localPid === undefined) return;
      try {
        process.kill(localPid, "SIGKILL");
      } catch {
        // already gone
      }
    });
    for (const address of addresses) {
      const s = openSink(address);
      s.send(hello("counts", { token: LINES_TOKEN }));
      expect(ErrorCode[(await failure(s)).error.code], address).toBe("PERMISSION_DENIED");
    }
    writeCredentials(file, [countsOut]);
    engine.child.kill("SIGHUP");
    await waitFor("both workers reloading", () => ((engine.stderr().match(/"msg":"credentials reloaded"/g)?.length ?? 0) >= 2 ? true : undefined));
    for (const address of addresses) expect((await refusedSource(address, LINES_TOKEN)).code, address).toBe("UNAUTHENTICATED");
    // Stopped the way an operator would: the first worker stops its local worker too (a SIGKILL would orphan it).
    engine.child.kill("SIGTERM");
    const finished = await engine.finished;
    expect(finished.code, finished.stderr).toBe(0);
  }, 120_000);

  it("a Python connector stops on PERMISSION_DENIED without reconnecting", async () => {
    await requirePython();
    const dir = scratchDir("credentials-python");
    const file = join(dir, "credentials.json");
    writeCredentials(file, [linesFeed]);
    const input = join(dir, "in.txt");
    writeFileSync(input, "a b\n");
    const engine = procs.keyway(["run", "examples/python-partitioner/app.ts", "--source", `lines=file:${input}`, "--sink", `counts=file:${join(dir, "out.txt")}`,
      "--listen", "127.0.0.1:0", "--no-progress", "--credentials", file]);
    const address = await waitFor("the engine's connector address", () => {
      const line = engine.stderr().split("\n").find((l) => l.includes("serving connectors on"));
      return line === undefined ? undefined : (JSON.parse(line) as { address: string }).address;
    });
    const py = await procs.python("examples/python-partitioner/partitioner.py", ["--engine", address], { KEYWAY_TOKEN: LINES_TOKEN }).finished;
    expect(py.code).toBe(1);
    expect(py.stderr).toMatch(/PERMISSION_DENIED: credential "lines-feed" may not open a partitioner session on "word-key"; not reconnecting: this is a configuration error/);
    expect(py.stderr.match(/session with engine/g)?.length).toBe(2);
  }, 120_000);

  it("refuses a malformed credentials file at start with a USAGE error naming the problem", async () => {
    const dir = scratchDir("credentials-usage");
    const file = join(dir, "c.json");
    const bad = async (content: string, message: RegExp) => {
      writeFileSync(file, content);
      await expectOneLineError(["run", APP, "--source", "lines=connector", "--sink", "counts=file:/dev/null", "--listen", "127.0.0.1:0", "--credentials", file], 2, message);
    };
    await expectOneLineError(["run", APP, "--source", "lines=connector", "--sink", "counts=file:/dev/null", "--credentials", join(dir, "missing.json")], 2, /\[USAGE\]: --credentials: cannot read .*missing\.json \(ENOENT\)$/);
    await bad("{", /\[USAGE\]: --credentials .*c\.json: not JSON/);
    await bad(JSON.stringify({ credentials: [{ name: "x", token: "t", allow: [{ role: "writer", targets: ["counts"] }] }] }), /credentials\[0\] \("x"\): allow\[0\]: "role" must be one of source, sink, partitioner$/);
    await bad(JSON.stringify({ credentials: [{ name: "x", token: "t", subject: "CN=a", allow: "*" }] }), /credentials\[0\] \("x"\): give exactly one of "token", "tokenSha256" or "subject"$/);
    await bad(JSON.stringify({ credentials: [{ name: "x", token: "t", allow: [{ role: "sink", targets: ["counts"], streamPrefixes: ["a"] }] }] }), /"streamPrefixes" applies to the source role only$/);
    await bad(JSON.stringify({ credentials: [{ name: "x", token: "t", allow: "*", role: "sink" }] }), /credentials\[0\] \("x"\): unknown field "role" \(known: name, token, tokenSha256, subject, allow\)$/);
    // The worker takes the same flag, checked the same way.
    await expectOneLineError(["worker", APP, "--join", "127.0.0.1:1", "--credentials", file], 2, /\[USAGE\]: --credentials .*unknown field "role"/);
  }, 120_000);
});

describe("the credentials store", () => {
  it("parses every field, compares tokens by digest, and matches subjects attribute by attribute", () => {
    const parsed = parseCredentials(JSON.stringify({ credentials: [linesFeed, countsOut, { name: "c", subject: "CN=a, O=Acme", allow: "*" }] }), "f.json");
    expect(parsed.tokens.map((t) => t.credential.name)).toEqual(["lines-feed", "counts-out"]);
    expect(parsed.subjects[0]!.attributes).toEqual([["CN", "a"], ["O", "Acme"]]);
    const dir = scratchDir("credentials-store");
    const file = join(dir, "c.json");
    writeCredentials(file, [linesFeed, countsOut, { name: "c", subject: "CN=a,O=Acme", allow: "*" }]);
    const store = new CredentialStore({ path: file, token: ADMIN_TOKEN, clientCertificates: true });
    expect(store.authenticate(LINES_TOKEN, undefined)?.name).toBe("lines-feed");
    expect(store.authenticate(COUNTS_TOKEN, undefined)?.name).toBe("counts-out");
    expect(store.authenticate(ADMIN_TOKEN, undefined)?.name).toBe("--token");
    expect(store.authenticate("lines-t0ke", undefined)).toBeUndefined();
    const cert = (subject: Record<string, string>) => ({ subject }) as never;
    expect(store.authenticate("", cert({ CN: "a", O: "Acme", OU: "x" }))?.name).toBe("c");
    expect(store.authenticate("", cert({ CN: "a", O: "Other" }))).toBeUndefined();
    // A token given is checked even when the certificate would match.
    expect(store.authenticate("guess", cert({ CN: "a", O: "Acme" }))).toBeUndefined();
    expect(store.tokenRequired).toBe(false);
    expect(() => parseCredentials(JSON.stringify({ credentials: [linesFeed, { ...linesFeed, name: "twin" }] }), "f")).toThrow(/the same token as "lines-feed"/);
    expect(() => new CredentialStore({ path: file, token: LINES_TOKEN, clientCertificates: true })).toThrow(/"lines-feed" has the same token as --token/);
  });
});
