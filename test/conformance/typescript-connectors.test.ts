// The TypeScript connectors keep every promise the suite checks: the bundled file source and
// sink as processes of their own (`keyway connector`), and the SDK examples.
import { describe, expect, it } from "vitest";
import { failures, ids, KEYWAY, NODE_TSX, runSuite } from "./helpers/suites.ts";

/** A whole suite, connector restarts included, on a loaded machine. */
const SUITE_MS_MAX = 600_000;
const NOT_A_QUEUE_NOR_ACKING = ["source.commit-gates-ack", "source.idempotency-ids"];

describe.concurrent("conformance of the TypeScript connectors", () => {
  it("keyway connector file-source", async () => {
    const summary = await runSuite(
      "source",
      [...KEYWAY, "connector", "file-source", "--engine", "{engine}", "--target", "{target}", "--token", "{token}", "--path", "{workdir}/in.txt", "--log-level", "warn"],
      "fixtures/file-source.json",
    );
    expect(failures(summary)).toEqual([]);
    expect(ids(summary.results, "skip")).toEqual(NOT_A_QUEUE_NOR_ACKING);
  }, SUITE_MS_MAX);

  it("keyway connector file-sink", async () => {
    // A window below sink.replay-window's max_replay_records: the case then checks the sink grows it.
    const summary = await runSuite(
      "sink",
      [...KEYWAY, "connector", "file-sink", "--engine", "{engine}", "--target", "{target}", "--token", "{token}", "--path", "{workdir}/out.txt", "--dedup-window", "1000", "--log-level", "warn"],
      "fixtures/file-sink.json",
    );
    expect(failures(summary)).toEqual([]);
    expect(ids(summary.results, "skip")).toEqual([]);
  }, SUITE_MS_MAX);

  it("examples/ts-connectors/source.ts", async () => {
    const summary = await runSuite("source", [...NODE_TSX, "examples/ts-connectors/source.ts"], "fixtures/ts-example-source.json");
    expect(failures(summary)).toEqual([]);
    expect(ids(summary.results, "skip")).toEqual(NOT_A_QUEUE_NOR_ACKING);
  }, SUITE_MS_MAX);

  it("examples/ts-connectors/sink.ts", async () => {
    const summary = await runSuite("sink", [...NODE_TSX, "examples/ts-connectors/sink.ts"], "fixtures/ts-example-sink.json");
    expect(failures(summary)).toEqual([]);
    expect(ids(summary.results, "skip")).toEqual([]);
  }, SUITE_MS_MAX);

  it("examples/ts-connectors/partitioner.ts", async () => {
    const summary = await runSuite("partitioner", [...NODE_TSX, "examples/ts-connectors/partitioner.ts"], "fixtures/ts-example-partitioner.json");
    expect(failures(summary)).toEqual([]);
    expect(ids(summary.results, "skip")).toEqual([]);
  }, SUITE_MS_MAX);
});
