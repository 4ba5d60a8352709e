// The engine-side connector sink on its own, with a session port standing in for a sink session:
// the batches it cuts decode to the output written, a resend is the same message, and output it
// cannot send is refused with a typed error before anything is queued.
import { describe, expect, it } from "vitest";
import { ErrorCode } from "../../src/errors.ts";
import { resolveLimits } from "../../src/protocol/limits.ts";
import { ConnectorSink, type SinkBatchOut, type SinkSessionPort } from "../../src/protocol/sink/connector-sink.ts";
import { decodeSinkResponse } from "../../src/protocol/wire/sink-batch-codec.ts";
import { encodedBytes } from "../../src/rpc/grpc-adapter.ts";

function port(credits: number): SinkSessionPort & { sent: SinkBatchOut[]; ended: boolean } {
  const p = {
    ended: false,
    creditsAvailable: credits,
    sent: [] as SinkBatchOut[],
    get lastUnackedSequence() {
      return p.sent.at(-1)?.sequence ?? 0n;
    },
    send(batch: SinkBatchOut) {
      p.creditsAvailable -= batch.records;
      p.sent.push(batch);
    },
  };
  return p;
}

function decoded(batch: SinkBatchOut) {
  const message = decodeSinkResponse(encodedBytes(batch.message)!);
  if (message?.kind.case !== "batch") throw new Error("not a SinkResponse batch");
  return {
    sequence: message.kind.value.sequence,
    records: message.kind.value.records.map((r) => ({ id: r.id, value: Buffer.from(r.value).toString(), key: r.key === undefined ? undefined : Buffer.from(r.key).toString(), headers: r.headers })),
  };
}

describe("ConnectorSink", () => {
  it("cuts batches across writes within the credits and maxBatchRecords, each decoding to its records", async () => {
    const sink = new ConnectorSink("out", resolveLimits({ maxBatchRecords: 3 }));
    await sink.write(["a", "b"], ["p:s@1:0", "p:s@2:0"]);
    await sink.write(["c", new Uint8Array([100]), "é"], ["p:s@3:0", "p:s@4:0", "p:s@5:0"], [undefined, { key: "k", headers: { h: "v" } }, undefined]);
    const session = port(5);
    sink.attach(session);
    sink.dispatch();
    const batches = session.sent.map(decoded);
    expect(batches.map((b) => b.sequence)).toEqual([1n, 2n]);
    expect(batches.map((b) => b.records.map((r) => r.id))).toEqual([["p:s@1:0", "p:s@2:0", "p:s@3:0"], ["p:s@4:0", "p:s@5:0"]]);
    expect(batches.map((b) => b.records.map((r) => r.value))).toEqual([["a", "b", "c"], ["d", "é"]]);
    expect(batches[1]!.records[0]).toEqual({ id: "p:s@4:0", value: "d", key: "k", headers: { h: "v" } });
    expect(session.creditsAvailable).toBe(0);
    expect(sink.bufferedRecords()).toBe(5);
    sink.acked(session.sent.slice(0, 1));
    expect(sink.bufferedRecords()).toBe(2);
  });

  it("resends a batch a session left unacked as the same message, on the next session, before new output", async () => {
    const sink = new ConnectorSink("out", resolveLimits());
    const first = port(10);
    sink.attach(first);
    await sink.write(["x", "y"], ["i1", "i2"]);
    const sent = first.sent[0]!;
    first.ended = true;
    sink.detach(first, [sent]);
    await sink.write(["z"], ["i3"]);
    const second = port(10);
    sink.attach(second);
    sink.dispatch();
    expect(second.sent[0]!.message).toBe(sent.message);
    expect(decoded(second.sent[1]!)).toEqual({ sequence: 2n, records: [{ id: "i3", value: "z", key: undefined, headers: {} }] });
    sink.acked(second.sent);
    expect(sink.bufferedRecords()).toBe(0);
  });

  it("refuses output it cannot send with a typed error, queueing none of the write", async () => {
    const sink = new ConnectorSink("out", resolveLimits({ maxMessageBytes: 1024 }));
    await expect(sink.write(["ok", "v".repeat(2000)], ["a", "b"])).rejects.toMatchObject({ code: ErrorCode.FRAME_TOO_LARGE });
    await expect(sink.write(["v"], ["a"], [{ headers: { h: 7 as unknown as string } }])).rejects.toMatchObject({ code: ErrorCode.BAD_APP });
    await expect(sink.write(["v"], undefined)).rejects.toMatchObject({ code: ErrorCode.INTERNAL });
    expect(sink.bufferedRecords()).toBe(0);
  });
});
