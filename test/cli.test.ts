import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { writeFileSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import { expectOneLineError, freePort, runKeyway, scratchDir } from "./helpers/process.ts";

const APP = "examples/word-count/app.ts";
const SAMPLE = "examples/word-count/sample.txt";

describe("keyway CLI", () => {
  const out = join(scratchDir("cli"), "out.txt");
  let busy: Server | undefined;
  afterAll(() => busy?.close());

  it("prints help for the program and for run", async () => {
    const top = await runKeyway(["--help"]);
    expect(top.code).toBe(0);
    expect(top.stdout).toMatch(/Usage: keyway/);
    expect(top.stdout).toMatch(/run \[options\] <app>/);
    const run = await runKeyway(["run", "--help"]);
    expect(run.code).toBe(0);
    for (const flag of ["--source", "--sink", "--config", "--slots", "--max-frame-bytes", "--verbose"]) expect(run.stdout).toContain(flag);
  });

  it("refuses a binding for a source the app does not have", () =>
    expectOneLineError(["run", APP, "--source", `lines=file:${SAMPLE}`, "--source", "words=file:x", "--sink", `counts=file:${out}`], 2, /\[UNKNOWN_NAME\]: unknown source "words": the app's sources are lines/));

  it("refuses a binding for a sink the app does not have", () =>
    expectOneLineError(["run", APP, "--source", `lines=file:${SAMPLE}`, "--sink", `counts=file:${out}`, "--sink", "totals=file:y"], 2, /\[UNKNOWN_NAME\]: unknown sink "totals"/));

  it("refuses an app source left unbound", () =>
    expectOneLineError(["run", APP, "--sink", `counts=file:${out}`], 2, /\[UNBOUND_NAME\]: source "lines" is not bound: add --source lines=URI/));

  it("refuses an app sink left unbound", () =>
    expectOneLineError(["run", APP, "--source", `lines=file:${SAMPLE}`], 2, /\[UNBOUND_NAME\]: sink "counts" is not bound/));

  it("refuses a binding without NAME=", () =>
    expectOneLineError(["run", APP, "--source", "lines", "--sink", `counts=file:${out}`], 2, /\[USAGE\]: --source expects NAME=URI, got "lines"/));

  for (const uri of ["nothing-here", "ftp://x/y", "tcp://127.0.0.1", "tcp://127.0.0.1:99999", "file:"]) {
    it(`refuses the malformed URI ${uri}`, () =>
      expectOneLineError(["run", APP, "--source", `lines=${uri}`, "--sink", `counts=file:${out}`], 2, /\[BAD_URI\]: malformed URI/));
  }

  it("refuses an app module that exports no pipeline", () =>
    expectOneLineError(["run", "test/fixtures/no-pipeline.ts", "--source", `lines=file:${SAMPLE}`], 1, /\[BAD_APP\]: app module .*no-pipeline\.ts exports no pipeline/));

  it("refuses an app module that does not exist", () =>
    expectOneLineError(["run", "examples/nope.ts"], 1, /\[FILE_NOT_FOUND\]: app module not found: examples\/nope\.ts/));

  it("refuses an app module that does not compile", async () => {
    const bad = join(scratchDir("cli-bad"), "broken.ts");
    writeFileSync(bad, "export default pipeline(;\n");
    await expectOneLineError(["run", bad], 1, /\[BAD_APP\]: cannot load app/);
  });

  it("refuses a source file that does not exist", () =>
    expectOneLineError(["run", APP, "--source", "lines=file:no/such/file.txt", "--sink", `counts=file:${out}`], 1, /\[FILE_NOT_FOUND\]: source "lines": file not found: no\/such\/file\.txt/));

  it("refuses a port that is in use", async () => {
    const port = await freePort();
    busy = createServer().listen(port, "127.0.0.1");
    await new Promise((r) => busy!.once("listening", r));
    await expectOneLineError(["run", APP, "--source", `lines=tcp://127.0.0.1:${port}`, "--sink", `counts=file:${out}`], 1, new RegExp(`\\[PORT_IN_USE\\]: source "lines": cannot listen on 127\\.0\\.0\\.1:${port}`));
  });

  it("stops with one WRITE_FAILED line when a file sink's path takes no writes", () =>
    expectOneLineError(["run", APP, "--source", `lines=file:${SAMPLE}`, "--sink", "counts=file:/proc/self/status"], 1,
      /^keyway: error \[WRITE_FAILED\]: sink "counts": writing to \/proc\/self\/status failed: EINVAL/));

  it("refuses a --listen host that is not an address of this machine as bad usage, not as a port in use", () =>
    expectOneLineError(["run", APP, "--source", "lines=connector", "--sink", `counts=file:${out}`, "--listen", "no-such-host.invalid:7700"], 2,
      /\[USAGE\]: cannot listen on no-such-host\.invalid:7700 for .*: the host is not an address of this machine/));

  it("refuses a config file that is missing or not JSON", async () => {
    await expectOneLineError(["run", APP, "--config", "no-such-config.json"], 1, /\[FILE_NOT_FOUND\]: config file not found/);
    const bad = join(scratchDir("cli-config"), "bad.json");
    writeFileSync(bad, "{ not json");
    await expectOneLineError(["run", APP, "--config", bad], 2, /\[USAGE\]: config .* is not valid JSON/);
  });

  it("refuses a slot count that is not a power of two", () =>
    expectOneLineError(["run", APP, "--slots", "1000", "--source", `lines=file:${SAMPLE}`, "--sink", `counts=file:${out}`], 2, /\[USAGE\]: slot count 1000 must be a power of two/));

  it("refuses an unknown flag", async () => {
    const result = await runKeyway(["run", APP, "--bogus"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/unknown option '--bogus'/);
  });

  it("prints the stack trace only with --verbose", async () => {
    const result = await runKeyway(["run", "examples/nope.ts", "--verbose"]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/app module not found/);
    expect(result.stderr).toMatch(/\n\s+at /);
  });
});
