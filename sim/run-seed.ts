/**
 * One seed: a cluster of workers in this process on the simulated network and clock, the
 * sequence-window workload, faults drawn from the seed, and the invariants checked after every
 * step. The same seed gives the same run, step for step.
 */
import { toAppSpec } from "../src/app/pipeline.ts";
import type { AppSpec } from "../src/app/spec.ts";
import { ErrorCode, KeywayError } from "../src/errors.ts";
import type { ClusterConfig, EtcdControl } from "../src/cluster/etcd-control.ts";
import { appDigest } from "../src/cluster/membership.ts";
import { startClusterWorker, type ClusterWorker } from "../src/cluster/worker.ts";
import type { Sink, Source } from "../src/connector/types.ts";
import { backupsOf, type PartitionMap } from "../src/routing/partition-map.ts";
import { createSlotOf } from "../src/routing/hash.ts";
import sequenceWindow from "../examples/validation/sequence-window.ts";
import wordCount from "../examples/word-count/app.ts";
import { installClock } from "./clock.ts";
import { describeFault, drawFaults, type Fault, type Mode } from "./faults.ts";
import { createSimLog } from "./log.ts";
import { applyMutation, type Mutation } from "./mutations.ts";
import { createSimEtcd } from "./etcd.ts";
import { createSimNetwork } from "./network.ts";
import { createProcessTable, type SimProcess } from "./processes.ts";
import { createRandom } from "./random.ts";
import { createCheckingSink, createSimSource, drawWorkload, sourceUri, type AppName, type SourceWatch } from "./workload.ts";

export const SLOT_COUNT = 64;
export const FAILURE_TIMEOUT_MS = 1000;
/** Once faults stop, every record is committed within this much simulated time, and every slot has its copies. */
export const LIVENESS_MS = 20_000;
/** Exchange links' window in the simulation: small, so senders wait on receivers. */
const WINDOW_RECORDS = 48;
/** A worker's exchange holds at most this many records: its links' windows, and what one batch and the resends of a failover add. */
const BACKLOG_MAX = 4_000;

export interface SeedOptions {
  seed: number;
  maxSteps: number;
  mode: Mode;
  mutation?: Mutation;
  /** Keep debug lines in the log tail. */
  debug?: boolean;
  /** Logs every map change of this key's slot, on every worker, and the key's outputs. */
  traceKey?: string;
  /** The app every seed runs; by default drawn from the seed. */
  app?: AppName;
  /** Where the coordinator lives: on the first worker for the whole run, or elected through etcd (any worker may die). By default drawn from the seed. */
  control?: ControlPlane;
}

export type ControlPlane = "embedded" | "etcd";

export interface SeedResult {
  seed: number;
  app: AppName;
  control: ControlPlane;
  ok: boolean;
  /** "complete": every output right and every record committed; "state-lost": the run stopped with STATE_LOST (overload mode). */
  outcome: "complete" | "state-lost" | "violation";
  violation?: string;
  schedule: string[];
  steps: number;
  simMs: number;
  outputs: number;
  maxBacklog: number;
  logTail: string[];
}

const apps = new Map<AppName, AppSpec>();
/** Each app's source and sink names, as its module declares them. */
const ENDS: Record<AppName, { source: string; sink: string }> = { "sequence-window": { source: "in", sink: "out" }, "word-count": { source: "lines", sink: "counts" } };

interface SimNode {
  address: string;
  worker: ClusterWorker | undefined;
  started: Promise<unknown>;
  /** Its process: alive, or paused until a time. */
  proc: SimProcess;
  /** Paused or cut off until then: may be declared dead meanwhile. */
  downUntil: number;
  /** Asked to leave: its copies are about to go. */
  leaving: boolean;
}

/** One generator per concern, so drawing more for one leaves the others' draws as they were. */
function drawRandoms(seed: number) {
  const root = createRandom(seed);
  return { work: root.fork(), faults: root.fork(), net: root.fork(), code: root.fork(), shape: root.fork(), app: root.fork(), control: root.fork(), etcd: root.fork() };
}

/** The control plane a seed draws (when none is asked for). */
export function controlOf(seed: number): ControlPlane {
  return drawRandoms(seed).control.chance(0.3) ? "etcd" : "embedded";
}

export async function runSeed(options: SeedOptions): Promise<SeedResult> {
  if (apps.size === 0) {
    apps.set("sequence-window", toAppSpec(sequenceWindow)!);
    apps.set("word-count", toAppSpec(wordCount)!);
  }
  // The hash's WASM compiles on the real event loop, before the clock is faked.
  await createSlotOf(SLOT_COUNT);
  const random = drawRandoms(options.seed);
  const control: ControlPlane = options.control ?? controlOf(options.seed);
  const workload = drawWorkload(random.work, options.app ?? (random.app.chance(0.3) ? "word-count" : "sequence-window"));
  const app = apps.get(workload.app)!;
  const ends = ENDS[workload.app];
  const initialWorkers = random.shape.int(2, 4);
  const replicas = initialWorkers >= 3 && random.shape.chance(0.25) ? 3 : 2;
  const log = createSimLog(options.traceKey === undefined ? 400 : 20_000, options.debug === true);
  const clock = installClock(random.code);
  // Tracking which process runs costs two thirds of the speed (a hook on every promise): it is on
  // where it matters, with etcd, whose coordinator may die or pause and must then decide nothing.
  const faultsUntil = random.faults.int(1500, 4000);
  const faults = drawFaults(random.faults, options.mode, FAILURE_TIMEOUT_MS, faultsUntil);
  // With the embedded coordinator, one pause in four stops the first worker: it must not wake up
  // declaring the others dead. No new draw: a seed's other faults stay as they were.
  const pausesFirst = (f: Fault) => control === "embedded" && f.kind === "pause" && f.pick % 4 === 0;
  const procs = createProcessTable(control === "etcd" || faults.some(pausesFirst));
  const uninstallProcs = procs.install();
  const net = createSimNetwork(random.net, procs);
  const etcd = control === "etcd" ? createSimEtcd({ random: random.etcd.next, app: app.name, processes: { run: (address, fn) => procs.run(procs.of(address), fn), detached: procs.detached } }) : undefined;
  const traceLog = log.logger({ node: "trace" });
  const traceSlot = options.traceKey === undefined ? undefined : (await createSlotOf(SLOT_COUNT))(options.traceKey);
  // With etcd the sinks move with the coordinator: connector sinks, which keep ids and write each once.
  const { sink, check } = createCheckingSink(workload, options.traceKey === undefined ? undefined : (line) => line.startsWith(`${options.traceKey} `) && traceLog.info(`sink: ${line}`), etcd !== undefined);
  const watch: SourceWatch = { regressed: undefined, committed: new Map() };
  const nodes: SimNode[] = [];
  const schedule: string[] = [];
  let stateLost: Error | undefined;
  let violation: string | undefined;
  let steps = 0;
  let maxBacklog = 0;
  const bindingsJson = JSON.stringify({ sources: { [ends.source]: "sim:in" }, sinks: { [ends.sink]: "sim:out" } });

  /** Runs `fn` once the node is up (a paused or cut-off worker later); never if it is gone. */
  const untilUp = (node: SimNode, fn: () => Promise<void>): Promise<void> => {
    if (!node.proc.alive) return new Promise(() => undefined);
    const wait = node.downUntil - Date.now();
    if (wait <= 0) return fn();
    return new Promise((resolve) => setTimeout(resolve, wait)).then(() => untilUp(node, fn));
  };
  const ttlSeconds = Math.max(2, Math.ceil(FAILURE_TIMEOUT_MS / 1000));
  const config: ClusterConfig = { app: app.name, appDigest: appDigest(app), slotCount: SLOT_COUNT, replicas, bindingsJson, finite: false, failureTimeoutMs: FAILURE_TIMEOUT_MS };
  /** As `keyway run --coordinator etcd://` and `keyway worker --coordinator` do before starting the worker. */
  const etcdFor = async (node: SimNode, first: boolean): Promise<{ control: EtcdControl; join: string }> => {
    const client = etcd!.client(node.address, { log: log.logger({ node: node.address }) });
    if (first) await client.createCluster(config);
    else await client.config();
    await client.begin(ttlSeconds);
    if (first) return { control: client, join: "" };
    for (;;) {
      const leader = await client.leader().catch(() => undefined);
      if (leader !== undefined) return { control: client, join: leader.address };
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  };
  const startWorker = (first: boolean): SimNode => {
    const address = `sim-${nodes.length}`;
    const node: SimNode = { address, worker: undefined, started: Promise.resolve(), proc: procs.spawn(address), downUntil: 0, leaving: false };
    nodes.push(node);
    // The sink is one process every worker can reach; a worker that is gone writes nothing more, a paused one later.
    const sinkOf = (): Sink => ({
      ...sink,
      write: (values, ids) => untilUp(node, () => sink.write(values, ids)),
    });
    const started = procs.run(node.proc, async () => {
      const plane = etcd === undefined ? undefined : await etcdFor(node, first);
      return startClusterWorker({
        app,
        log: log.logger({ node: node.address }),
        listen: node.address,
        role: first
          ? { first: { slotCount: SLOT_COUNT, bindingsJson, finite: false, expectedWorkers: initialWorkers, chunkKeys: 6, replicas, failureTimeoutMs: FAILURE_TIMEOUT_MS } }
          : { join: plane?.join ?? nodes[0]!.address },
        transport: net.transport(node.address),
        exchangeWindow: { records: WINDOW_RECORDS, bytes: 1 << 20 },
        ...(plane === undefined ? {} : { etcd: { control: plane.control, config } }),
        connectors: async () => ({
          connectors: {
            sources: new Map<string, Source>(),
            sinks: first || etcd !== undefined ? new Map([[ends.sink, sinkOf()]]) : new Map(),
            sourceFromUri: (uri) => createSimSource(workload, uri, () => node.proc.alive, watch),
            connectorSinks: new Set<string>(etcd === undefined ? [] : [ends.sink]),
          },
        }),
        spreadSources: () => [{ pipeline: 0, uris: Array.from({ length: workload.sources }, (_, i) => sourceUri(i)) }],
        // A worker that lost its etcd lease stops (its process exits); anything else ends the run.
        onStateLost: (err) => {
          // A crashed process decides nothing: its timers still run here, but what they conclude is void.
          if (!node.proc.alive) return;
          if (err instanceof KeywayError && err.code === ErrorCode.FENCED) exited();
          else stateLost ??= err;
        },
      });
    });
    node.started = started;
    started.then(
      (worker) => {
        node.worker = worker;
        if (options.mutation !== undefined) applyMutation(options.mutation, worker);
        // A worker that stops (fenced, told to leave, lost its coordinator) is a process that exited.
        worker.finished.then(exited, exited);
      },
      (err: Error) => {
        schedule.push(`${String(Date.now()).padStart(5)} ms   ${node.address} did not start: ${err.message}`);
        exited();
      },
    );
    function exited() {
      if (!node.proc.alive) return;
      node.proc.alive = false;
      net.crash(node.address);
      etcd?.crash(node.address);
    }
    return node;
  };

  /** The coordinator: the first worker's, or with etcd the elected one's (none while the role changes hands). */
  const coordinator = () => {
    if (etcd === undefined) return nodes[0]!.worker?.coordinator;
    const leader = etcd.keys(`/keyway/${app.name}/leader`)[0];
    if (leader === undefined) return undefined;
    const node = nodes.find((n) => n.proc.alive && n.worker?.id() === (JSON.parse(leader.value) as { id: string }).id);
    return node?.worker?.coordinator;
  };
  const isDown = (n: SimNode) => !n.proc.alive || n.downUntil > Date.now();
  /** Whether every slot keeps a copy on a worker that is up, with `also` down too. */
  const survivable = (also: readonly SimNode[]): boolean => {
    const map = coordinator()?.map();
    if (map === undefined) return false;
    const down = new Set(nodes.filter((n) => isDown(n) || n.leaving || also.includes(n)).map((n) => n.worker?.id()));
    for (let slot = 0; slot < map.slotCount; slot++) {
      const holders = [map.owners[slot]!, ...backupsOf(map, slot)].map((w) => map.workers[w]!);
      if (holders.every((id) => down.has(id))) return false;
    }
    return true;
  };
  /** A live worker; with the embedded coordinator, not the first (it holds the coordinator and the sinks for the whole run). */
  const pickWorker = (pick: number, notCoordinator = false): SimNode | undefined => {
    const leading = coordinator();
    const candidates = nodes.filter((n, i) => (etcd !== undefined || i > 0) && n.worker !== undefined && !isDown(n) && !(notCoordinator && n.worker.coordinator === leading));
    return candidates.length === 0 ? undefined : candidates[pick % candidates.length];
  };

  const apply = (f: Fault): string => {
    switch (f.kind) {
      case "crash":
      case "pause":
      case "partition":
      case "leave": {
        // A leave is asked of the coordinator, which keeps its own process.
        const target = !pausesFirst(f) ? pickWorker(f.pick, f.kind === "leave") : isDown(nodes[0]!) ? undefined : nodes[0];
        if (target === undefined) return "no worker to take";
        if (f.kind !== "leave" && options.mode === "safe") {
          if (!survivable([target])) return `skipped: ${target.worker!.id()} holds the last live copy of a slot`;
        }
        const id = target.worker!.id();
        if (f.kind === "crash") {
          target.proc.alive = false;
          net.crash(target.address);
          etcd?.crash(target.address);
        } else if (f.kind === "pause") {
          target.downUntil = Date.now() + f.forMs;
          target.proc.pausedUntil = target.downUntil;
          net.pause(target.address, target.downUntil);
          etcd?.cut(target.address, target.downUntil);
        } else if (f.kind === "partition") {
          target.downUntil = Date.now() + f.forMs;
          net.cut([target.address], nodes.filter((n) => n !== target).map((n) => n.address), target.downUntil);
          // Every other partition cuts it off from etcd too (no new draw: the seed's other faults stay as they were).
          if (f.pick % 2 === 0) etcd?.cut(target.address, target.downUntil);
        } else {
          target.leaving = true;
          const leading = nodes.find((n) => n.proc.alive && n.worker?.coordinator !== undefined && n.worker.coordinator === coordinator());
          void procs.run(leading?.proc, () => coordinator()?.shrink([id], 0))?.catch((err: Error) => schedule.push(`${String(Date.now()).padStart(5)} ms   leave of ${id} refused: ${err.message}`));
        }
        return id;
      }
      case "crash-two": {
        const a = pickWorker(f.pick);
        const b = pickWorker(f.pick + 1);
        if (a === undefined || b === undefined || a === b) return "fewer than two workers to take";
        for (const n of [a, b]) {
          n.proc.alive = false;
          net.crash(n.address);
          etcd?.crash(n.address);
        }
        return `${a.worker!.id()} and ${b.worker!.id()}`;
      }
      case "break-link":
        return net.breakRandomLink() ? "one link reset" : "no link open";
      case "slow":
        net.slow(f.extraMs, Date.now() + f.forMs);
        return "";
      case "join":
        return startWorker(false).address;
    }
  };

  // Per worker its last epoch, and per epoch the one map it names: epochs only rise, one primary per slot per epoch.
  const lastEpoch = new Map<SimNode, PartitionMap>();
  const mapOfEpoch = new Map<number, string>();
  const fingerprint = (map: PartitionMap) => `${map.owners.join(",")}|${Array.from(map.owners, (o) => map.workers[o]).join(",")}`;
  const checkInvariants = (): string | undefined => {
    if (check.wrong !== undefined) return check.wrong;
    if (watch.regressed !== undefined) return watch.regressed;
    for (const node of nodes) {
      if (!node.proc.alive || node.worker === undefined) continue;
      const map = node.worker.map();
      const before = lastEpoch.get(node);
      if (before !== map) {
        if (before !== undefined && map.epoch < before.epoch) return `${node.worker.id()}: map epoch went back from ${before.epoch} to ${map.epoch}`;
        lastEpoch.set(node, map);
        if (traceSlot !== undefined) {
          const holders = [map.owners[traceSlot]!, ...backupsOf(map, traceSlot)].map((w) => map.workers[w]);
          traceLog.info(`${node.worker.id()} takes epoch ${map.epoch}: slot ${traceSlot} led by ${holders[0]}, copies on ${holders.slice(1).join(", ") || "none"}`);
        }
        if (map.epoch > 0) {
          const print = fingerprint(map);
          const known = mapOfEpoch.get(map.epoch);
          if (known === undefined) mapOfEpoch.set(map.epoch, print);
          else if (known !== print) return `${node.worker.id()}: epoch ${map.epoch} names other primaries than another worker's map of that epoch`;
        }
      }
      const backlog = net.exchangeOf(node.address)?.backlog();
      if (backlog !== undefined) {
        maxBacklog = Math.max(maxBacklog, backlog.out, backlog.in);
        if (backlog.out > BACKLOG_MAX || backlog.in > BACKLOG_MAX) return `${node.worker.id()}: exchange backlog ${backlog.out} out, ${backlog.in} in, above the bound ${BACKLOG_MAX}`;
      }
    }
    return undefined;
  };

  const committedAll = () => Array.from({ length: workload.sources }, (_, i) => watch.committed.get(i) === BigInt(workload.recordsPerSource)).every(Boolean);
  const faultsLast = Math.max(0, ...faults.map((f) => f.at + ("forMs" in f ? f.forMs : 0)));
  // Simulated time at which every initial worker had joined; faults are drawn relative to it.
  let formedAt = Infinity;
  const lastFaultAt = () => formedAt + faultsLast;
  let outcome: SeedResult["outcome"] = "violation";
  let simMs = 0;
  try {
    // As `keyway run --workers N` does: the others start once the first listens. Faults begin once all have joined.
    const first = startWorker(true);
    void first.started.then(() => {
      for (let i = 1; i < initialWorkers; i++) startWorker(false);
      void coordinator()!.waitForWorkers(initialWorkers).then(() => {
        formedAt = Date.now();
        for (const f of faults) setTimeout(() => schedule.push(`${describeFault({ ...f, at: f.at + formedAt })} -> ${apply(f)}`), f.at);
      });
    });
    let replicated = false;
    let complete = false;
    while (violation === undefined) {
      if (steps >= options.maxSteps) {
        violation = `not finished within ${options.maxSteps} steps (${Date.now()} ms simulated); outputs missing: ${check.missing().slice(0, 5).join("; ")}`;
        break;
      }
      if (!(await clock.step())) {
        violation = "no timer left: the cluster is idle before the run is complete";
        break;
      }
      steps++;
      violation = checkInvariants();
      if (violation !== undefined) break;
      if (stateLost !== undefined) {
        if (options.mode === "safe" || !(stateLost instanceof KeywayError) || stateLost.code !== ErrorCode.STATE_LOST) violation = `the run stopped: ${stateLost.message}`;
        else outcome = "state-lost";
        break;
      }
      // Overload can leave no worker at all (each crashed, or stopped on losing its etcd lease): the
      // state is lost with nobody left to say so, and what reached the sink was checked as it came.
      if (options.mode === "overload" && nodes.every((n) => !n.proc.alive)) {
        outcome = "state-lost";
        break;
      }
      complete ||= check.complete() && committedAll();
      if (complete && !replicated) {
        void coordinator()?.replicated().then(() => (replicated = true));
        replicated = coordinator() === undefined;
      }
      if (complete && replicated && Date.now() > lastFaultAt()) {
        outcome = "complete";
        break;
      }
      if (Date.now() > Math.min(lastFaultAt(), 10_000) + LIVENESS_MS) {
        violation = complete
          ? `every record committed, but slots still lack copies ${LIVENESS_MS} ms after the last fault`
          : `liveness: ${LIVENESS_MS} ms after the last fault, outputs missing: ${check.missing().slice(0, 5).join("; ")}${committedAll() ? "" : "; not every record committed"}; exchange backlogs ${nodes
              .filter((n) => n.proc.alive && n.worker !== undefined)
              .map((n) => `${n.worker!.id()} ${JSON.stringify(net.exchangeOf(n.address)?.backlog())}`)
              .join(", ")}`;
      }
    }
  } catch (err) {
    violation = `the simulator failed: ${(err as Error).stack ?? err}`;
  } finally {
    simMs = Date.now();
    uninstallProcs();
    clock.uninstall();
  }
  return {
    seed: options.seed,
    app: workload.app,
    control,
    ok: violation === undefined,
    outcome: violation === undefined ? outcome : "violation",
    ...(violation === undefined ? {} : { violation }),
    schedule: [`${workload.app}, ${control} coordinator, workers ${initialWorkers}, replicas ${replicas}, ${workload.sources} sources of ${workload.recordsPerSource} records over ${workload.keysPerSource} keys each, batches of ${workload.batch} every ${workload.intervalMs} ms`, ...schedule],
    steps,
    simMs,
    outputs: check.outputs,
    maxBacklog,
    logTail: log.tail(),
  };
}
