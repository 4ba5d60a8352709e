import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { countWords, generateText } from "./helpers/text.ts";
import { runKeyway, scratchDir, startKeyway, waitFor } from "./helpers/process.ts";

/** The highest count each word reached in the output; a crash may repeat lines, never exceed the truth. */
function highestCounts(output: string): Map<string, number> {
  const highest = new Map<string, number>();
  for (const line of output.split("\n")) {
    if (line === "") continue;
    const space = line.lastIndexOf(" ");
    const word = line.slice(0, space);
    highest.set(word, Math.max(highest.get(word) ?? 0, Number(line.slice(space + 1))));
  }
  return highest;
}

describe("--data-dir checkpoints", () => {
  it("survives SIGKILL mid-stream: the restarted engine resumes and the final counts are exact", async () => {
    const dir = scratchDir("datadir");
    const input = join(dir, "in.txt");
    const output = join(dir, "out.txt");
    const dataDir = join(dir, "state");
    const text = generateText(3_000_000, 11);
    writeFileSync(input, text);
    const args = ["run", "examples/word-count/app.ts", "--source", `lines=file:${input}`, "--sink", `counts=file:${output}`,
      "--data-dir", dataDir, "--checkpoint-interval-ms", "100"];

    const first = startKeyway(args);
    // Kill once a checkpoint exists and output is flowing, well before the input is done.
    await waitFor("a checkpoint and some output", () =>
      existsSync(join(dataDir, "checkpoint.v8")) && existsSync(output) && readFileSync(output).length > 100_000 ? true : undefined);
    first.child.kill("SIGKILL");
    const killed = await first.finished;
    expect(killed.signal).toBe("SIGKILL");
    const linesBeforeRestart = readFileSync(output, "utf8").split("\n").length - 1;
    const expected = countWords(text);
    const total = [...expected.values()].reduce((a, b) => a + b, 0);
    expect(linesBeforeRestart).toBeLessThan(total);

    const second = await runKeyway(args);
    expect(second.stderr).toMatch(/restored checkpoint/);
    expect(second.code).toBe(0);
    const highest = highestCounts(readFileSync(output, "utf8"));
    expect(highest.size).toBe(expected.size);
    for (const [word, n] of expected) {
      if (highest.get(word) !== n) throw new Error(`"${word}": highest count ${highest.get(word)}, expected ${n}`);
    }

    // A clean end leaves a final checkpoint: running again reads nothing new and writes nothing.
    const before = readFileSync(output).length;
    const third = await runKeyway(args);
    expect(third.code).toBe(0);
    expect(readFileSync(output).length).toBe(before);
  });

  it("refuses a data dir whose checkpoint belongs to another app", async () => {
    const dir = scratchDir("datadir-other");
    const dataDir = join(dir, "state");
    const ok = await runKeyway(["run", "examples/word-count/app.ts", "--source", "lines=file:examples/word-count/sample.txt",
      "--sink", `counts=file:${join(dir, "out.txt")}`, "--data-dir", dataDir]);
    expect(ok.code).toBe(0);
    const other = await runKeyway(["run", "test/fixtures/tagged-count.ts", "--source", "in=file:examples/word-count/sample.txt",
      "--sink", `out=file:${join(dir, "out2.txt")}`, "--data-dir", dataDir]);
    expect(other.code).toBe(1);
    expect(other.stderr.trim()).toMatch(/^keyway: error \[BAD_CHECKPOINT\]: checkpoint in .* belongs to app "word-count"/);
  });
});
