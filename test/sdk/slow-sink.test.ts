/**
 * A stalled external sink slows an external source through credits, and the engine's buffers
 * stay bounded meanwhile. The engine runs in this process so its counters can be read; the source
 * and the sink are `keyway connector` processes, and the sink is stalled for real (SIGSTOP).
 */
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { startConnectorServer, type ConnectorServer } from "../../src/protocol/index.ts";
import { startEngine, type Engine } from "../../src/index.ts";
import { silentLogger } from "../../src/log/logger.ts";
import wordCount from "../../examples/word-count/app.ts";
import { scratchDir, startKeyway, waitFor, waitUntilStable, type Running } from "../helpers/process.ts";
import { SINK_BUFFER_BATCHES } from "../../src/protocol/limits.ts";

const MAX_BATCH_RECORDS = 1000;
const WORDS_PER_LINE = 5;
const LINES = 120_000;
// The connector sink holds SINK_BUFFER_BATCHES batches and takes one more write past that before
// it says wait; a write is the words of one source batch of at most MAX_BATCH_RECORDS lines.
const BUFFERED_RECORDS_BOUND = SINK_BUFFER_BATCHES * MAX_BATCH_RECORDS + MAX_BATCH_RECORDS * WORDS_PER_LINE;

describe("a stalled external sink", () => {
  const running: Running[] = [];
  let engine: Engine | undefined;
  let server: ConnectorServer | undefined;
  afterEach(async () => {
    for (const r of running.splice(0)) {
      r.child.kill("SIGCONT");
      r.child.kill("SIGKILL");
    }
    // Closing the server first ends the sink's wait for acks that will never come.
    await server?.close();
    await engine?.stop().catch(() => undefined);
  });

  it("stops the external source through credits, keeps engine buffers bounded, then delivers everything", async () => {
    const dir = scratchDir("slow-sink");
    const input = join(dir, "in.txt");
    const output = join(dir, "out.txt");
    const lines = Array.from({ length: LINES }, (_, i) => Array.from({ length: WORDS_PER_LINE }, (_, j) => `w${(i * 7 + j * 13) % 5000}`).join(" "));
    writeFileSync(input, lines.join("\n") + "\n");
    const totalWords = LINES * WORDS_PER_LINE;
    server = await startConnectorServer({
      app: { kind: "keyway.app", name: "word-count", pipelines: [wordCount] },
      listen: "127.0.0.1:0",
      limits: { maxBatchRecords: MAX_BATCH_RECORDS },
      sourceTargets: ["lines"],
      sinkTargets: ["counts"],
      partitioners: [],
      log: silentLogger(),
    });
    engine = await startEngine(wordCount, { sources: new Map([["lines", server.sourceFor("lines")]]), sinks: new Map([["counts", server.sinkFor("counts")]]) });
    const sink = startKeyway(["connector", "file-sink", "--engine", server.address, "--target", "counts", "--path", output, "--log-level", "warn"]);
    running.push(sink);
    const source = startKeyway(["connector", "file-source", "--engine", server.address, "--target", "lines", "--path", input, "--log-level", "warn"]);
    running.push(source);

    await waitFor("output flowing", () => (engine!.stats().recordsOut > 10_000 ? true : undefined));
    sink.child.kill("SIGSTOP");
    await waitUntilStable("the source to stall", () => engine!.stats().recordsIn);
    const stalled = engine.stats();
    expect(stalled.recordsIn).toBeLessThan(LINES / 2);
    expect(stalled.bufferedRecords).toBeGreaterThan(0);
    expect(stalled.bufferedRecords).toBeLessThanOrEqual(BUFFERED_RECORDS_BOUND);

    sink.child.kill("SIGCONT");
    expect((await source.finished).code).toBe(0);
    await waitFor("every output written", () => {
      try {
        return statSync(output).size > 0 && readFileSync(output, "utf8").split("\n").length - 1 >= totalWords ? true : undefined;
      } catch {
        return undefined;
      }
    }, 90_000);
    expect(readFileSync(output, "utf8").split("\n").length - 1).toBe(totalWords);
  });
});
