/** Shared set-ups for cluster tests: status over the CLI, word-count corpora and checks, a steady TCP load. */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { expect } from "vitest";
import { checkSequenceWindows } from "../../examples/validation/check.ts";
import { runKeyway, startKeyway, waitFor, type Running } from "./process.ts";
import { countWords, generateText } from "./text.ts";

export interface WorkerView {
  id: string;
  address: string;
  connectorAddress: string;
  coordinator: boolean;
  data: boolean;
  reachable: boolean;
  slots: number;
  backups: number;
  pid: number;
  keys: number;
  connectorSessions: number;
  sources: string[];
  backlogOut: number;
  backlogIn: number;
}

export interface ClusterStatus {
  app: string;
  epoch: number;
  slotCount: number;
  replicas: number;
  underReplicated: number;
  fenced: string[];
  workers: WorkerView[];
}

export async function clusterStatus(address: string, token?: string): Promise<ClusterStatus> {
  const result = await runKeyway(["cluster", "status", "--address", address, "--json", ...(token === undefined ? [] : ["--token", token])]);
  if (result.code !== 0) throw new Error(`cluster status failed: ${result.stderr}`);
  return JSON.parse(result.stdout) as ClusterStatus;
}

/** Each word's output lines, in order: the per-word sequence the engine must keep on any worker count. */
export function perWord(output: string): Map<string, string[]> {
  const groups = new Map<string, string[]>();
  for (const line of output.split("\n")) {
    if (line === "") continue;
    const word = line.slice(0, line.lastIndexOf(" "));
    let list = groups.get(word);
    if (list === undefined) groups.set(word, (list = []));
    list.push(line);
  }
  return groups;
}

/** A corpus split over a directory of files (`words` each, or a size per file), and its exact word counts. */
export function corpus(dir: string, files: number, words: number | number[]): Map<string, number> {
  const inputs = join(dir, "in");
  mkdirSync(inputs);
  let text = "";
  for (let f = 0; f < files; f++) {
    const part = generateText(typeof words === "number" ? words : words[f]!, 11 + f);
    writeFileSync(join(inputs, `part-${f}.txt`), part);
    text += part;
  }
  return countWords(text);
}

/** Output lines "word n" end at each word's total, and run 1..n in order per word: each count once. */
export function expectExact(output: string, counts: Map<string, number>): void {
  const groups = perWord(output);
  expect(groups.size).toBe(counts.size);
  // One assertion over every line: an expect per line took 20 s for two million lines.
  const wrong: string[] = [];
  for (const [word, lines] of groups) {
    if (lines.length !== counts.get(word)) wrong.push(`"${word}": ${lines.length} lines, expected ${counts.get(word)}`);
    const at = lines.findIndex((line, i) => line !== `${word} ${i + 1}`);
    if (at >= 0) wrong.push(`"${word}": line ${at + 1} is "${lines[at]}"`);
    if (wrong.length >= 10) break;
  }
  expect(wrong).toEqual([]);
}

/** Sequence-window input over TCP: `keys` keys (named prefix + index) counting up, a small batch every few milliseconds. */
export async function steadyLoad(port: number, keys: number, perTick = 200, tickMs = 5, prefix = "k", from?: readonly number[]) {
  const next = from === undefined ? new Array<number>(keys).fill(0) : [...from];
  let sent = 0;
  const socket = await waitFor("a TCP source listening", () =>
    new Promise<Socket | undefined>((resolve) => {
      const s = connect(port, "127.0.0.1");
      s.once("connect", () => resolve(s));
      s.once("error", () => resolve(undefined));
    }));
  let loading = true;
  const loop = (async () => {
    while (loading) {
      let chunk = "";
      for (let j = 0; j < perTick; j++) {
        const k = (sent + j) % keys;
        chunk += `${prefix}${k} ${++next[k]!}\n`;
      }
      sent += perTick;
      if (!socket.write(chunk)) await new Promise((r) => socket.once("drain", r));
      await new Promise((r) => setTimeout(r, tickMs));
    }
  })();
  return {
    sent: () => sent,
    /** Where each key stands, for a load that carries on from here. */
    counts: () => [...next],
    expected: () => new Map(next.map((n, k) => [`${prefix}${k}`, n] as [string, number])),
    async stop() {
      loading = false;
      await loop;
      socket.end();
    },
  };
}

export const lineCount = (path: string) => (existsSync(path) ? readFileSync(path, "utf8").split("\n").length - 1 : 0);
export const errors = (stderr: string) => stderr.split("\n").filter((l) => l.includes('"level":50'));

/** Every data worker alive, each slot with its copies: what the cluster returns to after a loss. */
export async function settled(address: string, workers: number, fenced: string[]): Promise<ClusterStatus> {
  return waitFor(`${workers} workers with every slot's copies, ${fenced.join(", ")} fenced`, async () => {
    const s = await clusterStatus(address).catch(() => undefined);
    if (s === undefined || s.workers.length !== workers || s.underReplicated !== 0) return undefined;
    if (!fenced.every((id) => s.fenced.includes(id))) return undefined;
    if (s.workers.reduce((n, w) => n + w.slots, 0) !== s.slotCount) return undefined;
    return s;
  }, 60_000);
}

/** Stops the load, waits for every record's output, and checks every window is right and each output there once. */
export async function expectEveryWindowOnce(load: Awaited<ReturnType<typeof steadyLoad>>, output: string): Promise<void> {
  await load.stop();
  await waitFor("every record at the sink", () => (lineCount(output) >= load.sent() ? true : undefined), 120_000);
  const verdict = checkSequenceWindows(readFileSync(output, "utf8"), load.expected());
  expect(verdict.problems).toEqual([]);
  expect(verdict.outputs).toBe(load.sent());
}

/** SIGTERM ends the run cleanly: exit 0 and no error logged. */
export async function expectCleanExit(engine: Running): Promise<void> {
  engine.child.kill("SIGTERM");
  const finished = await engine.finished;
  expect(finished.code, finished.stderr).toBe(0);
  expect(errors(finished.stderr)).toEqual([]);
}

/** One file-source connector per corpus file (in/part-N.txt), each its own instance. */
export function startFileSources(dir: string, engines: string, files: number): Running[] {
  return Array.from({ length: files }, (_, f) =>
    startKeyway(["connector", "file-source", "--engine", engines, "--target", "lines", "--path", join(dir, "in", `part-${f}.txt`), "--instance-id", `reader-${f}`]));
}

/** Every source read its file to the end, and the sink holds every count once: the totals of `counts`, exactly. */
export async function expectEveryCountOnce(sources: Running[], output: string, counts: Map<string, number>): Promise<void> {
  for (const source of sources) {
    const finished = await source.finished;
    expect(finished.code, finished.stderr).toBe(0);
  }
  const total = [...counts.values()].reduce((a, b) => a + b, 0);
  await waitFor("every count at the sink", () => (lineCount(output) >= total ? true : undefined), 120_000);
  expect(lineCount(output)).toBe(total);
  expectExact(readFileSync(output, "utf8"), counts);
}
