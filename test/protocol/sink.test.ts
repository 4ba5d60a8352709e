/** Sink sessions: credits, sequences, stable ids, cumulative acks, resending, the bounded buffer. */
import { afterEach, describe, expect, it } from "vitest";
import { records, TestSink, TestSource } from "./helpers/connectors.ts";
import { startHarness, type Harness } from "./helpers/harness.ts";
import { waitFor } from "../helpers/process.ts";
import { closeClients } from "./helpers/raw-session.ts";

let harness: Harness | undefined;
afterEach(async () => {
  closeClients();
  await harness?.stop();
  harness = undefined;
});

const upper = (from: number, to: number) => records(from, to, "S").map((r) => r.value);

describe("sink sessions", () => {
  it("sends nothing before credits, then batches within them, numbered from 1, with stable ids", async () => {
    harness = await startHarness();
    const sink = await TestSink.connect(harness.address, "out", { credits: 0, autoAck: false });
    const source = await TestSource.connect(harness.address);
    await source.open("s");
    await source.send("s", records(1, 10, "s"));
    // Committed without a data dir: the sink's buffer has taken the output, and none went out.
    await source.untilCommitted("s", 10);
    expect(sink.batches).toEqual([]);

    sink.grant(3);
    await sink.untilValues(3);
    expect(sink.batches).toHaveLength(1);
    expect(sink.batches[0]!.sequence).toBe(1n);
    expect(sink.ids()).toEqual(["upper:s@1:0", "upper:s@2:0", "upper:s@3:0"]);

    sink.grant(7);
    await sink.untilValues(10);
    expect(sink.values()).toEqual(upper(1, 10));
    expect(sink.batches.map((b) => b.sequence)).toEqual(sink.batches.map((_, i) => BigInt(i + 1)));

    // One ack of the last sequence acknowledges every batch before it.
    expect(harness.server.sinkFor("out").bufferedRecords()).toBe(10);
    sink.ack(sink.batches.at(-1)!.sequence);
    await waitFor("the acks", () => (harness!.server.sinkFor("out").bufferedRecords() === 0 ? true : undefined));
  });

  it("resends a lost session's unacked batches to the next session, with the same sequences and ids", async () => {
    harness = await startHarness({ limits: { maxBatchRecords: 2 } });
    const lost = await TestSink.connect(harness.address, "out", { credits: 100, autoAck: false });
    const source = await TestSource.connect(harness.address);
    await source.open("s");
    await source.send("s", records(1, 5, "s"));
    await lost.untilValues(5);
    // Acks the first batch only, then goes: a half-close delivers the ack before the session ends.
    const acked = lost.batches[0]!;
    lost.ack(acked.sequence);
    lost.session.end();
    await lost.session.status;

    const next = await TestSink.connect(harness.address, "out");
    const resent = lost.batches.slice(1);
    await next.untilValues(5 - acked.records.length);
    expect(next.batches.map((b) => b.sequence)).toEqual(resent.map((b) => b.sequence));
    expect(next.ids()).toEqual(resent.flatMap((b) => b.records.map((r) => r.id)));
    expect(next.values()).toEqual(upper(acked.records.length + 1, 5));

    // New output continues the numbering.
    await source.send("s", records(6, 6, "s"));
    await next.untilValues(6 - acked.records.length);
    expect(next.batches.at(-1)!.sequence).toBe(lost.batches.at(-1)!.sequence + 1n);
    await waitFor("the acks", () => (harness!.server.sinkFor("out").bufferedRecords() === 0 ? true : undefined));
  });

  it("resends everything a cancelled session left unacked", async () => {
    harness = await startHarness({ limits: { maxBatchRecords: 2 } });
    const lost = await TestSink.connect(harness.address, "out", { credits: 100, autoAck: false });
    const source = await TestSource.connect(harness.address);
    await source.open("s");
    await source.send("s", records(1, 5, "s"));
    await lost.untilValues(5);
    lost.session.cancel();
    await lost.session.status;

    const next = await TestSink.connect(harness.address, "out");
    await next.untilValues(5);
    expect(next.batches.map((b) => b.sequence)).toEqual(lost.batches.map((b) => b.sequence));
    expect(next.ids()).toEqual(lost.ids());
  });

  it("resends a batch only to a session with no later batch unacked, so cumulative acks stay exact", async () => {
    harness = await startHarness({ limits: { maxBatchRecords: 1 } });
    const a = await TestSink.connect(harness.address, "out", { credits: 1, autoAck: false });
    const b = await TestSink.connect(harness.address, "out", { credits: 1, autoAck: false });
    const source = await TestSource.connect(harness.address);
    await source.open("s");
    await source.send("s", records(1, 2, "s"));
    await a.untilValues(1);
    await b.untilValues(1);
    expect([a.batches[0]!.sequence, b.batches[0]!.sequence]).toEqual([1n, 2n]);
    a.session.cancel();
    await a.session.status;
    // b holds batch 2 unacked: an ack of 2 would cover 1 as well, so batch 1 goes elsewhere.
    b.grant(1);
    const c = await TestSink.connect(harness.address, "out", { credits: 1, autoAck: false });
    await c.untilValues(1);
    expect(c.batches.map((x) => x.sequence)).toEqual([1n]);
    expect(b.batches.map((x) => x.sequence)).toEqual([2n]);
    b.ack(2n);
    c.ack(1n);
    await waitFor("the acks", () => (harness!.server.sinkFor("out").bufferedRecords() === 0 ? true : undefined));
  });

  it("shares batches between the sessions of one sink", async () => {
    harness = await startHarness({ limits: { maxBatchRecords: 2 } });
    const a = await TestSink.connect(harness.address, "out", { credits: 2 });
    const b = await TestSink.connect(harness.address, "out", { credits: 2 });
    const source = await TestSource.connect(harness.address);
    await source.open("s");
    await source.send("s", records(1, 20, "s"));
    await source.untilCommitted("s", 20);
    await waitFor("every record at a sink", () => (a.values().length + b.values().length === 20 ? true : undefined));
    expect(a.batches.length).toBeGreaterThan(0);
    expect(b.batches.length).toBeGreaterThan(0);
    const sequences = [...a.batches, ...b.batches].map((x) => x.sequence).sort((x, y) => (x < y ? -1 : 1));
    expect(sequences).toEqual(sequences.map((_, i) => BigInt(i + 1)));
    expect([...a.values(), ...b.values()].sort()).toEqual(upper(1, 20).sort());
  });

  it("bounds its buffer: with no credits the pipeline stops, then everything is delivered", async () => {
    // maxBatchRecords 4: the sink buffers 16 records; the engine may hand it one batch past that.
    harness = await startHarness({ limits: { maxBatchRecords: 4 } });
    const source = await TestSource.connect(harness.address);
    await source.open("s");
    const sending = source.send("s", records(1, 100, "s"));
    const sink = harness.server.sinkFor("out");
    await waitFor("a full sink buffer", () => (sink.bufferedRecords() >= 16 ? true : undefined));
    expect(sink.bufferedRecords()).toBeLessThanOrEqual(16 + 4);
    expect(source.committed.get("s") ?? 0n).toBeLessThan(100n);

    const drain = await TestSink.connect(harness.address, "out");
    await sending;
    await source.untilCommitted("s", 100);
    await drain.untilValues(100);
    expect(drain.values()).toEqual(upper(1, 100));
  });

  it("lets the engine's flush wait until the sink acks", async () => {
    harness = await startHarness();
    const sink = await TestSink.connect(harness.address, "out", { credits: 100, autoAck: false });
    const source = await TestSource.connect(harness.address);
    await source.open("s");
    await source.send("s", records(1, 3, "s"));
    await sink.untilValues(3);
    let acked = false;
    const stopping = harness.engine!.stop().then(() => expect(acked).toBe(true));
    // A round trip on a live session lets the engine close its sources and start its final flush.
    await source.open("later");
    acked = true;
    sink.ack(sink.batches.at(-1)!.sequence);
    await stopping;
    expect(harness.engine!.stats().bufferedRecords).toBe(0);
  });
});
