/**
 * What a slot's primary should ship its backups after applying a batch, measured in-process on
 * the same batches for each design (no cluster: the figures are payload size and codec + apply
 * CPU, which processes and sockets would only blur):
 *
 * - inputs (what the engine ships today, src/cluster/replication.ts): the KeyedBatch the keyed
 *   stage applied, through `encodeRecords`; the backup decodes it and re-runs `update` with
 *   `Dataflow.applyReplica`, which also rebuilds the outputs it keeps in its outbox.
 * - state changes: every key the batch touched once, with its state after the batch (as
 *   `exportSlot` writes it: through the stage's codec if any), the marks of the slots touched,
 *   and the batch's outputs with their ids (the backup's outbox needs them and can no longer
 *   compute them); the backup overwrites those keys and marks.
 * - inputs from packed arrays: the first design with the batch's arrays rebuilt packed, which
 *   v8 writes without an index per element (see packedCopy).
 *
 * The apps are the real ones (examples/word-count/app.ts, examples/validation/sequence-window.ts)
 * compiled with `compileDataflow` as the engine compiles them for a replicated cluster (marks on,
 * ids on as a connector sink asks); the primary's `out.replicate` hook captures what it would
 * send. Every batch's outbox on each backup must equal the primary's outputs, and after the
 * last batch every backup must hold the primary's slots (exportSlot, compared by contents), or the
 * benchmark fails.
 */
import { readFileSync } from "node:fs";
import { isDeepStrictEqual } from "node:util";
import { deserialize, serialize } from "node:v8";
import sequenceWindow from "../../examples/validation/sequence-window.ts";
import wordCount from "../../examples/word-count/app.ts";
import type { Key, PipelineSpec } from "../../src/app/spec.ts";
import type { Payload, SourceBatch } from "../../src/connector/types.ts";
import { decodeRecords, encodeRecords } from "../../src/exchange/payload.ts";
import { createKeyHash, slotOfHash } from "../../src/routing/hash.ts";
import { equalRanges } from "../../src/routing/partition-map.ts";
import { compileDataflow, type Dataflow, type KeyedBatch, type StageRun } from "../../src/runtime/dataflow.ts";
import { exportSlot, peekState, putState, type Mark, type StageStore } from "../../src/runtime/state-store.ts";
import type { BenchContext } from "./context.ts";
import { formatCount, type Comparison } from "./report.ts";
import { ratio } from "./stats.ts";
import { createRandom, ensureCorpus } from "./text-gen.ts";
import { CLUSTER_CORPUS, CLUSTER_CORPUS_QUICK } from "./word-count-dir.ts";

const SLOT_COUNT = 4096;
/**
 * The map names only the primary, so every slot is applied here; the hook never resolves the
 * index, it only needs every slot to have a backup for the dataflow to call it.
 */
const BACKUP_TARGETS: readonly number[] = [1];

interface Profile {
  batches: number;
  /** The first batches run, are shipped and checked like the rest, but count in no figure: JIT warm-up. */
  warmup: number;
  linesPerBatch: number;
  sequenceKeys: number;
}

const FULL: Profile = { batches: 200, warmup: 20, linesPerBatch: 1000, sequenceKeys: 100_000 };
const QUICK: Profile = { batches: 40, warmup: 5, linesPerBatch: 1000, sequenceKeys: 100_000 };
const SEQUENCE_SEED = 7;
const MISMATCHES_LISTED = 5;

/** The state-change payload: parallel arrays like KeyedBatch, one entry per distinct key touched. */
interface StateChanges {
  slots: number[];
  keys: Key[];
  /** After the batch, through the stage's codec when it has one. */
  states: unknown[];
  /**
   * The touched slots' marks after the batch, one entry per slot and upstream, as parallel arrays
   * the way KeyedBatch carries marks (v8 writes them flat, without a header per entry).
   */
  markSlots: number[];
  markUpstreams: string[];
  markSeqs: number[];
  markSubs: number[];
  values: Payload[];
  ids: string[] | undefined;
}

interface AppCase {
  label: string;
  pipeline: PipelineSpec;
  /** Source batches in order, shaped as a connector source hands them over (ids, upstreams, seqs). */
  batches: Iterable<SourceBatch>;
  input: string;
}

const DESIGNS = {
  inputs: "inputs",
  inputsPacked: "inputs, packed arrays",
  changes: "state changes",
} as const;
type Design = keyof typeof DESIGNS;

/** Totals over the counted batches. */
interface Side {
  bytes: number;
  encodeMs: number;
  applyMs: number;
  /** Bytes of each part serialised on its own (outside the timing), to see where the bytes go. */
  parts: Record<string, number>;
}

export interface AppResult {
  app: string;
  input: string;
  batches: number;
  countedBatches: number;
  /** Records the keyed stage applied in the counted batches (= outputs: both apps emit one per record). */
  records: number;
  /** Distinct keys touched and slots touched, summed over the counted batches. */
  distinctKeys: number;
  slotsTouched: number;
  keysAtEnd: number;
  /** Counted batches whose replicated arrays v8 wrote in the sparse form, before and after packedCopy. */
  sparseBatches: number;
  sparseAfterPacking: number;
  /** Slots whose exportSlot bytes differ from the primary's though their contents are equal. */
  slotsBytewiseDifferent: Record<Design, number>;
  inputs: Side;
  inputsPacked: Side;
  changes: Side;
  mismatches: string[];
}

function latin1(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString("latin1");
}

/**
 * Gathering the touched keys from the applied batch stands in for the dirty-key tracking the
 * engine would need on its hot path in this design, so its cost is counted as encoding.
 */
function encodeChanges(store: StageStore, input: KeyedBatch, run: StageRun): { payload: Uint8Array; changes: StateChanges } {
  const changes: StateChanges = { slots: [], keys: [], states: [], markSlots: [], markUpstreams: [], markSeqs: [], markSubs: [], values: run.values, ids: run.ids };
  const seenText = new Set<string>();
  const seenBytes = new Set<string>();
  const slotSeen = new Uint8Array(store.slotCount);
  const { keys, hashes } = input;
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!;
    const slot = slotOfHash(hashes[i]!, store.shift);
    if (slotSeen[slot] === 0) {
      slotSeen[slot] = 1;
      for (const [upstream, [seq, sub]] of store.marks[slot] ?? []) {
        changes.markSlots.push(slot);
        changes.markUpstreams.push(upstream);
        changes.markSeqs.push(seq);
        changes.markSubs.push(sub);
      }
    }
    let state: object | undefined;
    if (typeof key === "string") {
      const before = seenText.size;
      if (seenText.add(key).size === before) continue;
      state = peekState(store, input.hashes[i]!, key);
    } else {
      const mapKey = latin1(key);
      const before = seenBytes.size;
      if (seenBytes.add(mapKey).size === before) continue;
      state = peekState(store, input.hashes[i]!, key);
    }
    if (state === undefined) throw new Error(`slot ${slot}: key ${String(key)} was applied but has no state on the primary`);
    changes.slots.push(slot);
    changes.keys.push(key);
    changes.states.push(store.codec === undefined ? state : store.codec.encode(state));
  }
  return { payload: serialize(changes), changes };
}

/** The backup's side: overwrite, never merge (the key hashed again here, as the changes carry slots, not hashes). */
function overwrite(store: StageStore, changes: StateChanges): void {
  const { keys, states } = changes;
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!;
    const state = store.codec === undefined ? (states[i] as object) : store.codec.decode(states[i] as Uint8Array);
    putState(store, store.hashOf(key), key, state);
  }
  const { markSlots, markUpstreams, markSeqs, markSubs } = changes;
  // A slot's marks arrive whole, so they replace what the backup had for it.
  for (let i = 0; i < markSlots.length; i++) store.marks[markSlots[i]!] = undefined;
  for (let i = 0; i < markSlots.length; i++) {
    const slot = markSlots[i]!;
    let marks = store.marks[slot];
    if (marks === undefined) store.marks[slot] = marks = new Map<string, Mark>();
    marks.set(markUpstreams[i]!, [markSeqs[i]!, markSubs[i]!]);
  }
}

function sameOutputs(expected: StageRun, values: Payload[], ids: string[] | undefined): string | null {
  if (values.length !== expected.values.length) return `${values.length} outputs, the primary had ${expected.values.length}`;
  for (let i = 0; i < values.length; i++) {
    if (values[i] !== expected.values[i]) return `output ${i} is ${String(values[i])}, the primary's ${String(expected.values[i])}`;
    if (ids?.[i] !== expected.ids?.[i]) return `output ${i} has id ${String(ids?.[i])}, the primary's ${String(expected.ids?.[i])}`;
  }
  return null;
}

function newSide(): Side {
  return { bytes: 0, encodeMs: 0, applyMs: 0, parts: {} };
}

function addParts(side: Side, parts: Record<string, unknown>): void {
  for (const [name, part] of Object.entries(parts)) side.parts[name] = (side.parts[name] ?? 0) + serialize(part).length;
}

/**
 * The batch with every array rebuilt by push, so V8 keeps it packed. pickRecords builds the
 * replicated batch with Array.prototype.map, whose result TurboFan makes holey once the function
 * is hot, and v8.serialize writes a holey array in its sparse form, an index before every element.
 */
function packedCopy(batch: KeyedBatch): KeyedBatch {
  const packed = <T>(list: readonly T[]): T[] => {
    const out: T[] = [];
    for (let i = 0; i < list.length; i++) out.push(list[i]!);
    return out;
  };
  return {
    keys: packed(batch.keys),
    hashes: packed(batch.hashes),
    values: packed(batch.values),
    lineage: packed(batch.lineage),
    upstreams: packed(batch.upstreams),
    seqs: packed(batch.seqs),
    subs: packed(batch.subs),
  };
}

/** Whether v8 writes the array in its sparse form (tag 'a' after the two header bytes, 0xff and the version). */
function writtenSparse(list: readonly unknown[]): boolean {
  return serialize(list)[2] === 0x61;
}

async function measureApp(c: AppCase, profile: Profile): Promise<AppResult> {
  const hashOf = await createKeyHash();
  const map = equalRanges(SLOT_COUNT, ["w0"], 1);
  const captured: Array<{ stage: number; batch: KeyedBatch }> = [];
  const elsewhere = (): Promise<void> => Promise.reject(new Error("the primary owns every slot; nothing should leave it"));
  const primary = compileDataflow(c.pipeline, {
    hashOf,
    placement: { map, self: 0, replicaTargets: new Array<readonly number[]>(SLOT_COUNT).fill(BACKUP_TARGETS) },
    marking: true,
    out: {
      send: elsewhere,
      hold: elsewhere,
      replicate: (_target, stage, batch) => {
        captured.push({ stage, batch });
        return { acked: Promise.resolve(), delivered: () => {} };
      },
    },
  });
  const backup = (): Dataflow => compileDataflow(c.pipeline, { hashOf, placement: { map, self: 0 }, marking: true });
  const backups: Record<Design, Dataflow> = { inputs: backup(), inputsPacked: backup(), changes: backup() };
  const store = primary.stores[0]!;

  const result: AppResult = {
    app: c.label,
    input: c.input,
    batches: 0,
    countedBatches: 0,
    records: 0,
    distinctKeys: 0,
    slotsTouched: 0,
    keysAtEnd: 0,
    sparseBatches: 0,
    sparseAfterPacking: 0,
    slotsBytewiseDifferent: { inputs: 0, inputsPacked: 0, changes: 0 },
    inputs: newSide(),
    inputsPacked: newSide(),
    changes: newSide(),
    mismatches: [],
  };
  const mismatch = (what: string): void => {
    if (result.mismatches.length < MISMATCHES_LISTED) result.mismatches.push(what);
  };

  for (const source of c.batches) {
    const index = result.batches++;
    const counted = index >= profile.warmup;
    captured.length = 0;
    const run = await primary.process(source, true);
    await Promise.all(run.pending);
    if (captured.length !== 1 || captured[0]!.stage !== 0) throw new Error(`${c.label}: batch ${index} was replicated as ${captured.length} batches, 1 of stage 0 expected`);
    const input = captured[0]!.batch;
    // Copied outside the timing: a fixed pickRecords would build the arrays packed for the same cost.
    const packed = packedCopy(input);

    const add = (design: Design, bytes: number, encodeMs: number, applyMs: number): void => {
      if (!counted) return;
      const side = result[design];
      side.bytes += bytes;
      side.encodeMs += encodeMs;
      side.applyMs += applyMs;
    };
    const shipInputs = (design: "inputs" | "inputsPacked", batch: KeyedBatch): void => {
      const t0 = performance.now();
      const pieces = encodeRecords(batch);
      const t1 = performance.now();
      const outbox: StageRun[] = [];
      for (const { payload } of pieces) outbox.push(backups[design].applyReplica(0, decodeRecords(payload)));
      const t2 = performance.now();
      const values = outbox.length === 1 ? outbox[0]!.values : outbox.flatMap((r) => r.values);
      const ids = outbox.length === 1 ? outbox[0]!.ids : outbox.flatMap((r) => r.ids ?? []);
      const wrong = sameOutputs(run, values, ids);
      if (wrong !== null) mismatch(`${c.label}, batch ${index}, ${DESIGNS[design]}: the backup's outbox differs: ${wrong}`);
      if (outbox.some((r) => r.replays > 0)) mismatch(`${c.label}, batch ${index}, ${DESIGNS[design]}: the backup dropped records as replays`);
      add(design, pieces.reduce((n, p) => n + p.payload.length, 0), t1 - t0, t2 - t1);
    };
    let shipped: StateChanges | undefined;
    const shipChanges = (): void => {
      const t0 = performance.now();
      const { payload, changes } = encodeChanges(store, input, run);
      const t1 = performance.now();
      const received = deserialize(payload) as StateChanges;
      overwrite(backups.changes.stores[0]!, received);
      const t2 = performance.now();
      const wrong = sameOutputs(run, received.values, received.ids);
      if (wrong !== null) mismatch(`${c.label}, batch ${index}, ${DESIGNS.changes}: the backup's outbox differs: ${wrong}`);
      shipped = changes;
      add("changes", payload.length, t1 - t0, t2 - t1);
    };
    const ships = [() => shipInputs("inputs", input), () => shipInputs("inputsPacked", packed), shipChanges];
    // Rotate which goes first, so none always meets another's garbage or the colder cache.
    for (let k = 0; k < ships.length; k++) ships[(index + k) % ships.length]!();
    if (!counted) continue;
    const changes = shipped!;
    result.countedBatches++;
    result.records += input.values.length;
    result.distinctKeys += changes.keys.length;
    result.slotsTouched += new Set(changes.markSlots).size;
    if (writtenSparse(input.keys)) result.sparseBatches++;
    if (writtenSparse(packed.keys)) result.sparseAfterPacking++;
    for (const [design, batch] of [["inputs", input], ["inputsPacked", packed]] as const) {
      addParts(result[design], {
        "keys and hashes": { keys: batch.keys, hashes: batch.hashes },
        values: batch.values,
        lineage: batch.lineage,
        marks: { upstreams: batch.upstreams, seqs: batch.seqs, subs: batch.subs },
      });
    }
    addParts(result.changes, {
      "keys, slots and states": { slots: changes.slots, keys: changes.keys, states: changes.states },
      marks: { slots: changes.markSlots, upstreams: changes.markUpstreams, seqs: changes.markSeqs, subs: changes.markSubs },
      "output values": changes.values,
      "output ids": changes.ids,
    });
  }

  for (const design of Object.keys(DESIGNS) as Design[]) {
    const theirStores = backups[design].stores;
    if (theirStores[0]!.keyCount !== store.keyCount) mismatch(`${c.label}, ${DESIGNS[design]}: the backup holds ${theirStores[0]!.keyCount} keys, the primary ${store.keyCount}`);
    let differing = 0;
    let first = -1;
    for (let slot = 0; slot < SLOT_COUNT; slot++) {
      const ours = exportSlot(primary.stores, slot);
      const theirs = exportSlot(theirStores, slot);
      if (Buffer.compare(ours, theirs) === 0) continue;
      result.slotsBytewiseDifferent[design]++;
      // States that came out of deserialize hold holey arrays, written in the sparse form: the
      // same state in other bytes. Equal contents is what a promoted backup needs.
      if (isDeepStrictEqual(deserialize(ours), deserialize(theirs))) continue;
      differing++;
      if (first < 0) first = slot;
    }
    if (differing > 0) mismatch(`${c.label}, ${DESIGNS[design]}: ${differing} exported slots differ from the primary's (first: slot ${first})`);
  }
  result.keysAtEnd = store.keyCount;
  return result;
}

/** Word-count lines from the corpus, wrapping round when it is shorter than the run; positions are byte offsets, as a file source gives. */
function* corpusBatches(lines: readonly string[], profile: Profile, stream: string): Generator<SourceBatch> {
  let offset = 0;
  let next = 0;
  for (let b = 0; b < profile.batches; b++) {
    const values: string[] = [];
    const recordIds: string[] = [];
    const upstreams: string[] = [];
    const seqs: number[] = [];
    for (let j = 0; j < profile.linesPerBatch; j++) {
      const line = lines[next]!;
      next = (next + 1) % lines.length;
      offset += Buffer.byteLength(line, "utf8") + 1;
      values.push(line);
      recordIds.push(`${stream}@${offset}`);
      upstreams.push(stream);
      seqs.push(offset);
    }
    yield { values, position: BigInt(b + 1), recordIds, upstreams, seqs };
  }
}

/** "k<i> <n>" over random keys of `sequenceKeys`, each key's n counting up from 1; positions numbered per record, as the SDK numbers a queue's. */
function* sequenceBatches(profile: Profile, stream: string): Generator<SourceBatch> {
  const random = createRandom(SEQUENCE_SEED);
  const counts = new Uint32Array(profile.sequenceKeys);
  let position = 0;
  for (let b = 0; b < profile.batches; b++) {
    const values: string[] = [];
    const recordIds: string[] = [];
    const upstreams: string[] = [];
    const seqs: number[] = [];
    for (let j = 0; j < profile.linesPerBatch; j++) {
      const k = Math.floor(random() * profile.sequenceKeys);
      position++;
      values.push(`k${k} ${++counts[k]!}`);
      recordIds.push(`${stream}@${position}`);
      upstreams.push(stream);
      seqs.push(position);
    }
    yield { values, position: BigInt(b + 1), recordIds, upstreams, seqs };
  }
}

const perRecord = (total: number, records: number): number | null => (records === 0 ? null : total / records);

function appRows(r: AppResult): Comparison[] {
  const row = (metric: string, unit: string, inputs: number | null, changes: number | null): Comparison => ({ metric, unit, engine: inputs, baseline: changes, ratio: ratio(inputs, changes), better: "lower" });
  const bytesOf = (s: Side): number | null => perRecord(s.bytes, r.records);
  const usOf = (s: Side): number | null => perRecord((s.encodeMs + s.applyMs) * 1000, r.records);
  const cpu = "CPU per applied record, encode on the primary + decode and apply on the backup";
  return [
    row(`replica payload, ${r.app}: bytes per applied record, inputs (today) vs state changes`, "B", bytesOf(r.inputs), bytesOf(r.changes)),
    row(`replica payload, ${r.app}: ${cpu}, inputs (today) vs state changes`, "us", usOf(r.inputs), usOf(r.changes)),
    row(`replica payload, ${r.app}: bytes per applied record, inputs from packed arrays vs state changes`, "B", bytesOf(r.inputsPacked), bytesOf(r.changes)),
    row(`replica payload, ${r.app}: ${cpu}, inputs from packed arrays vs state changes`, "us", usOf(r.inputsPacked), usOf(r.changes)),
  ];
}

function appNote(r: AppResult): string {
  const per = (total: number, digits: number): string => (perRecord(total, r.records) ?? Number.NaN).toFixed(digits);
  const split = (s: Side): string => `encode ${per(s.encodeMs * 1000, 3)} us + decode and apply ${per(s.applyMs * 1000, 3)} us`;
  const parts = (s: Side): string =>
    Object.entries(s.parts)
      .map(([name, bytes]) => `${name} ${per(bytes, 1)}`)
      .join(", ");
  return (
    `replica payload, ${r.app}: ${r.input}; ${r.countedBatches} of ${r.batches} batches counted, ${r.records} applied records, ` +
    `${(r.distinctKeys / r.records).toFixed(3)} distinct keys and ${(r.slotsTouched / r.records).toFixed(3)} slots touched per record, ${r.keysAtEnd} keys at the end. ` +
    `The replicated batch's arrays were written sparse in ${r.sparseBatches} of ${r.countedBatches} counted batches (${r.sparseAfterPacking} after packing). ` +
    `Per record: inputs ${split(r.inputs)}; inputs from packed arrays ${split(r.inputsPacked)}; state changes ${split(r.changes)} (encode includes gathering the touched keys). ` +
    `Bytes per record by part, each serialised alone: inputs ${parts(r.inputs)}; inputs from packed arrays ${parts(r.inputsPacked)}; state changes ${parts(r.changes)}.`
  );
}

/** Both apps, every design: rows, notes and raw totals for the replication benchmark's report. */
export async function measureReplicaPayload(ctx: BenchContext, errors: string[], notes: string[]): Promise<{ comparisons: Comparison[]; details: Record<string, unknown> }> {
  const profile = ctx.quick ? QUICK : FULL;
  const spec = ctx.quick ? CLUSTER_CORPUS_QUICK : CLUSTER_CORPUS;
  const corpus = ensureCorpus(ctx.dataDir, spec);
  const lines = readFileSync(corpus.path, "utf8").split("\n").filter((line) => line !== "");
  const totalLines = profile.batches * profile.linesPerBatch;
  const cases: AppCase[] = [
    {
      label: "word count",
      pipeline: wordCount,
      batches: corpusBatches(lines, profile, "part-0.txt"),
      input: `examples/word-count/app.ts, ${profile.batches} batches of ${profile.linesPerBatch} lines of the ${(spec.minBytes / 2 ** 20).toFixed(0)} MiB corpus (${lines.length} lines${lines.length < totalLines ? ", wrapping round" : ""}), stream "part-0.txt" at byte offsets`,
    },
    {
      label: "sequence window",
      pipeline: sequenceWindow,
      batches: sequenceBatches(profile, "tcp:127.0.0.1:7000"),
      input: `examples/validation/sequence-window.ts, ${profile.batches} batches of ${profile.linesPerBatch} lines "k<i> <n>" over random keys of ${formatCount(profile.sequenceKeys)} (seeded), each key's n counting up, stream "tcp:127.0.0.1:7000" numbered per record`,
    },
  ];
  const results: AppResult[] = [];
  for (const c of cases) {
    ctx.log(`replication: replica payload, ${c.label}: ${profile.batches} batches of ${profile.linesPerBatch} lines, inputs vs state changes`);
    let r: AppResult;
    try {
      r = await measureApp(c, profile);
    } catch (err) {
      // Thrown here, it would take the replication benchmark's other figures down with it.
      errors.push(`replica payload, ${c.label}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      continue;
    }
    results.push(r);
    for (const m of r.mismatches) errors.push(`REPLICA MISMATCH: ${m}`);
    const [bytes, cpu, packedBytes, packedCpu] = appRows(r).map((row) => row.engine?.toFixed(2) ?? "?");
    const [changesBytes, changesCpu] = appRows(r).map((row) => row.baseline?.toFixed(2) ?? "?");
    ctx.log(
      `replication:   ${r.app}: B/record inputs ${bytes}, packed ${packedBytes}, state changes ${changesBytes}; us/record ${cpu}, ${packedCpu}, ${changesCpu}${r.mismatches.length > 0 ? " (BACKUPS DIFFER)" : ""}`,
    );
  }
  const sparse = results.some((r) => r.sparseBatches > 0);
  notes.push(
    `replica payload: in-process, no cluster. Each app compiled with compileDataflow as a replicated cluster compiles it (4096 slots, marks on, ids on as a connector sink asks: sources give per-record ids, upstreams and seqs as a connector source does); the primary's out.replicate hook captures the KeyedBatch it would send. Records = records the keyed stage applied (one output each). The first ${profile.warmup} batches are JIT warm-up: shipped and checked, not counted; the designs rotate which goes first per batch. The primary's own update is in no figure.`,
    `replica payload, designs: keyway column = inputs, what the engine ships today: encodeRecords of the replicated batch; the backup decodes it and runs Dataflow.applyReplica, which re-runs update and rebuilds the outputs (values and ids) for its outbox. "Inputs from packed arrays": the same, with the batch's arrays copied by push before encoding (the copy not timed), which is what encodeRecords would write if pickRecords built packed arrays: its Array.prototype.map results turn holey once TurboFan has it, and v8.serialize writes holey arrays in the sparse form, an index key before each element${sparse ? " (it did here: see per app)" : " (not seen in this run)"}. baseline column = state changes: each distinct key the batch touched with its state after the batch (through the stage's codec, as exportSlot), the touched slots' marks (slot, upstream, seq, sub: a promoted backup needs them to drop replays), and the batch's outputs with their ids, one node:v8 payload of parallel arrays; the backup overwrites those keys and marks. Its encode time includes gathering the distinct keys from the applied batch, standing in for the dirty-key tracking the engine would need; the inputs' pickRecords copy, made by the dataflow before the hook, is in neither.`,
    ...results.map(appNote),
    `replica payload: after the last batch every backup's store must equal the primary's (every slot as exportSlot writes it, marks included, compared by contents, and the key count), and every batch's outbox (values and ids) the primary's outputs: ${results.every((r) => r.mismatches.length === 0) ? "all equal" : "SOME DIFFERED (see errors)"}. By bytes, the state-change backup's slots differ in ${results.map((r) => `${r.slotsBytewiseDifferent.changes} (${r.app})`).join(", ")} of 4096: states that came out of deserialize hold holey arrays, which exportSlot then writes in the sparse form.`,
  );
  return { comparisons: results.flatMap(appRows), details: { profile, corpus: { ...spec, path: corpus.path, lines: lines.length }, apps: results } };
}
