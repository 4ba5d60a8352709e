/**
 * The sink role (protocol §8): grant the engine a window of credits, write each SinkBatch to the
 * sink, make it durable, ack it, and grant its records' worth of credits again. Batches are
 * written in the order they arrive; while one write is in progress the batches arriving meanwhile
 * queue (at most the credit window) and are written together, with one flush.
 */
import { create } from "@bufbuild/protobuf";
import type { Sink } from "../connector/types.ts";
import type { Logger } from "../log/logger.ts";
import {
  SinkRequestSchema,
  type Hello,
  type SinkBatch,
  type SinkRecord,
  type SinkRequest,
  type SinkResponse,
  type Welcome,
} from "../protocol/gen/keyway/v1/connector_pb.ts";
import { Fifo } from "../util/fifo.ts";
import type { IdWindow } from "./id-window.ts";
import { positiveInteger, resolveConnectOptions, SessionLoop, withTimeout, type ConnectOptions, type RoleHandler, type Session } from "./session.ts";

export type { SinkRecord } from "../protocol/gen/keyway/v1/connector_pb.ts";

export interface SinkOptions extends ConnectOptions {
  /**
   * Records the engine may send ahead of the sink's writes: the memory the sink commits to. It is
   * raised to the engine's max_batch_records when lower (R-SINK-CREDITS-WINDOW: a batch resent
   * whole after a reconnect must always fit).
   */
  creditWindowRecords?: number;
  /**
   * Drop records whose id is in this window, and remember the ids written. With a window the
   * sink writes each output once across redeliveries; without one, at least once. At each Welcome
   * it is grown, if smaller, to the credit window plus limits.maxReplayRecords (R-SINK-REPLAY-WINDOW).
   */
  dedup?: IdWindow;
  /** On abort, how long to wait for the writes in progress before ending the session anyway. */
  drainTimeoutMs?: number;
}

export const SINK_CREDIT_WINDOW_RECORDS_DEFAULT = 1000;
export const SINK_DRAIN_TIMEOUT_MS_DEFAULT = 10_000;

/** One batch handed to a handler: the records not already written (with dedup), in order. */
export interface OutputBatch {
  sequence: bigint;
  records: SinkRecord[];
}

/** Writes a batch durably (resolving only then), for sinks that are not a Keyway `Sink`. */
export type SinkHandler = (batch: OutputBatch) => Promise<void>;

/**
 * Runs until options.signal aborts (then it finishes the writes in progress, acks them and
 * half-closes) or a configuration error (rejects with a ConnectorError). A `Sink` is opened first
 * and closed at the end; a failing write rejects.
 */
export async function runSink(options: SinkOptions, sink: Sink | SinkHandler): Promise<void> {
  const resolved = resolveConnectOptions(options);
  const window = positiveInteger("creditWindowRecords", options.creditWindowRecords ?? SINK_CREDIT_WINDOW_RECORDS_DEFAULT);
  if (typeof sink !== "function") await sink.open({ name: resolved.target, log: resolved.log });
  try {
    const drainTimeoutMs = options.drainTimeoutMs ?? SINK_DRAIN_TIMEOUT_MS_DEFAULT;
    const connection = new SinkConnection(resolved.log, window, options.dedup, sink, drainTimeoutMs);
    const loop = new SessionLoop(resolved, "Sink", connection);
    connection.attach(loop);
    const signal = resolved.signal;
    const stop = (): void => void connection.stop();
    if (signal?.aborted) stop();
    signal?.addEventListener("abort", stop, { once: true });
    try {
      await loop.done;
    } finally {
      signal?.removeEventListener("abort", stop);
    }
  } finally {
    if (typeof sink !== "function") await sink.close();
  }
}

interface Received {
  session: Session<SinkRequest>;
  batch: SinkBatch;
}

class SinkConnection implements RoleHandler<SinkRequest, SinkResponse> {
  private loop!: SessionLoop<SinkRequest, SinkResponse>;
  private session: Session<SinkRequest> | null = null;
  /** Received on the live session and not yet being written. Bounded by the credit window. */
  private readonly received = new Fifo<Received>();
  /** Sequences written on the live session and not yet acked. */
  private unsettled: bigint[] = [];
  private writing: Promise<void> | null = null;
  private stopping = false;
  /** Credits for records written on the live session, not granted again yet, and the least worth a grant. */
  private owed = 0;
  private grantMin = 1;

  constructor(
    private readonly log: Logger,
    private readonly creditWindowRecords: number,
    private readonly dedup: IdWindow | undefined,
    private readonly sink: Sink | SinkHandler,
    private readonly drainTimeoutMs: number,
  ) {}

  attach(loop: SessionLoop<SinkRequest, SinkResponse>): void {
    this.loop = loop;
  }

  hello(hello: Hello): SinkRequest {
    return create(SinkRequestSchema, { kind: { case: "hello", value: hello } });
  }

  welcomed(session: Session<SinkRequest>, welcome: Welcome): void {
    this.session = session;
    this.unsettled = [];
    if (this.stopping) return session.halfClose("the sink is stopping");
    const maxBatch = welcome.limits?.maxBatchRecords ?? 0;
    const credits = Math.max(this.creditWindowRecords, maxBatch);
    this.coverReplay(credits + (welcome.limits?.maxReplayRecords ?? 0));
    // Credits go back in lumps (a Credits message per batch written costs as much as a small
    // batch's own handling), never so late that the engine holds less than max_batch_records of
    // them once what was sent is written (R-SINK-CREDITS-WINDOW).
    this.owed = 0;
    this.grantMin = Math.max(1, Math.min(Math.floor(credits / 4), credits - maxBatch));
    grant(session, credits);
  }

  /** A dedup window must hold every id the engine may send again: the unacked credits and a restart's replay. */
  private coverReplay(ids: number): void {
    const dedup = this.dedup;
    if (dedup === undefined || dedup.capacity >= ids) return;
    this.log.info({ from: dedup.capacity, to: ids }, "dedup window grown to cover what the engine may send again");
    dedup.grow(ids);
  }

  message(session: Session<SinkRequest>, response: SinkResponse): void {
    if (response.kind.case !== "batch") return;
    this.received.push({ session, batch: response.kind.value });
    this.writing ??= this.writeAll().then(
      () => {
        this.writing = null;
      },
      (err: unknown) => {
        this.writing = null;
        this.log.error({ err }, "sink write failed");
        this.loop.fail(err);
      },
    );
  }

  ended(session: Session<SinkRequest>): void {
    if (this.session === session) this.session = null;
    // The engine resends what this session did not ack; writing it now would only duplicate it.
    this.received.clear();
  }

  /**
   * Stops granting credits, finishes writing what was received, acks it and half-closes. A write
   * still stuck after drainTimeoutMs (a downstream that is gone) is left unacked: the session is
   * cancelled and the engine resends those batches to the next session.
   */
  async stop(): Promise<void> {
    this.stopping = true;
    const drained = (async () => {
      while (this.writing !== null) await this.writing;
      return true;
    })();
    if ((await withTimeout(drained, this.drainTimeoutMs)) === true) {
      this.loop.stop("half-close");
    } else {
      this.log.warn({ drainTimeoutMs: this.drainTimeoutMs }, "sink writes still in progress at stop; ending the session without acking them");
      this.loop.stop("cancel");
    }
  }

  private async writeAll(): Promise<void> {
    while (this.received.length > 0) {
      const group = this.received.clear();
      let records = 0;
      for (const { batch } of group) {
        records += batch.records.length;
        const fresh = this.dedup === undefined ? batch.records : batch.records.filter((r) => !this.dedup!.has(r.id));
        if (fresh.length > 0) await this.write(batch.sequence, fresh);
        if (this.dedup !== undefined) for (const record of fresh) this.dedup.add(record.id);
      }
      if (typeof this.sink !== "function") await this.sink.flush();
      const session = group[0]!.session;
      // A session that ended meanwhile gets no ack: the engine resends to the next one, and the
      // dedup window (if any) recognises what was written.
      if (!session.live || session !== this.session) continue;
      for (const { batch } of group) this.unsettled.push(batch.sequence);
      this.ack(session);
      this.owed += records;
      if (!this.stopping && this.owed >= this.grantMin) {
        grant(session, this.owed);
        this.owed = 0;
      }
    }
  }

  private write(sequence: bigint, records: SinkRecord[]): Promise<void> {
    if (typeof this.sink === "function") return this.sink({ sequence, records });
    return this.sink.write(
      records.map((r) => r.value),
      records.map((r) => r.id),
    );
  }

  /**
   * R-SINK-ACK: acks the highest written sequence below every batch still waiting to be written,
   * since an ack settles every batch of the session at or below it (resent batches may arrive
   * with lower sequences than newer ones).
   */
  private ack(session: Session<SinkRequest>): void {
    let waitingMin: bigint | undefined;
    for (let i = 0; i < this.received.length; i++) {
      const sequence = this.received.at(i).batch.sequence;
      if (waitingMin === undefined || sequence < waitingMin) waitingMin = sequence;
    }
    let sequence: bigint | undefined;
    for (const written of this.unsettled) {
      if ((waitingMin === undefined || written < waitingMin) && (sequence === undefined || written > sequence)) sequence = written;
    }
    if (sequence === undefined) return;
    session.write({ $typeName: "keyway.v1.SinkRequest", kind: { case: "ack", value: { $typeName: "keyway.v1.Ack", sequence } } });
    this.unsettled = this.unsettled.filter((written) => written > sequence);
  }
}

function grant(session: Session<SinkRequest>, records: number): void {
  // Plain objects of the messages' shape: create() costs more than their fast encoding.
  session.write({ $typeName: "keyway.v1.SinkRequest", kind: { case: "credits", value: { $typeName: "keyway.v1.Credits", records } } });
}
