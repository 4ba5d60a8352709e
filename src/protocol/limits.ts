/**
 * The limits the engine enforces on every connector session (sent in Welcome.limits and
 * DescribeResponse.limits), and the engine-side bounds derived from them.
 */
import { create } from "@bufbuild/protobuf";
import { ErrorCode, KeywayError } from "../errors.ts";
import { LimitsSchema, type Limits } from "./gen/keyway/v1/connector_pb.ts";

export interface ProtocolLimits {
  /** Most records in one RecordBatch, SinkBatch or PartitionBatch. */
  maxBatchRecords: number;
  /** Most bytes in one serialised protocol message, in either direction. */
  maxMessageBytes: number;
  /** Recent idempotency ids remembered per source target to drop duplicates. */
  idempotencyWindow: number;
  /** Most streams one source session may open. */
  maxStreamsPerSession: number;
  /** Most streams a source target tracks, across sessions (each one lives in every checkpoint). */
  maxStreamsPerSource: number;
  /** Most bytes in a stream name (UTF-8). */
  maxStreamNameBytes: number;
}

export const PROTOCOL_LIMITS_DEFAULT: ProtocolLimits = {
  maxBatchRecords: 10_000,
  maxMessageBytes: 16 * 1024 * 1024,
  idempotencyWindow: 100_000,
  // A session serving a directory of files opens one stream a file; beyond this, use more sessions.
  maxStreamsPerSession: 1_000,
  maxStreamsPerSource: 10_000,
  // Long enough for absolute file paths (keyway connector file-source names its stream so), S3 keys
  // (1024) and queue or topic names (255); 10,000 names of it are 10 MiB.
  maxStreamNameBytes: 1_024,
};

/** Each limit's accepted range: the upper bounds keep derived credit counts inside uint32. */
const RANGES: Record<keyof ProtocolLimits, { min: number; max: number; flag: string }> = {
  maxBatchRecords: { min: 1, max: 1_000_000, flag: "--max-batch-records" },
  // Below 1 KiB not even a Hello with a long token fits.
  // Up to 256 MiB: grpc-js is told to receive twice that, so the engine's own check answers first.
  maxMessageBytes: { min: 1024, max: 256 * 1024 * 1024, flag: "--max-message-bytes" },
  idempotencyWindow: { min: 1, max: 10_000_000, flag: "--idempotency-window" },
  maxStreamsPerSession: { min: 1, max: 1_000_000, flag: "--max-streams-per-session" },
  maxStreamsPerSource: { min: 1, max: 1_000_000, flag: "--max-streams-per-source" },
  // At least what "tcp:HOST:PORT" and generated names need; at most what fits a small message.
  maxStreamNameBytes: { min: 64, max: 65_536, flag: "--max-stream-name-bytes" },
};

/**
 * Credits a source session holds at most, in batches of maxBatchRecords: two, so the connector
 * can send the next batch while the engine processes the previous one. This is also the bound
 * on records the engine queues per source session.
 */
export const SOURCE_CREDIT_WINDOW_BATCHES = 2;

/** Records a connector sink buffers (unsent plus unacknowledged) before write() waits, in batches. */
export const SINK_BUFFER_BATCHES = 4;

/**
 * Serialised bytes of a batch message without its records, and the framing a record adds on
 * top of its payload (field tags and length varints): conservative, so a batch built within
 * maxMessageBytes by these counts never exceeds it on the wire.
 */
export const BATCH_OVERHEAD_BYTES = 32;
export const RECORD_OVERHEAD_BYTES = 32;

/** The defaults with the given limits over them (an undefined one keeps its default), range-checked. */
export function resolveLimits(partial: Partial<ProtocolLimits> = {}): ProtocolLimits {
  const limits = { ...PROTOCOL_LIMITS_DEFAULT };
  for (const key of Object.keys(RANGES) as Array<keyof ProtocolLimits>) {
    const { min, max, flag } = RANGES[key];
    const value = partial[key] ?? limits[key];
    limits[key] = value;
    if (!Number.isSafeInteger(value) || value < min || value > max) {
      throw new KeywayError(ErrorCode.USAGE, `${flag} must be an integer from ${min} to ${max}, got ${value}`);
    }
  }
  return limits;
}

export function sourceCreditWindow(limits: ProtocolLimits): number {
  return SOURCE_CREDIT_WINDOW_BATCHES * limits.maxBatchRecords;
}

/**
 * The smallest grant a source session gets back as the pipeline takes its records: a quarter of
 * its window. A Credits message per batch taken would cost as much as the batch's own handling
 * when batches are small; in lumps, the connector still holds three quarters of the window or
 * more whenever the engine keeps up. Less than a lump goes back SOURCE_GRANT_LINGER_MS after the
 * records were taken.
 */
export const SOURCE_GRANT_LINGER_MS = 10;

export function sourceGrantMin(limits: ProtocolLimits): number {
  return Math.max(1, Math.floor(sourceCreditWindow(limits) / 4));
}

export function limitsMessage(limits: ProtocolLimits, maxReplayRecords = 0): Limits {
  return create(LimitsSchema, { ...limits, maxReplayRecords });
}
