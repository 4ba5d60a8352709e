/**
 * The dashboard (--http-listen) in a real browser: Debian's Chromium driven by playwright-core,
 * against real keyway processes, on one process and on a cluster that grows.
 */
import { existsSync } from "node:fs";
import { connect, createServer, type Socket } from "node:net";
import { join } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { clusterStatus } from "./helpers/cluster.ts";
import { expectOneLineError, freePort, scratchDir, startKeyway, waitFor, type Running } from "./helpers/process.ts";

const CHROMIUM = "/usr/bin/chromium";
const APP = "examples/word-count/app.ts";

let browser: Browser;
const running: Running[] = [];

beforeAll(async () => {
  // Never a downloaded browser, and never a silent skip: a missing Chromium is a set-up to fix.
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run the README's test-deps install (bash scripts/install-test-deps.sh), which installs Debian's chromium`);
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox"] });
});
afterAll(async () => {
  await browser?.close();
});
afterEach(() => {
  for (const r of running.splice(0)) r.child.kill("SIGKILL");
});

function start(args: string[]): Running {
  const r = startKeyway(args);
  running.push(r);
  return r;
}

/** Console errors and uncaught exceptions of a page, collected from the start. */
async function openPage(url: string): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(message.text());
  });
  page.on("pageerror", (err) => errors.push(err.message));
  await page.goto(url);
  return { page, errors };
}

const cellNumber = (page: Page, worker: string, cell: string) => page.locator(`#workers tr[data-worker="${worker}"] td.${cell}`).textContent().then((t) => Number(t));
// The tests compile without the DOM's types: an element is read through the attribute the page sets.
type Tagged = { getAttribute(name: string): string | null };
const workerIds = (page: Page) => page.locator("#workers tbody tr").evaluateAll((rows) => rows.map((r) => (r as unknown as Tagged).getAttribute("data-worker") ?? ""));
const stripOwners = (page: Page) => page.locator("#strip > div").evaluateAll((cells) => cells.map((c) => (c as unknown as Tagged).getAttribute("data-owner") ?? ""));

/** Words over TCP until stopped, new words all along so the key count keeps rising. */
async function feed(port: number) {
  const socket = await waitFor("the TCP source listening", () =>
    new Promise<Socket | undefined>((resolve) => {
      const s = connect(port, "127.0.0.1");
      s.once("connect", () => resolve(s));
      s.once("error", () => resolve(undefined));
    }));
  let n = 0;
  let on = true;
  const loop = (async () => {
    while (on) {
      let chunk = "";
      for (let i = 0; i < 50; i++, n++) chunk += `word${n} common\n`;
      socket.write(chunk);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  return {
    async stop() {
      on = false;
      await loop;
      socket.destroy();
    },
  };
}

describe("dashboard", () => {
  it("refuses a port in use and a bad address with the one-line errors --listen gives", async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    const { port } = taken.address() as { port: number };
    try {
      const run = ["run", APP, "--source", "lines=file:examples/word-count/sample.txt", "--sink", "counts=file:/dev/null"];
      await expectOneLineError([...run, "--http-listen", `127.0.0.1:${port}`], 1, new RegExp(`^keyway: error \\[PORT_IN_USE\\]: cannot listen on 127.0.0.1:${port} for the dashboard: address in use$`));
      await expectOneLineError([...run, "--http-listen", "127.0.0.1"], 2, /^keyway: error \[USAGE\]: --http-listen expects HOST:PORT .*missing port$/);
      await expectOneLineError(["worker", APP, "--join", "127.0.0.1:1", "--http-listen", `127.0.0.1:${port}`], 1, /\[PORT_IN_USE\]: cannot listen on .* for the dashboard/);
    } finally {
      taken.close();
    }
  });

  it("shows one process's worker and its changing numbers, shows a stop as disconnected, and reconnects after a restart", async () => {
    const dir = scratchDir("dashboard-one");
    const [sourcePort, httpPort] = [await freePort(), await freePort()];
    const args = ["run", APP, "--source", `lines=tcp://127.0.0.1:${sourcePort}`, "--sink", `counts=file:${join(dir, "out.txt")}`, "--http-listen", `127.0.0.1:${httpPort}`];
    let engine = start(args);
    await waitFor("the dashboard listening", () => (engine.stderr().includes("dashboard on") ? true : undefined));
    const { page, errors } = await openPage(`http://127.0.0.1:${httpPort}/`);
    await page.locator('#workers tr[data-worker="w0"]').waitFor();
    expect(await cellNumber(page, "w0", "slots")).toBe(4096);
    expect(new Set(await stripOwners(page))).toEqual(new Set(["w0"]));

    const load = await feed(sourcePort);
    await waitFor("keys on the page", async () => ((await cellNumber(page, "w0", "keys")) > 0 ? true : undefined));
    const keysBefore = await cellNumber(page, "w0", "keys");
    await waitFor("keys rising on the page", async () => ((await cellNumber(page, "w0", "keys")) > keysBefore ? true : undefined));
    await waitFor("records/s on the page", async () => ((await cellNumber(page, "w0", "rate")) > 0 ? true : undefined));
    // The charts draw (uPlot makes a canvas per chart).
    await page.locator("#keys-chart canvas").waitFor();
    await page.locator("#rate-chart canvas").waitFor();
    await page.screenshot({ path: join(dir, "dashboard-one-process.png"), fullPage: true });
    expect(errors).toEqual([]);
    await load.stop();

    engine.child.kill("SIGTERM");
    expect((await engine.finished).code).toBe(0);
    const banner = page.locator("#disconnected");
    await banner.waitFor({ state: "visible" });
    expect(await banner.textContent()).toMatch(/^disconnected/);

    engine = start(args);
    await banner.waitFor({ state: "hidden", timeout: 30_000 });
    expect(await workerIds(page)).toEqual(["w0"]);
    engine.child.kill("SIGTERM");
    expect((await engine.finished).code).toBe(0);
    await page.close();
  });

  it("shows every worker of a cluster from any worker, the slot strip changing when a worker joins, and a stopped worker's page disconnected", async () => {
    const dir = scratchDir("dashboard-cluster");
    const [sourcePort, clusterPort, httpPort, joinerHttpPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
    const address = `127.0.0.1:${clusterPort}`;
    start(["run", APP, "--workers", "2", "--cluster-listen", address, "--source", `lines=tcp://127.0.0.1:${sourcePort}`, "--sink", `counts=file:${join(dir, "out.txt")}`, "--http-listen", `127.0.0.1:${httpPort}`]);
    await waitFor("two workers", async () => ((await clusterStatus(address).catch(() => undefined))?.workers.length === 2 ? true : undefined), 60_000);
    const load = await feed(sourcePort);

    const { page, errors } = await openPage(`http://127.0.0.1:${httpPort}/`);
    await waitFor("both workers on the page", async () => ((await workerIds(page)).join() === "w0,w1" ? true : undefined));
    const before = await stripOwners(page);
    expect(new Set(before)).toEqual(new Set(["w0", "w1"]));

    const joiner = start(["worker", APP, "--join", address, "--http-listen", `127.0.0.1:${joinerHttpPort}`]);
    await waitFor("the join to complete", () => (joiner.stderr().includes("joined the cluster") ? true : undefined), 60_000);
    await waitFor("three workers on the page", async () => ((await workerIds(page)).join() === "w0,w1,w2" ? true : undefined));
    const after = await waitFor("the strip to show w2", async () => {
      const owners = await stripOwners(page);
      return owners.includes("w2") ? owners : undefined;
    });
    expect(after).toHaveLength(before.length);
    expect(after.filter((owner, i) => owner !== before[i]).length).toBeGreaterThan(0);
    // The coordinator's page lists the join among its events.
    await page.locator('#events li[data-kind="join"]').first().waitFor();
    await page.screenshot({ path: join(dir, "dashboard-cluster.png"), fullPage: true });

    // The joiner does not hold the coordinator: its page shows the whole cluster through the Status call.
    const joinerView = await openPage(`http://127.0.0.1:${joinerHttpPort}/`);
    await waitFor("three workers on the joiner's page", async () => ((await workerIds(joinerView.page)).join() === "w0,w1,w2" ? true : undefined));
    expect(await stripOwners(joinerView.page)).toHaveLength(before.length);
    expect(errors).toEqual([]);
    expect(joinerView.errors).toEqual([]);

    joiner.child.kill("SIGTERM");
    await joiner.finished;
    const banner = joinerView.page.locator("#disconnected");
    await banner.waitFor({ state: "visible" });
    expect(await banner.textContent()).toMatch(/^disconnected/);
    await load.stop();
    await joinerView.page.close();
    await page.close();
  });
});
