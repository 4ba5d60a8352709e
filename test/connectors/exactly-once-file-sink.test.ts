/** The standalone file sink's ledger: recovery from every point a crash can leave the two files at. */
import { appendFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { openExactlyOnceFileSink } from "../../connectors/index.ts";
import { makeTempDir, recordingLogger } from "./helpers.ts";

let dir: string;
let remove: () => Promise<void>;
const log = recordingLogger();

beforeEach(async () => {
  ({ dir, remove } = await makeTempDir());
});

afterEach(async () => {
  await remove();
});

/** Writes batches of ids as a sink session would (values are "v-<id>"), then closes. */
async function writeBatches(path: string, batches: string[][], windowIds = 100): Promise<void> {
  const { sink } = await openExactlyOnceFileSink(path, windowIds, log);
  await sink.open({ name: "out", log });
  for (const ids of batches) await sink.write(ids.map((id) => new TextEncoder().encode(`v-${id}`)), ids);
  await sink.flush();
  await sink.close();
}

async function windowAfterRestart(path: string, windowIds = 100): Promise<string[]> {
  const { sink, window } = await openExactlyOnceFileSink(path, windowIds, log);
  await sink.close();
  return [...window.ids()];
}

const ledgerLines = (path: string): string[] => readFileSync(`${path}.ids`, "utf8").split("\n").filter(Boolean);

describe("exactly-once file sink", () => {
  it("writes the output lines alone, and knows their ids after a restart", async () => {
    const path = join(dir, "out.txt");
    await writeBatches(path, [["a", "b"], ["c"]]);
    expect(readFileSync(path, "utf8")).toBe("v-a\nv-b\nv-c\n");
    expect(await windowAfterRestart(path)).toEqual(["a", "b", "c"]);
  });

  it("truncates a batch whose output a crash cut short, and forgets its ids so it is written again", async () => {
    const path = join(dir, "out.txt");
    await writeBatches(path, [["a", "b"]]);
    // A crash after the ledger line of batch ["c", "d"] and half of its output.
    appendFileSync(`${path}.ids`, `${JSON.stringify({ end: 16, ids: ["c", "d"] })}\n`);
    appendFileSync(path, "v-c\n");
    expect(await windowAfterRestart(path)).toEqual(["a", "b"]);
    expect(readFileSync(path, "utf8")).toBe("v-a\nv-b\n");
    await writeBatches(path, [["c", "d"]]);
    expect(readFileSync(path, "utf8")).toBe("v-a\nv-b\nv-c\nv-d\n");
  });

  it("drops a ledger line a crash cut short", async () => {
    const path = join(dir, "out.txt");
    await writeBatches(path, [["a"]]);
    appendFileSync(`${path}.ids`, '{"end":8,"ids":["b"');
    expect(await windowAfterRestart(path)).toEqual(["a"]);
    expect(ledgerLines(path).every((line) => JSON.parse(line) !== undefined)).toBe(true);
  });

  it("refuses output that holds bytes its ledger does not account for", async () => {
    const path = join(dir, "out.txt");
    await writeBatches(path, [["a"]]);
    appendFileSync(path, "written by something else\n");
    await expect(openExactlyOnceFileSink(path, 100, log)).rejects.toMatchObject({ code: "BAD_CHECKPOINT" });
  });

  it("refuses a ledger that is not JSON lines", async () => {
    const path = join(dir, "out.txt");
    writeFileSync(path, "");
    writeFileSync(`${path}.ids`, "not json\n");
    await expect(openExactlyOnceFileSink(path, 100, log)).rejects.toMatchObject({ code: "BAD_CHECKPOINT" });
  });

  it("keeps the ledger bounded by compacting it to the window", async () => {
    const path = join(dir, "out.txt");
    const batches = Array.from({ length: 50 }, (_, i) => [`x${i}`, `y${i}`]);
    await writeBatches(path, batches, 10);
    const idsInLedger = ledgerLines(path).flatMap((line) => (JSON.parse(line) as { ids: string[] }).ids).length;
    expect(idsInLedger).toBeLessThanOrEqual(2 * 10 + 2);
    expect(await windowAfterRestart(path, 10)).toEqual(batches.slice(-5).flat());
    expect(readFileSync(path, "utf8").split("\n").length - 1).toBe(100);
  });

  it("appends after existing output that has no ledger yet", async () => {
    const path = join(dir, "out.txt");
    writeFileSync(path, "old line\n");
    await writeBatches(path, [["a"]]);
    expect(readFileSync(path, "utf8")).toBe("old line\nv-a\n");
    expect(await windowAfterRestart(path)).toEqual(["a"]);
  });
});
