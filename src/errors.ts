/**
 * Every failure the engine reports to a user carries a code from this closed set, so callers
 * (the CLI, tests, later the gRPC protocol) can act on it without parsing messages.
 */
export const ErrorCode = {
  /** A command-line or config argument is malformed or missing. */
  USAGE: "USAGE",
  /** A connector URI cannot be parsed or names an unknown scheme. */
  BAD_URI: "BAD_URI",
  /** A binding names a source or sink the app does not have. */
  UNKNOWN_NAME: "UNKNOWN_NAME",
  /** The app reads a source or writes a sink that has no binding. */
  UNBOUND_NAME: "UNBOUND_NAME",
  /** The app module cannot be loaded or exports no pipeline or app. */
  BAD_APP: "BAD_APP",
  /** A file a connector needs does not exist or cannot be opened. */
  FILE_NOT_FOUND: "FILE_NOT_FOUND",
  /** A sink could not write its output (a full disk, a path that takes no writes). */
  WRITE_FAILED: "WRITE_FAILED",
  /** A listening connector cannot bind its address. */
  PORT_IN_USE: "PORT_IN_USE",
  /** A frame is longer than the configured limit. */
  FRAME_TOO_LARGE: "FRAME_TOO_LARGE",
  /** Bytes that do not decode as the framing or encoding promises. */
  MALFORMED: "MALFORMED",
  /** A data dir's checkpoint cannot be read, or was written by a different app or slot count. */
  BAD_CHECKPOINT: "BAD_CHECKPOINT",
  /** A worker of the cluster stopped answering, or left while it held what others needed. */
  WORKER_LOST: "WORKER_LOST",
  /** A worker was declared dead (it missed heartbeats) and fenced: its requests are refused, and it exits. */
  FENCED: "FENCED",
  /** Every copy of some slots was lost at once (more workers than replicas - 1): the run cannot go on correctly. */
  STATE_LOST: "STATE_LOST",
  /** A service the cluster depends on (etcd) cannot be reached. */
  UNAVAILABLE: "UNAVAILABLE",
  /** Records or a map change named a partition-map epoch the worker cannot act on. */
  EPOCH_MISMATCH: "EPOCH_MISMATCH",
  /** A cluster call without the cluster token. */
  UNAUTHENTICATED: "UNAUTHENTICATED",
  /** A wait passed its deadline (a checkpoint, a shutdown); the message says what it waited for. */
  TIMED_OUT: "TIMED_OUT",
  /** A function of the app threw on a record; the message names the pipeline, stage, position and key. */
  RECORD_FAILED: "RECORD_FAILED",
  /** An invariant of the engine broke: a bug, never a user error. */
  INTERNAL: "INTERNAL",
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class KeywayError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "KeywayError";
    this.code = code;
  }
}

export function isKeywayError(err: unknown): err is KeywayError {
  return err instanceof KeywayError;
}
