/**
 * npm run simulate -- [--seed S ... | --seeds N [--from F]] [--steps N] [--mode safe|overload] [--mutation M]
 *
 * Runs seeds of the deterministic cluster simulator; exits 1 if any seed broke an invariant. A
 * failing seed prints its faults, the broken invariant and the workers' last log lines; running
 * it again with --seed replays it exactly. The last line is a summary.
 */
import { Command, InvalidArgumentError, Option } from "commander";
import { MUTATIONS, type Mutation } from "./mutations.ts";
import type { Mode } from "./faults.ts";
import type { AppName } from "./workload.ts";
import { controlOf, runSeed, type ControlPlane, type SeedResult } from "./run-seed.ts";

const count = (name: string) => (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be a whole number`);
  return n;
};

const program = new Command("simulate")
  .description("The deterministic cluster simulator: whole clusters in one process under seeded faults, invariants checked after every step.")
  .option("--seed <n>", "replay a seed (repeatable)", (v: string, prev: number[]) => [...prev, count("--seed")(v)], [] as number[])
  .option("--seeds <n>", "how many seeds to run", count("--seeds"), 100)
  .option("--from <n>", "the first seed of --seeds", count("--from"), 1)
  .option("--steps <n>", "steps per seed at most (a step is one timer or one message delivered)", count("--steps"), 40_000)
  .addOption(new Option("--mode <mode>", "safe: at most R-1 copies of a slot lost at once; overload: more, which must end in STATE_LOST, never a wrong result").choices(["safe", "overload"]).default("safe"))
  .addOption(new Option("--app <name>", "run this app on every seed (default: drawn from the seed)").choices(["sequence-window", "word-count"]))
  .addOption(new Option("--control <plane>", "where the coordinator lives on every seed (default: drawn from the seed)").choices(["embedded", "etcd"]))
  .addOption(new Option("--mutation <name>", "a deliberately broken variant (a negative control)").choices([...MUTATIONS]))
  .option("--until-failure", "stop at the first failing seed", false)
  .option("--verbose", "print every seed's result", false)
  .option("--debug", "keep debug lines in a failing seed's log", false)
  .option("--trace-key <key>", "log every map change of this key's slot and the key's outputs");
program.parse();
const flags = program.opts<{ seed: number[]; seeds: number; from: number; steps: number; mode: Mode; mutation?: Mutation; app?: AppName; control?: ControlPlane; untilFailure: boolean; verbose: boolean; debug: boolean; traceKey?: string }>();

const asked = flags.seed.length > 0 ? flags.seed : Array.from({ length: flags.seeds }, (_, i) => flags.from + i);
// Seeds on etcd track processes with AsyncLocalStorage, which slows every later seed of this
// process too (Node keeps its promise hook on): they run last.
const onEtcd = (seed: number) => (flags.control ?? controlOf(seed)) === "etcd";
const seeds = [...asked.filter((s) => !onEtcd(s)), ...asked.filter(onEtcd)];
const replay = (seed: number) => ["npm run simulate --", `--seed ${seed}`, ...(flags.app === undefined ? [] : [`--app ${flags.app}`]), ...(flags.control === undefined ? [] : [`--control ${flags.control}`]), ...(flags.mode === "safe" ? [] : [`--mode ${flags.mode}`]), ...(flags.mutation === undefined ? [] : [`--mutation ${flags.mutation}`])].join(" ");

function report(r: SeedResult): void {
  const out = process.stdout;
  out.write(`seed ${r.seed} FAILED after ${r.steps} steps (${r.simMs} ms simulated): ${r.violation}\n`);
  out.write(`  run and faults:\n${r.schedule.map((l) => `    ${l}\n`).join("")}`);
  out.write(`  log, last lines:\n${r.logTail.slice(flags.debug || flags.traceKey !== undefined ? 0 : -60).map((l) => `    ${l}\n`).join("")}`);
  out.write(`  replay: ${replay(r.seed)}\n`);
}

const started = performance.now();
const results: SeedResult[] = [];
for (const seed of seeds) {
  const r = await runSeed({ seed, maxSteps: flags.steps, mode: flags.mode, ...(flags.mutation === undefined ? {} : { mutation: flags.mutation }), ...(flags.app === undefined ? {} : { app: flags.app }), ...(flags.control === undefined ? {} : { control: flags.control }), debug: flags.debug, ...(flags.traceKey === undefined ? {} : { traceKey: flags.traceKey }) });
  results.push(r);
  if (!r.ok) report(r);
  else if (flags.verbose || flags.seed.length > 0) process.stdout.write(`seed ${seed} ok (${r.app}, ${r.control}): ${r.outcome}, ${r.steps} steps, ${r.simMs} ms simulated, ${r.outputs} outputs, backlog at most ${r.maxBacklog}\n`);
  if (!r.ok && flags.untilFailure) break;
}
const minutes = (performance.now() - started) / 60_000;
const failed = results.filter((r) => !r.ok);
const steps = results.reduce((n, r) => n + r.steps, 0);
const lost = results.filter((r) => r.outcome === "state-lost").length;
process.stdout.write(
  `simulate: ${results.length} seeds, ${results.length - failed.length} passed, ${failed.length} failed` +
    `${failed.length > 0 ? ` (first failing seed ${failed[0]!.seed})` : ""}; ${results.length - failed.length - lost} complete, ${lost} ended in STATE_LOST; ` +
    `${steps} steps, ${Math.round(results.reduce((n, r) => n + r.simMs, 0) / Math.max(1, results.length))} ms simulated per seed; ${Math.round(results.length / Math.max(minutes, 1e-9))} seeds/min\n`,
);
process.exitCode = failed.length > 0 ? 1 : 0;
