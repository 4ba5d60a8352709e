/** --metrics-listen: real processes, scraped over HTTP as Prometheus would. */
import { createServer, connect, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { expectCleanExit } from "./helpers/cluster.ts";
import { expectOneLineError, freePort, scratchDir, startKeyway, waitFor, type Running } from "./helpers/process.ts";

const APP = "examples/word-count/app.ts";
const SAMPLE = "examples/word-count/sample.txt";

/** Every family docs/operations.md lists, with its type. */
const FAMILIES: Record<string, string> = {
  keyway_source_records_total: "counter",
  keyway_sink_records_total: "counter",
  keyway_stage_batch_duration_seconds: "histogram",
  keyway_state_keys: "gauge",
  keyway_slots_owned: "gauge",
  keyway_slots_backup: "gauge",
  keyway_source_queued_records: "gauge",
  keyway_sink_buffered_records: "gauge",
  keyway_connector_credits: "gauge",
  keyway_connector_sessions: "gauge",
  keyway_exchange_backlog_records: "gauge",
  keyway_checkpoint_duration_seconds: "histogram",
  keyway_slot_move_duration_seconds: "histogram",
  keyway_failover_duration_seconds: "histogram",
};

interface Scrape {
  types: Map<string, string>;
  /** `name{labels}` as written -> value. */
  samples: Map<string, number>;
}

/** The Prometheus text format's two kinds of line we read: `# TYPE name type` and `name{labels} value`. */
function parse(text: string): Scrape {
  const types = new Map<string, string>();
  const samples = new Map<string, number>();
  for (const line of text.split("\n")) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type !== null) types.set(type[1]!, type[2]!);
    else if (line !== "" && !line.startsWith("#")) {
      const space = line.lastIndexOf(" ");
      samples.set(line.slice(0, space), Number(line.slice(space + 1)));
    }
  }
  return { types, samples };
}

async function scrape(address: string): Promise<Scrape> {
  const response = await fetch(`http://${address}/metrics`);
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
  return parse(await response.text());
}

const sample = (s: Scrape, key: string): number => s.samples.get(key) ?? 0;

/** Where each process of a run serves its metrics, from its "serving metrics" log lines. */
const metricsAddresses = (stderr: string): string[] =>
  stderr
    .split("\n")
    .filter((l) => l.includes('"msg":"serving metrics"'))
    .map((l) => (JSON.parse(l) as { address: string }).address);

function connectWhenUp(port: number): Promise<Socket> {
  return waitFor(`a TCP source listening on ${port}`, () =>
    new Promise<Socket | undefined>((resolve) => {
      const socket = connect(port, "127.0.0.1");
      socket.once("connect", () => resolve(socket));
      socket.once("error", () => resolve(undefined));
    }));
}

const lines = (from: number, count: number): string => Array.from({ length: count }, (_, i) => `alpha beta w${from + i}\n`).join("");

const running: Running[] = [];
afterEach(() => {
  for (const r of running.splice(0)) r.child.kill("SIGKILL");
});

describe("metrics", () => {
  it("serves every family on one process, its counters rising as records flow, and 404 elsewhere", async () => {
    const dir = scratchDir("metrics-one");
    const sourcePort = await freePort();
    const address = `127.0.0.1:${await freePort()}`;
    const engine = startKeyway(["run", APP, "--source", `lines=tcp://127.0.0.1:${sourcePort}`, "--sink", `counts=file:${join(dir, "out.txt")}`,
      "--data-dir", join(dir, "data"), "--checkpoint-interval-ms", "100", "--metrics-listen", address]);
    running.push(engine);
    const socket = await connectWhenUp(sourcePort);

    socket.write(lines(0, 1000));
    const first = await waitFor("the first 1000 records counted", async () => {
      const s = await scrape(address);
      return sample(s, 'keyway_source_records_total{source="lines"}') >= 1000 ? s : undefined;
    });
    for (const [name, type] of Object.entries(FAMILIES)) expect(first.types.get(name), name).toBe(type);
    expect(sample(first, "keyway_slots_owned")).toBe(4096);
    expect(sample(first, 'keyway_state_keys{pipeline="word-count",stage="keyed-1"}')).toBeGreaterThanOrEqual(1000);
    expect(sample(first, 'keyway_stage_batch_duration_seconds_count{pipeline="word-count",stage="head"}')).toBeGreaterThan(0);
    expect(sample(first, 'keyway_stage_batch_duration_seconds_count{pipeline="word-count",stage="keyed-1"}')).toBeGreaterThan(0);
    expect(first.samples.has('keyway_sink_buffered_records{sink="counts"}')).toBe(true);
    expect(first.samples.has('keyway_source_queued_records{source="lines"}')).toBe(true);

    socket.write(lines(1000, 1000));
    const second = await waitFor("the next records counted", async () => {
      const s = await scrape(address);
      return sample(s, 'keyway_source_records_total{source="lines"}') >= 2000 && sample(s, "keyway_checkpoint_duration_seconds_count") > 0 ? s : undefined;
    });
    expect(sample(second, 'keyway_sink_records_total{sink="counts"}')).toBeGreaterThan(sample(first, 'keyway_sink_records_total{sink="counts"}'));
    expect(sample(second, 'keyway_stage_batch_duration_seconds_count{pipeline="word-count",stage="keyed-1"}')).toBeGreaterThanOrEqual(
      sample(first, 'keyway_stage_batch_duration_seconds_count{pipeline="word-count",stage="keyed-1"}'),
    );

    expect((await fetch(`http://${address}/`)).status).toBe(404);
    expect((await fetch(`http://${address}/metrics/more`)).status).toBe(404);
    socket.end();
    await expectCleanExit(engine);
  });

  it("counts connector sessions and their outstanding credits by role", async () => {
    const dir = scratchDir("metrics-connectors");
    const engineAt = `127.0.0.1:${await freePort()}`;
    const address = `127.0.0.1:${await freePort()}`;
    const engine = startKeyway(["run", APP, "--source", "lines=connector", "--sink", "counts=connector", "--listen", engineAt, "--metrics-listen", address]);
    running.push(engine);
    const feedPort = await freePort();
    const source = startKeyway(["connector", "tcp-source", "--engine", engineAt, "--target", "lines", "--listen", `127.0.0.1:${feedPort}`, "--instance-id", "feed"]);
    const sink = startKeyway(["connector", "file-sink", "--engine", engineAt, "--target", "counts", "--path", join(dir, "out.txt"), "--instance-id", "out"]);
    running.push(source, sink);
    // The sink session's credits (granted just after its Welcome) wait unspent: nothing has been output yet.
    const s = await waitFor("a source and a sink session, the sink's credits held", async () => {
      const scraped = await scrape(address).catch(() => undefined);
      const both = scraped !== undefined && sample(scraped, 'keyway_connector_sessions{role="source"}') === 1 && sample(scraped, 'keyway_connector_sessions{role="sink"}') === 1;
      return both && sample(scraped, 'keyway_connector_credits{role="sink"}') > 0 ? scraped : undefined;
    });
    expect(sample(s, 'keyway_connector_sessions{role="partitioner"}')).toBe(0);

    // A client of the TCP connector opens a stream: its session's credits now count.
    const socket = await connectWhenUp(feedPort);
    socket.write(lines(0, 10));
    await waitFor("records through, the source session's credits counted", async () => {
      const scraped = await scrape(address);
      return sample(scraped, 'keyway_sink_records_total{sink="counts"}') >= 30 && sample(scraped, 'keyway_connector_credits{role="source"}') > 0 ? true : undefined;
    });
    socket.end();
  });

  it("serves /metrics on every worker of a local cluster, their slots owned and backed up summing to the slot count", async () => {
    const dir = scratchDir("metrics-cluster");
    const address = `127.0.0.1:${await freePort()}`;
    const engine = startKeyway(["run", APP, "--source", `lines=tcp://127.0.0.1:${await freePort()}`, "--sink", `counts=file:${join(dir, "out.txt")}`,
      "--workers", "3", "--slots", "1024", "--metrics-listen", address]);
    running.push(engine);
    const addresses = await waitFor("three workers serving metrics", () => {
      const found = metricsAddresses(engine.stderr());
      return found.length === 3 ? found : undefined;
    }, 60_000);
    expect(addresses[0]).toBe(address);
    expect(new Set(addresses).size).toBe(3);
    const scrapes = await waitFor("the slots spread over the three workers, with their copies", async () => {
      const all = await Promise.all(addresses.map(scrape));
      const owned = all.map((s) => sample(s, "keyway_slots_owned"));
      const backups = all.reduce((n, s) => n + sample(s, "keyway_slots_backup"), 0);
      return owned.every((n) => n > 0) && owned.reduce((a, b) => a + b, 0) === 1024 && backups === 1024 ? all : undefined;
    }, 60_000);
    for (const s of scrapes) {
      for (const [name, type] of Object.entries(FAMILIES)) expect(s.types.get(name), name).toBe(type);
      expect(s.samples.has('keyway_exchange_backlog_records{direction="out"}')).toBe(true);
      expect(s.samples.has('keyway_exchange_backlog_records{direction="in"}')).toBe(true);
    }
    // The first worker holds the coordinator: it saw the moves that gave the others their slots.
    await waitFor("the first worker's slot moves observed", async () => (sample(await scrape(address), "keyway_slot_move_duration_seconds_count") > 0 ? true : undefined));
    await expectCleanExit(engine);
  });
});

describe("--metrics-listen refusals", () => {
  let busy: Server | undefined;
  afterAll(() => busy?.close());
  const out = join(scratchDir("metrics-refusals"), "out.txt");

  it("refuses a port that is in use, with one line, on keyway run and on keyway worker", async () => {
    const port = await freePort();
    busy = createServer().listen(port, "127.0.0.1");
    await new Promise((r) => busy!.once("listening", r));
    const taken = new RegExp(`^keyway: error \\[PORT_IN_USE\\]: cannot listen on 127\\.0\\.0\\.1:${port} for metrics: address in use$`);
    await expectOneLineError(["run", APP, "--source", `lines=file:${SAMPLE}`, "--sink", `counts=file:${out}`, "--metrics-listen", `127.0.0.1:${port}`], 1, taken);
    await expectOneLineError(["worker", APP, "--join", `127.0.0.1:${await freePort()}`, "--metrics-listen", `127.0.0.1:${port}`], 1, taken);
  });

  it("refuses a malformed address or a host that is not this machine's as bad usage", async () => {
    await expectOneLineError(["run", APP, "--source", `lines=file:${SAMPLE}`, "--sink", `counts=file:${out}`, "--metrics-listen", "9100"], 2,
      /\[USAGE\]: --metrics-listen expects HOST:PORT \(port 0 to 65535\), got "9100"/);
    await expectOneLineError(["run", APP, "--source", `lines=file:${SAMPLE}`, "--sink", `counts=file:${out}`, "--metrics-listen", "no-such-host.invalid:9100"], 2,
      /\[USAGE\]: cannot listen on no-such-host\.invalid:9100 for metrics: the host is not an address of this machine/);
  });
});
