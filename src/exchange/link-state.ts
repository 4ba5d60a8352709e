/**
 * The two ends of one exchange link as plain state machines (no sockets, no timers), so the
 * simulator and tests can drive them. A link carries batches from one worker to another in
 * order; each batch has a sequence number, and the receiver acknowledges two cumulative marks:
 * `applied` (its local part ran: state updated) and `done` (its outputs were handed to a sink and
 * its onward records are done too). The sender keeps at most a window of records and bytes sent
 * and not done, which bounds the receiver's memory and slows a fast sender to a slow receiver.
 */
import { deferred } from "../util/deferred.ts";

export interface LinkWindow {
  records: number;
  bytes: number;
}

/**
 * Until the receiver says otherwise. A record is done only once its output reached the sink,
 * which may be back on the sending worker: a round trip through both event loops. At 16,000
 * records two word-count workers waited on it most of the time; at 64,000 (about fifteen source
 * batches' records crossing) they wait little, and draining a link (a slot move waits for it)
 * still takes milliseconds.
 */
export const LINK_WINDOW_DEFAULT: LinkWindow = { records: 64_000, bytes: 8 * 1024 * 1024 };

export interface OutBatch<M> {
  seq: bigint;
  records: number;
  bytes: number;
  message: M;
  resolve: () => void;
  reject: (err: Error) => void;
}

export interface LinkSender<M> {
  /** Queues a batch; the promise settles when the receiver reports it done. */
  enqueue(message: M, records: number, bytes: number): { seq: bigint; done: Promise<void> };
  /** Batches that fit in the window now, in order; they count as sent. */
  takeSendable(): OutBatch<M>[];
  /** A (re)opened link: what the receiver already has, and its window. Unapplied batches are sent again. */
  accepted(applied: bigint, window: LinkWindow): void;
  ack(applied: bigint, done: bigint): void;
  /** Resolves once every batch up to seq has been applied by the receiver. */
  whenApplied(seq: bigint): Promise<void>;
  /** The last sequence number handed out (0 when none). */
  lastSeq(): bigint;
  /** Records queued or sent and not done. */
  backlogRecords(): number;
  /** Records queued and not yet sent: the sender's own buffer, which its producers bound. */
  queuedRecords(): number;
  window(): LinkWindow;
  /** Rejects every batch not done (the receiver is gone for good). */
  fail(err: Error): void;
  /**
   * Gives up every batch not done, in order, without settling them (the receiver died: the
   * caller routes them anew). Nothing more is sent.
   */
  abandon(): OutBatch<M>[];
}

export function createLinkSender<M>(initial: LinkWindow = LINK_WINDOW_DEFAULT): LinkSender<M> {
  let window = initial;
  let nextSeq = 1n;
  let applied = 0n;
  let queued: OutBatch<M>[] = [];
  let sent: OutBatch<M>[] = [];
  let sentRecords = 0;
  let sentBytes = 0;
  let queuedCount = 0;
  const appliedWaiters: Array<{ seq: bigint; resolve: () => void }> = [];

  const release = (): void => {
    for (let i = appliedWaiters.length - 1; i >= 0; i--) {
      if (appliedWaiters[i]!.seq <= applied) appliedWaiters.splice(i, 1)[0]!.resolve();
    }
  };

  return {
    enqueue(message, records, bytes) {
      const seq = nextSeq++;
      const done = deferred<void>();
      queued.push({ seq, records, bytes, message, resolve: () => done.resolve(), reject: (err) => done.reject(err) });
      queuedCount += records;
      return { seq, done: done.promise };
    },
    takeSendable() {
      const out: OutBatch<M>[] = [];
      while (queued.length > 0) {
        const next = queued[0]!;
        // A batch larger than the whole window still goes, alone.
        const fits = sent.length === 0 || (sentRecords + next.records <= window.records && sentBytes + next.bytes <= window.bytes);
        if (!fits) break;
        queued.shift();
        queuedCount -= next.records;
        sent.push(next);
        sentRecords += next.records;
        sentBytes += next.bytes;
        out.push(next);
      }
      return out;
    },
    accepted(receiverApplied, newWindow) {
      window = newWindow;
      if (receiverApplied > applied) {
        applied = receiverApplied;
        release();
      }
      // What the receiver never got goes again, ahead of what was never sent.
      const resend = sent.filter((b) => b.seq > receiverApplied);
      sent = sent.filter((b) => b.seq <= receiverApplied);
      sentRecords = sent.reduce((n, b) => n + b.records, 0);
      sentBytes = sent.reduce((n, b) => n + b.bytes, 0);
      queued = [...resend, ...queued];
      queuedCount = queued.reduce((n, b) => n + b.records, 0);
    },
    ack(newApplied, done) {
      if (newApplied > applied) {
        applied = newApplied;
        release();
      }
      while (sent.length > 0 && sent[0]!.seq <= done) {
        const b = sent.shift()!;
        sentRecords -= b.records;
        sentBytes -= b.bytes;
        b.resolve();
      }
    },
    whenApplied(seq) {
      if (seq <= applied) return Promise.resolve();
      return new Promise((resolve) => appliedWaiters.push({ seq, resolve }));
    },
    lastSeq: () => nextSeq - 1n,
    backlogRecords: () => queuedCount + sentRecords,
    queuedRecords: () => queuedCount,
    window: () => window,
    fail(err) {
      for (const b of [...sent, ...queued]) b.reject(err);
      sent = [];
      queued = [];
      sentRecords = sentBytes = queuedCount = 0;
      // Nothing more will be applied: waiters for a drain must not hang.
      for (const w of appliedWaiters.splice(0)) w.resolve();
    },
    abandon() {
      const open = [...sent, ...queued];
      sent = [];
      queued = [];
      sentRecords = sentBytes = queuedCount = 0;
      for (const w of appliedWaiters.splice(0)) w.resolve();
      return open;
    },
  };
}

export interface LinkReceiver {
  readonly applied: bigint;
  readonly done: bigint;
  /** "next" to process, "duplicate" for a resend of one already received, "gap" for a broken sender. */
  classify(seq: bigint): "next" | "duplicate" | "gap";
  markApplied(seq: bigint): void;
  /** Batches may finish out of order; done advances over the finished prefix. */
  markDone(seq: bigint): void;
  /** Records received and not yet done. */
  backlogRecords(): number;
  track(seq: bigint, records: number): void;
}

export function createLinkReceiver(): LinkReceiver {
  let applied = 0n;
  let done = 0n;
  const finished = new Set<bigint>();
  const open = new Map<bigint, number>();
  let backlog = 0;
  return {
    get applied() {
      return applied;
    },
    get done() {
      return done;
    },
    classify(seq) {
      if (seq <= applied) return "duplicate";
      return seq === applied + 1n ? "next" : "gap";
    },
    track(seq, records) {
      open.set(seq, records);
      backlog += records;
    },
    markApplied(seq) {
      if (seq > applied) applied = seq;
    },
    markDone(seq) {
      const records = open.get(seq);
      if (records !== undefined) {
        open.delete(seq);
        backlog -= records;
      }
      finished.add(seq);
      while (finished.has(done + 1n)) finished.delete(++done);
    },
    backlogRecords: () => backlog,
  };
}
