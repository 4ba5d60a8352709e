/**
 * What a connector source's progressAt() returns and commit() and a restore take back: plain,
 * v8-serialisable data, so the engine stores it in checkpoint files as it is.
 */
import { ErrorCode, KeywayError } from "../../errors.ts";

export interface SourceProgress {
  /** Per stream: the last position handed to the pipeline (0 and absent mean none). */
  streams: { [stream: string]: bigint };
  /**
   * Per stream: the connector_name it belongs to (R-SRC-OPEN-OWNER). Absent in checkpoints written
   * before streams had owners: such a stream belongs to the next connector that opens it.
   */
  owners?: { [stream: string]: string };
  /**
   * The idempotency ids handed to the pipeline, oldest first, in chunks (shared between
   * snapshots): the last idempotency_window ids of their concatenation are the window.
   */
  idempotencyIds: string[][];
}

/** Validates progress read back from a checkpoint file (or handed to commit) for source `name`. */
export function parseProgress(name: string, value: unknown): SourceProgress {
  const bad = (what: string) =>
    new KeywayError(ErrorCode.BAD_CHECKPOINT, `the checkpoint's progress for connector source "${name}" is not valid: ${what}`);
  if (typeof value !== "object" || value === null) throw bad("not an object");
  const { streams, owners, idempotencyIds } = value as Partial<SourceProgress>;
  if (typeof streams !== "object" || streams === null) throw bad("no streams");
  for (const [stream, position] of Object.entries(streams)) {
    if (typeof position !== "bigint" || position < 0n) throw bad(`stream "${stream}" has no position`);
  }
  if (owners !== undefined) {
    if (typeof owners !== "object" || owners === null) throw bad("owners is not an object");
    for (const [stream, owner] of Object.entries(owners)) if (typeof owner !== "string") throw bad(`stream "${stream}" has an owner that is not a string`);
  }
  // Chunks, not each id: the window may hold 10^5 ids.
  if (!Array.isArray(idempotencyIds) || !idempotencyIds.every(Array.isArray)) throw bad("no idempotency ids");
  return owners === undefined ? { streams, idempotencyIds } : { streams, owners, idempotencyIds };
}
