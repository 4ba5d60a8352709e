/**
 * The replication bookkeeping of one worker, without sockets. As a primary: numbers what it
 * sends each backup, and tells each backup (on the next replica) how far the outputs of those
 * records have left, so the backup can forget them. As a backup: keeps the outputs its copy
 * produced (the outbox) until the primary says they left; a backup promoted after its primary
 * died sends them again (with their ids, so sinks that keep ids write each once).
 */
import type { Payload, RecordMeta } from "../connector/types.ts";
import type { BatchOut } from "../exchange/grpc-exchange.ts";
import { encodeRecords } from "../exchange/payload.ts";
import type { KeyedBatch, Replica } from "../runtime/dataflow.ts";

/** Outputs a backup's copy produced, kept until its primary says they left. */
export interface OutboxEntry {
  seq: bigint;
  pipeline: number;
  /** The primary's run that produced them: its output reached the sink if the sink's worker saw that run. */
  outputSeq: number;
  values: Payload[];
  ids: string[] | undefined;
  meta?: (RecordMeta | undefined)[];
  /** The slot each value came from. */
  slots: number[];
}

/** How far a worker's output reached the sink's worker, per pipeline: every run up to outputSeq (with `slot`, that slot's part of them). */
export interface OutputsWritten {
  worker: string;
  pipeline: number;
  outputSeq: number;
  slot?: number;
}

/** Per backup: replica numbers handed out, and which of them have had their outputs leave. */
interface Outgoing {
  next: bigint;
  /** Replicas not yet delivered, in order; delivered ones wait at the front until all before them are. */
  open: Array<{ seq: bigint; delivered: boolean }>;
  deliveredThrough: bigint;
}

export interface Replication {
  /** Sends records applied here by run `outputSeq` to the backup `to`. */
  replicate(to: string, epoch: number, pipeline: number, stage: number, batch: KeyedBatch, outputSeq: number): Replica;
  /** A replica arrived from `from`: keeps the outputs the copy produced, forgets those that left. */
  received(from: string, seq: bigint, deliveredThrough: bigint, output: Omit<OutboxEntry, "seq">): void;
  /** Takes every output kept for a primary that died, in order. */
  takeOutbox(from: string): OutboxEntry[];
  /** Outputs kept, over all primaries. */
  outboxRecords(): number;
  /** Forgets a worker that is gone, both ways. */
  forget(worker: string): void;
}

export function createReplication(send: (to: string, batch: BatchOut) => Promise<void>): Replication {
  const outgoing = new Map<string, Outgoing>();
  const outboxes = new Map<string, OutboxEntry[]>();
  let kept = 0;

  const markDelivered = (state: Outgoing, seq: bigint): void => {
    const entry = state.open.find((e) => e.seq === seq);
    if (entry !== undefined) entry.delivered = true;
    while (state.open.length > 0 && state.open[0]!.delivered) state.deliveredThrough = state.open.shift()!.seq;
  };

  return {
    replicate(to, epoch, pipeline, stage, batch, outputSeq) {
      let state = outgoing.get(to);
      if (state === undefined) outgoing.set(to, (state = { next: 1n, open: [], deliveredThrough: 0n }));
      const s = state;
      const seqs: bigint[] = [];
      const acks = encodeRecords(batch).map(({ records, payload }) => {
        const seq = s.next++;
        seqs.push(seq);
        s.open.push({ seq, delivered: false });
        return send(to, { epoch, pipeline, stage, toSink: false, hops: 0, records, payload, outputSeq, replica: { seq, deliveredThrough: s.deliveredThrough } });
      });
      return {
        acked: acks.length === 1 ? acks[0]! : Promise.all(acks).then(() => undefined),
        delivered: () => {
          for (const seq of seqs) markDelivered(s, seq);
        },
      };
    },
    received(from, seq, deliveredThrough, output) {
      let box = outboxes.get(from);
      if (box === undefined) outboxes.set(from, (box = []));
      while (box.length > 0 && box[0]!.seq <= deliveredThrough) kept -= box.shift()!.values.length;
      if (output.values.length === 0) return;
      box.push({ seq, ...output });
      kept += output.values.length;
    },
    takeOutbox(from) {
      const box = outboxes.get(from) ?? [];
      outboxes.delete(from);
      for (const e of box) kept -= e.values.length;
      return box;
    },
    outboxRecords: () => kept,
    forget(worker) {
      outgoing.delete(worker);
      const box = outboxes.get(worker);
      if (box !== undefined) {
        for (const e of box) kept -= e.values.length;
        outboxes.delete(worker);
      }
    },
  };
}

/**
 * The sink's worker's record of how far each worker's replicated output reached it: a run's output
 * arrives whole, in release order, so the highest run seen per worker and pipeline is a prefix.
 * Output a promoted backup resent for a dead worker arrives slot by slot (each slot's from the
 * backup that leads it now), so it is recorded per slot.
 */
export interface OutputLedger {
  record(from: string, pipeline: number, outputSeq: number, slots?: readonly number[]): void;
  /** What reached here from a worker (declared dead). */
  of(worker: string): OutputsWritten[];
}

export function createOutputLedger(): OutputLedger {
  const through = new Map<string, Map<string, OutputsWritten>>();
  const raise = (from: string, pipeline: number, outputSeq: number, slot: number | undefined) => {
    let perKey = through.get(from);
    if (perKey === undefined) through.set(from, (perKey = new Map()));
    const key = slot === undefined ? `${pipeline}` : `${pipeline}/${slot}`;
    const known = perKey.get(key);
    if (known === undefined) perKey.set(key, { worker: from, pipeline, outputSeq, ...(slot === undefined ? {} : { slot }) });
    else if (outputSeq > known.outputSeq) known.outputSeq = outputSeq;
  };
  return {
    record(from, pipeline, outputSeq, slots) {
      if (slots === undefined) raise(from, pipeline, outputSeq, undefined);
      else for (const slot of slots) raise(from, pipeline, outputSeq, slot);
    },
    of(worker) {
      return [...(through.get(worker)?.values() ?? [])].map((w) => ({ ...w }));
    },
  };
}

/** The kept outputs that did not reach the sink's worker: runs past what it recorded, per slot where it was resent by slot. */
export function unwritten(entries: readonly OutboxEntry[], from: string, written: readonly OutputsWritten[]): OutboxEntry[] {
  const mine = written.filter((w) => w.worker === from);
  const whole = new Map(mine.filter((w) => w.slot === undefined).map((w) => [w.pipeline, w.outputSeq]));
  const bySlot = new Map(mine.filter((w) => w.slot !== undefined).map((w) => [`${w.pipeline}/${w.slot}`, w.outputSeq]));
  return entries.flatMap((e) => {
    if (e.outputSeq <= (whole.get(e.pipeline) ?? 0)) return [];
    const rest = bySlot.size === 0 ? e : entryForSlots(e, (slot) => e.outputSeq > (bySlot.get(`${e.pipeline}/${slot}`) ?? 0));
    return rest.values.length === 0 ? [] : [rest];
  });
}

/** Folds fresh ledger figures into `written`, keeping the higher run per worker and pipeline. */
export function mergeWritten(written: OutputsWritten[], fresh: readonly OutputsWritten[]): void {
  for (const f of fresh) {
    const known = written.find((w) => w.worker === f.worker && w.pipeline === f.pipeline && w.slot === f.slot);
    if (known === undefined) written.push({ ...f });
    else known.outputSeq = Math.max(known.outputSeq, f.outputSeq);
  }
}

/** The part of an entry whose slots `keep` says: a promoted backup resends only the slots it now leads. */
export function entryForSlots(entry: OutboxEntry, keep: (slot: number) => boolean): OutboxEntry {
  if (entry.slots.every(keep)) return entry;
  const picked = entry.slots.flatMap((slot, i) => (keep(slot) ? [i] : []));
  const meta = entry.meta === undefined ? {} : { meta: picked.map((i) => entry.meta![i]) };
  return { ...entry, values: picked.map((i) => entry.values[i]!), ids: entry.ids === undefined ? undefined : picked.map((i) => entry.ids![i]!), ...meta, slots: picked.map((i) => entry.slots[i]!) };
}
