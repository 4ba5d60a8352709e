import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { latestCheckpointSeq } from "../src/durability/checkpoint-chain.ts";
import { countWords, generateText, prng } from "./helpers/text.ts";
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

/**
 * Every word of a vocabulary once, then lines whose words come from a window drifting slowly
 * through it: between two checkpoints only part of the keys, and (with enough slots) of the
 * slots, change, so checkpoints are deltas.
 */
function driftingText(lines: number, seed: number, vocabulary = 60_000): string {
  const random = prng(seed);
  const word = (n: number) => `w${(n % vocabulary).toString(36)}`;
  const out: string[] = [];
  for (let n = 0; n < vocabulary; n += 12) out.push(Array.from({ length: 12 }, (_, j) => word(n + j)).join(" "));
  for (let i = 0; i < lines; i++) {
    const words: string[] = [];
    for (let j = 0; j < 12; j++) words.push(word(Math.floor(i / 20) + Math.floor(random() * 3000)));
    out.push(words.join(" "));
  }
  return `${out.join("\n")}\n`;
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
      latestCheckpointSeq(dataDir) !== undefined && existsSync(output) && readFileSync(output).length > 100_000 ? true : undefined);
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

  it("incremental: SIGKILL with a base and deltas on disk under load, restart, exact counts; a clean end leaves only the chain", async () => {
    const dir = scratchDir("datadir-chain");
    const input = join(dir, "in.txt");
    const output = join(dir, "out.txt");
    const dataDir = join(dir, "state");
    const text = driftingText(500_000, 3);
    writeFileSync(input, text);
    // Paced to 20k lines a second (the run lasts over 20 s on any machine), and 65536 slots: an
    // interval touches a few thousand of the 60k words, a small part of the slots.
    const args = ["run", "test/fixtures/paced-word-count.ts", "--source", `lines=file:${input}`, "--sink", `counts=file:${output}`,
      "--data-dir", dataDir, "--checkpoint-interval-ms", "100", "--slots", "65536", "--log-level", "debug"];
    const chainFiles = () => readdirSync(dataDir).filter((n) => /^(base|delta)-\d+\.ckpt$/.test(n)).sort();
    const seqOf = (name: string) => Number(/-(\d+)\./.exec(name)![1]);
    /** The chain a restore must pick from these files: the newest base and the deltas numbered after it. */
    const inForce = (names: string[]) => {
      const base = Math.max(...names.filter((n) => n.startsWith("base-")).map(seqOf));
      const deltas = names.filter((n) => n.startsWith("delta-") && seqOf(n) > base).map(seqOf).sort((a, b) => a - b);
      return { base, deltas };
    };

    const first = startKeyway(args);
    // Freeze the engine (every thread: no file changes while we look), kill it once the chain has
    // a base and at least one delta, else let it go on and look again.
    let seen: string[] = [];
    await waitFor("a checkpoint chain with deltas", async () => {
      if (first.child.exitCode !== null) throw new Error(`the run ended before a delta was on disk (files: ${chainFiles().join(", ")}): the machine is too slow for this test's pace`);
      if (!existsSync(dataDir) || !existsSync(output)) return undefined;
      first.child.kill("SIGSTOP");
      seen = chainFiles();
      if (seen.some((n) => n.startsWith("base-")) && inForce(seen).deltas.length > 0) return true;
      first.child.kill("SIGCONT");
      await new Promise((r) => setTimeout(r, 30));
      return undefined;
    }, 60_000);
    first.child.kill("SIGKILL");
    expect((await first.finished).signal).toBe("SIGKILL");
    const expected = countWords(text);
    const total = [...expected.values()].reduce((a, b) => a + b, 0);
    expect(readFileSync(output, "utf8").split("\n").length - 1).toBeLessThan(total);

    const second = await runKeyway(args);
    expect(second.code).toBe(0);
    // The restart read exactly the chain that was on disk: the base and its deltas, to the last one.
    const restoredLine = second.stderr.split("\n").find((l) => l.includes('"restored checkpoint"'));
    expect(restoredLine).toBeDefined();
    const restored = JSON.parse(restoredLine!) as { checkpoint: number; files: number };
    const chain = inForce(seen);
    expect(restored.checkpoint).toBe(chain.deltas.at(-1));
    expect(restored.files).toBe(1 + chain.deltas.length);
    expect(restored.files).toBeGreaterThan(1);

    const highest = highestCounts(readFileSync(output, "utf8"));
    expect(highest.size).toBe(expected.size);
    for (const [word, n] of expected) {
      if (highest.get(word) !== n) throw new Error(`"${word}": highest count ${highest.get(word)}, expected ${n}`);
    }
    // A clean end waits for any compaction: what is left is one chain, no temporary or superseded file.
    const left = readdirSync(dataDir).sort();
    expect(left).toEqual(chainFiles());
    const bases = left.filter((n) => n.startsWith("base-"));
    expect(bases).toHaveLength(1);
  });
});
