import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { countWords, generateText } from "./helpers/text.ts";
import { runKeyway, scratchDir } from "./helpers/process.ts";

/** Checks that each word's output lines carry 1..n in order and n is the independent count. */
function checkRunningCounts(output: string, expected: Map<string, number>): void {
  const seen = new Map<string, number>();
  let lines = 0;
  for (const line of output.split("\n")) {
    if (line === "") continue;
    lines++;
    const space = line.lastIndexOf(" ");
    const word = line.slice(0, space);
    const count = Number(line.slice(space + 1));
    const previous = seen.get(word) ?? 0;
    if (count !== previous + 1) throw new Error(`"${word}": count ${count} follows ${previous}`);
    seen.set(word, count);
  }
  expect(seen.size).toBe(expected.size);
  for (const [word, n] of expected) {
    if (seen.get(word) !== n) throw new Error(`"${word}": engine counted ${seen.get(word)}, expected ${n}`);
  }
  expect(lines).toBe([...expected.values()].reduce((a, b) => a + b, 0));
}

describe("word count through `keyway run`", () => {
  it("counts a file of over a million words exactly, each word's counts 1..n in order", async () => {
    const dir = scratchDir("wc");
    const text = generateText(1_200_000, 7);
    const input = join(dir, "in.txt");
    const output = join(dir, "out.txt");
    writeFileSync(input, text);
    const expected = countWords(text);
    expect([...expected.values()].reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(1_000_000);

    const result = await runKeyway(["run", "examples/word-count/app.ts", "--source", `lines=file:${input}`, "--sink", `counts=file:${output}`]);
    expect(result.stderr).toMatch(/keyway: done in .* records in/);
    expect(result.code).toBe(0);
    checkRunningCounts(readFileSync(output, "utf8"), expected);
  });

  it("runs the shipped sample with bindings from a config file", async () => {
    const dir = scratchDir("wc-config");
    const output = join(dir, "out.txt");
    const config = join(dir, "bindings.json");
    writeFileSync(config, JSON.stringify({ sources: { lines: "file:examples/word-count/sample.txt" }, sinks: { counts: `file:${output}` } }));
    const result = await runKeyway(["run", "examples/word-count/app.ts", "--config", config]);
    expect(result.code).toBe(0);
    const out = readFileSync(output, "utf8");
    expect(out.startsWith("it 1\nwas 1\nthe 1\nbest 1\nof 1\ntimes 1\nit 2\nwas 2\nthe 2\nworst 1\n")).toBe(true);
    checkRunningCounts(out, countWords(readFileSync("examples/word-count/sample.txt", "utf8")));
  });
});
