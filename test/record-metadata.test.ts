/**
 * Record metadata through the engine: a source's key, event time and headers reach the app's steps
 * (`source(name, { records: true })`), and what the app sets with output() reaches a connector sink,
 * on one process and across the exchange of a two-worker cluster. The connectors are the TS SDK's.
 */
import { afterEach, describe, expect, it } from "vitest";
import { connectSource, runSink, type SinkRecord, type SourceClient } from "../src/sdk/index.ts";
import { settled } from "./helpers/cluster.ts";
import { requirePython, runPython } from "./python/helpers.ts";
import { freePort, startKeyway, waitFor, type Running } from "./helpers/process.ts";

const running: Running[] = [];
const stops: AbortController[] = [];
let source: SourceClient | undefined;
afterEach(async () => {
  await source?.close({ drainTimeoutMs: 0 }).catch(() => undefined);
  source = undefined;
  for (const s of stops.splice(0)) s.abort();
  for (const r of running.splice(0)) r.child.kill("SIGKILL");
});

const KEYS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"];
const RECORDS = 400;

/** Sends the records through the TS SDK's source, or through the Python SDK's (test/fixtures/metadata_source.py). */
type Sender = (engineAt: string) => Promise<void>;

const fromTypeScript: Sender = async (engineAt) => {
  source = await connectSource({ engine: engineAt, target: "in", connectorName: "metadata-source" });
  for (let i = 0; i < RECORDS; i++) {
    // Every fifth record has no event time: the app passes "none" on as none.
    const eventTimeMs = i % 5 === 0 ? undefined : 1_700_000_000_000 + i;
    await source.send("s", `v${i}`, { key: KEYS[i % KEYS.length]!, headers: { source: "test", index: String(i) }, ...(eventTimeMs === undefined ? {} : { eventTimeMs }) });
  }
};

const fromPython: Sender = async (engineAt) => {
  await requirePython();
  await runPython("test/fixtures/metadata_source.py", [engineAt, "in", String(RECORDS)]);
};

async function roundTrip(send: Sender, extra: string[], clusterAddress?: string): Promise<void> {
  const engineAt = `127.0.0.1:${await freePort()}`;
  const engine = startKeyway(["run", "test/fixtures/record-metadata.ts", "--source", "in=connector", "--sink", "out=connector", "--listen", engineAt, "--no-progress", ...extra]);
  running.push(engine);
  if (clusterAddress !== undefined) await settled(clusterAddress, 2, []);
  const received: SinkRecord[] = [];
  const stop = new AbortController();
  stops.push(stop);
  void runSink({ engine: engineAt, target: "out", connectorName: "metadata-sink", signal: stop.signal }, async (batch) => void received.push(...batch.records));
  await send(engineAt);
  const expected = new Map<string, { key: string; eventTimeMs: bigint; headers: Record<string, string> }>();
  const seen = new Map<string, number>();
  for (let i = 0; i < RECORDS; i++) {
    const key = KEYS[i % KEYS.length]!;
    const n = (seen.get(key) ?? 0) + 1;
    seen.set(key, n);
    const eventTimeMs = i % 5 === 0 ? 0 : 1_700_000_000_000 + i;
    expected.set(`v${i} ${n}`, { key, eventTimeMs: BigInt(eventTimeMs), headers: { source: "test", index: String(i), count: String(n) } });
  }
  await waitFor(`${RECORDS} outputs at the sink`, () => (received.length >= RECORDS ? true : undefined), 60_000);
  const got = new Map(received.map((r) => [Buffer.from(r.value).toString(), { key: Buffer.from(r.key ?? new Uint8Array()).toString(), eventTimeMs: r.eventTimeMs, headers: { ...r.headers } }]));
  expect(got.size).toBe(RECORDS);
  expect(got).toEqual(expected);
}

describe("record metadata", () => {
  it("on one process: each record's key, event time and headers reach the app, and the ones it sets reach the sink", async () => {
    await roundTrip(fromTypeScript, []);
  });

  it("from a Python SDK source: its key, event time and headers reach the app and, as the app sets them, the sink", async () => {
    await roundTrip(fromPython, []);
  });

  it("on a cluster of two workers: metadata crosses the exchange with the records and their outputs", async () => {
    const clusterAddress = `127.0.0.1:${await freePort()}`;
    await roundTrip(fromTypeScript, ["--workers", "2", "--cluster-listen", clusterAddress], clusterAddress);
  });

  it("refuses output() metadata of the wrong type at the record, naming it", async () => {
    const { output } = await import("../src/index.ts");
    expect(() => output("v", { headers: { n: 5 as unknown as string } })).toThrow(/BAD_APP|header "n" must be a string/);
    expect(() => output("v", { eventTimeMs: Number.NaN })).toThrow(/eventTimeMs must be a finite number/);
    expect(() => output("v", { key: 7 as unknown as string })).toThrow(/a key must be a string or bytes/);
  });
});
