/**
 * examples/python-partitioner: word count keyed by a partition function in a Python process gives
 * the same counts as the in-app keyBy of examples/word-count, on the same input.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { countWords, generateText } from "../helpers/text.ts";
import { freePort, runKeyway, scratchDir } from "../helpers/process.ts";
import { Processes, requirePython } from "./helpers.ts";

const procs = new Processes();

beforeAll(async () => {
  await requirePython();
});

afterEach(async () => {
  await procs.killAll();
});

/** Each word's output lines, in order: "<word> <n>" must count 1, 2, 3, ... */
function finalCounts(output: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const line of output.split("\n")) {
    if (line === "") continue;
    const space = line.lastIndexOf(" ");
    const word = line.slice(0, space);
    const n = Number(line.slice(space + 1));
    if (n !== (counts.get(word) ?? 0) + 1) throw new Error(`"${word}": count ${n} follows ${counts.get(word) ?? 0}`);
    counts.set(word, n);
  }
  return counts;
}

describe("a partition function in Python", () => {
  it("routes word count to the same counts as the in-app keyBy", async () => {
    const dir = scratchDir("py-partitioner");
    const input = join(dir, "in.txt");
    const text = generateText(200_000, 7);
    writeFileSync(input, text);

    const inApp = await runKeyway(["run", "examples/word-count/app.ts", "--source", `lines=file:${input}`,
      "--sink", `counts=file:${join(dir, "in-app.txt")}`, "--no-progress"]);
    expect(inApp.code, inApp.stderr).toBe(0);

    const port = await freePort();
    const partitioner = procs.python("examples/python-partitioner/partitioner.py", ["--engine", `127.0.0.1:${port}`]);
    const viaPython = await runKeyway(["run", "examples/python-partitioner/app.ts", "--source", `lines=file:${input}`,
      "--sink", `counts=file:${join(dir, "python.txt")}`, "--listen", `127.0.0.1:${port}`, "--no-progress"]);
    expect(viaPython.code, viaPython.stderr).toBe(0);

    const expected = countWords(text);
    const a = finalCounts(readFileSync(join(dir, "in-app.txt"), "utf8"));
    const b = finalCounts(readFileSync(join(dir, "python.txt"), "utf8"));
    expect(a.size).toBe(expected.size);
    expect(b.size).toBe(expected.size);
    for (const [word, n] of expected) {
      if (a.get(word) !== n || b.get(word) !== n) throw new Error(`"${word}": in-app ${a.get(word)}, python ${b.get(word)}, expected ${n}`);
    }
    expect(partitioner.stderr()).not.toMatch(/Traceback/);
  }, 300_000);

  it("keys a directory's words on a cluster of two workers, where the files are read on the worker its sessions attach to", async () => {
    const dir = scratchDir("py-partitioner-cluster");
    mkdirSync(join(dir, "in"));
    let text = "";
    for (const f of [0, 1]) {
      const part = generateText(50_000, 20 + f);
      writeFileSync(join(dir, "in", `part-${f}.txt`), part);
      text += part;
    }
    const port = await freePort();
    const partitioner = procs.python("examples/python-partitioner/partitioner.py", ["--engine", `127.0.0.1:${port}`]);
    const run = await runKeyway(["run", "examples/python-partitioner/app.ts", "--source", `lines=file:${join(dir, "in")}`,
      "--sink", `counts=file:${join(dir, "out.txt")}`, "--listen", `127.0.0.1:${port}`, "--workers", "2", "--no-progress"]);
    expect(run.code, run.stderr).toBe(0);
    const counts = finalCounts(readFileSync(join(dir, "out.txt"), "utf8"));
    expect(counts).toEqual(countWords(text));
    expect(partitioner.stderr()).not.toMatch(/Traceback/);
  }, 300_000);
});
