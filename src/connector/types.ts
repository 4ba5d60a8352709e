/**
 * The one source/sink interface every connector implements: the bundled ones in connectors/,
 * and later the gRPC SDK, so a connector runs in-process or as a separate process unchanged.
 */
import type { Logger } from "../log/logger.ts";

/** A record value as it crosses a connector: text, or raw bytes. */
export type Payload = string | Uint8Array;

/**
 * What a record carries beside its value (the protocol's key, event_time_ms and headers): on a
 * source's records, and on outputs an app made with output().
 */
export interface RecordMeta {
  key?: Payload;
  /** Milliseconds since the Unix epoch; absent when unknown. */
  eventTimeMs?: number;
  headers?: Record<string, string>;
}

/** Output on its way to a sink: values, and (each when present) one id and one metadata entry per value. */
export interface SinkOutput {
  values: Payload[];
  ids?: string[];
  meta?: (RecordMeta | undefined)[];
}

export interface SourceBatch {
  /** Record values in source order; never empty. */
  values: Payload[];
  /**
   * Optional, one per value (undefined for a record with none): for sources whose records carry
   * metadata, given when SourceContext.wantsMeta asked for it.
   */
  meta?: (RecordMeta | undefined)[];
  /**
   * The position just after the batch's last record (for a file, its byte offset). Strictly
   * increasing across batches; resuming from it yields exactly the records after this batch.
   */
  position: bigint;
  /**
   * Optional: one id per record, stable across replays (the protocol's `<stream>@<position>`).
   * Sink record ids derive from it; absent, the engine uses `<position>#<index in batch>`.
   */
  recordIds?: string[];
  /**
   * Optional, with seqs: each record's upstream (a stream of the source) and its position in it
   * (increasing per upstream, stable across replays). Replicated state drops a replayed record
   * by them. Absent, a record's upstream is the source and its place is the batch position.
   */
  upstreams?: string[];
  seqs?: number[];
}

export interface SourceContext {
  /** The source's binding name in the app, for messages and logs. */
  name: string;
  /** Resume after this position (a value a previous batch carried); absent: from the start. */
  resumeFrom?: bigint;
  /** For a source with progressAt(): what it returned for the checkpoint being restored. */
  resumeState?: unknown;
  /** True when commit() comes only after checkpoint files (--data-dir), false when after each batch. */
  checkpointed?: boolean;
  /** The app reads this source's records with their metadata: fill SourceBatch.meta. */
  wantsMeta?: boolean;
  log: Logger;
}

export interface Source {
  /** True when the source ends by itself (a file); false for sources that run until closed. */
  readonly finite: boolean;
  /** Acquires what the source needs (opens the file, binds the port); throws a KeywayError if it cannot. */
  open(ctx: SourceContext): Promise<void>;
  /**
   * The next batch, waiting until records are available. null once the source has ended or was
   * closed. The engine calls read() again only after it has made room, which is the backpressure:
   * a source must hold a bounded amount itself and stop taking input (pause sockets) when full.
   * `maxRecords` is how many records the engine has room for now (the commit-lag bound); a source
   * that cuts batches by other measures (a file's chunks) may return more.
   */
  read(maxRecords?: number): Promise<SourceBatch | null>;
  /**
   * For sources whose progress is more than one position (several streams, an idempotency window):
   * the progress covering every batch up to the one at `position` (a SourceBatch.position), as
   * v8-serialisable data, though read() may have returned later batches since. The engine asks
   * only when it needs it (a checkpoint, a source closed), never for an earlier batch than the
   * last it asked about or committed; it stores it in checkpoints and hands it back as
   * ctx.resumeState. Without it, a source's progress is its last batch position.
   */
  progressAt?(position: bigint): unknown;
  /**
   * At a checkpoint's barrier: the progress to store instead of `upTo` (a value progressAt()
   * returned, or the restored one), without what the source has forgotten since it was taken (a
   * connector source's retired streams); that value then comes back in commit(). Optional.
   */
  prune?(upTo: unknown): unknown;
  /**
   * Everything up to this point is committed: a batch position (without --data-dir, each batch's
   * as it is done), or a value progressAt() or prune() returned (a checkpoint's).
   * A source may acknowledge its upstream up to it.
   */
  commit?(upTo: unknown): void;
  /** Records received and held for read(), for metrics. Optional: sources that hold none omit it. */
  queuedRecords?(): number;
  /** Stops the source; a pending read() resolves null. Idempotent. */
  close(): Promise<void>;
}

export interface SinkContext {
  name: string;
  log: Logger;
}

export interface Sink {
  /** Acquires what the sink needs; throws a KeywayError if it cannot. */
  open(ctx: SinkContext): Promise<void>;
  /**
   * Takes ownership of a batch. Resolves once the sink has room for more; until then the engine
   * writes nothing else to it and reads nothing more from the sources that feed it. `meta`, when
   * given, holds one entry per value: the metadata the app set with output() (sinks without a place
   * for it, files and sockets, ignore it).
   */
  write(values: Payload[], recordIds?: string[], meta?: readonly (RecordMeta | undefined)[]): Promise<void>;
  /** True when the sink needs a stable id per record (it dedups, or forwards them over the protocol). */
  readonly wantsRecordIds?: boolean;
  /** Resolves once every record written so far has left the engine (file written, socket sent). */
  flush(): Promise<void>;
  /**
   * Resolves once every record written so far has been acknowledged by where the sink delivers it
   * (a connector sink: acked by a sink session), whatever is written after. Sinks without acks omit it.
   */
  delivered?(): Promise<void>;
  /** Records accepted by write() and not yet handed to the OS. */
  bufferedRecords(): number;
  /** Flushes what it can and releases resources. Idempotent. */
  close(): Promise<void>;
}
