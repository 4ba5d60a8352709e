// A connector source's progress is taken only when asked for, as of a batch the engine finished
// while later batches were read already: what those moved (positions, idempotency ids, drops
// passed on before them) is not in it. Committing batch positions settles what each batch moved.
import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { RecordSchema } from "../../src/protocol/gen/keyway/v1/connector_pb.ts";
import { resolveLimits } from "../../src/protocol/limits.ts";
import { ConnectorSource, type SourceSessionPort } from "../../src/protocol/source/connector-source.ts";
import type { SourceProgress } from "../../src/protocol/source/progress.ts";
import { silentLogger } from "../../src/log/logger.ts";

function session(): SourceSessionPort & { commits: Array<[string, bigint]> } {
  const commits: Array<[string, bigint]> = [];
  return {
    commits,
    ended: false,
    connectorName: "c",
    instanceId: "i",
    replace() {},
    grant() {},
    credits: 1000,
    committed: (stream, position) => void commits.push([stream, position]),
    streamEnded() {},
  };
}

const record = (position: number, idempotencyId = "") => create(RecordSchema, { position: BigInt(position), value: Buffer.from(`v${position}`), idempotencyId });

async function opened(window = 3): Promise<{ source: ConnectorSource; port: ReturnType<typeof session> }> {
  const source = new ConnectorSource("in", resolveLimits({ idempotencyWindow: window }));
  await source.open({ name: "in", log: silentLogger(), checkpointed: true });
  const port = session();
  source.openStream("a", port);
  source.openStream("b", port);
  return { source, port };
}

const ids = (p: SourceProgress) => p.idempotencyIds.flat();

describe("connector source progress", () => {
  it("is taken as of an earlier batch: later batches' positions and ids are left out", async () => {
    const { source, port } = await opened();
    source.accept(port, "a", [record(1, "x1"), record(2, "x2")]);
    const first = (await source.read(2))!;
    source.accept(port, "b", [record(5, "y5")]);
    source.accept(port, "a", [record(3, "x3")]);
    const second = (await source.read(2))!;
    expect(second.recordIds).toEqual(["b@5", "a@3"]);
    const p1 = source.progressAt(first.position);
    expect(p1.streams).toEqual({ a: 2n });
    expect(ids(p1)).toEqual(["x1", "x2"]);
    const p2 = source.progressAt(second.position);
    expect(p2.streams).toEqual({ a: 3n, b: 5n });
    expect(ids(p2).slice(-3)).toEqual(["x2", "y5", "x3"]);
  });

  it("leaves out drops passed on after the batch, and keeps the window's oldest ids for it", async () => {
    const { source, port } = await opened(2);
    source.accept(port, "a", [record(1, "x1"), record(2, "x2")]);
    const first = (await source.read())!;
    // A duplicate of x2 (dropped as it is passed on), then a new id: read after `first`.
    source.accept(port, "a", [record(3, "x2"), record(4, "x4")]);
    const second = (await source.read())!;
    expect(second.values).toHaveLength(1);
    expect(source.progressAt(first.position).streams).toEqual({ a: 2n });
    expect(ids(source.progressAt(first.position)).slice(-2)).toEqual(["x1", "x2"]);
    expect(source.progressAt(second.position).streams).toEqual({ a: 4n });
    expect(ids(source.progressAt(second.position)).slice(-2)).toEqual(["x2", "x4"]);
  });

  it("commits by batch position: each stream a batch moved is committed to where it moved it", async () => {
    const { source, port } = await opened();
    source.accept(port, "a", [record(1), record(2)]);
    const first = (await source.read())!;
    source.accept(port, "b", [record(7)]);
    const second = (await source.read())!;
    source.commit(first.position);
    expect(port.commits).toEqual([["a", 2n]]);
    source.commit(second.position);
    expect(port.commits).toEqual([["a", 2n], ["b", 7n]]);
  });
});
