/**
 * The sequence-window checker: reads the app's output and proves, per key, that the i-th output
 * is the window ending at i. Usage: node --import tsx examples/validation/check.ts OUTPUT [KEYS N]
 * (with KEYS and N: also that each of KEYS keys reached exactly N). Exit 0 with "ok", or 1 with
 * the first problems found.
 */
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

export interface Verdict {
  ok: boolean;
  keys: number;
  outputs: number;
  problems: string[];
}

const WINDOW = 4;
const PROBLEMS_MAX = 20;

function expectedWindow(i: number): string {
  const from = Math.max(1, i - WINDOW + 1);
  return Array.from({ length: i - from + 1 }, (_, j) => from + j).join(",");
}

/** expected: key -> the count each key must end at, when known. */
export function checkSequenceWindows(output: string, expected?: ReadonlyMap<string, number>): Verdict {
  const last = new Map<string, number>();
  const problems: string[] = [];
  let outputs = 0;
  for (const line of output.split("\n")) {
    if (line === "") continue;
    outputs++;
    const space = line.indexOf(" ");
    const key = line.slice(0, space);
    const window = line.slice(space + 1);
    const i = (last.get(key) ?? 0) + 1;
    if (window !== expectedWindow(i) && problems.length < PROBLEMS_MAX) {
      const got = window.split(",").map(Number);
      const kind = got.at(-1)! > i ? "loss" : got.at(-1)! < i ? "duplication or reordering" : "wrong state";
      problems.push(`key ${key}, output ${i}: window ${window}, expected ${expectedWindow(i)} (${kind})`);
    }
    last.set(key, Math.max(i, Number(window.split(",").at(-1))));
  }
  for (const [key, n] of expected ?? []) {
    if ((last.get(key) ?? 0) !== n && problems.length < PROBLEMS_MAX) problems.push(`key ${key}: reached ${last.get(key) ?? 0}, expected ${n} (loss)`);
  }
  return { ok: problems.length === 0, keys: last.size, outputs, problems };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const [file, keys, n] = process.argv.slice(2);
  if (file === undefined) {
    process.stderr.write("usage: check.ts OUTPUT [KEYS N]\n");
    process.exit(2);
  }
  const expected = keys === undefined ? undefined : new Map(Array.from({ length: Number(keys) }, (_, k) => [`k${k}`, Number(n)]));
  const verdict = checkSequenceWindows(readFileSync(file, "utf8"), expected);
  process.stdout.write(verdict.ok ? `ok: ${verdict.outputs} outputs over ${verdict.keys} keys\n` : `FAILED:\n${verdict.problems.join("\n")}\n`);
  process.exit(verdict.ok ? 0 : 1);
}
