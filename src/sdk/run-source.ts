/**
 * runSource: runs a source to completion over the protocol. It takes either one of Keyway's
 * in-process `Source`s (so every bundled source runs as its own process unchanged) or a producer
 * function driving a push-style SourceClient.
 *
 * A `Source` hands out batches with one position per batch (for a file, the byte offset after
 * the batch), while the protocol needs one per record, and the engine may resume in the middle
 * of a batch. So the adapter numbers records itself:
 * - replayable sources (default: finite ones, like files) number records 1, 2, 3... from the
 *   start of their input. The numbering depends only on the input, never on how it was chunked
 *   into batches, so it survives a restart: the source is read again from its start and records
 *   at or below resume_after are skipped without being sent. A restart costs a re-read of the
 *   input up to the resume point.
 * - queue-style sources (default: unbounded ones, like a TCP listener) cannot be re-read; their
 *   records are numbered on from resume_after + 1 and the replay buffer covers reconnects.
 */
import type { Source } from "../connector/types.ts";
import { silentLogger, type Logger } from "../log/logger.ts";
import { Fifo } from "../util/fifo.ts";
import { DRAIN_TIMEOUT_MS_DEFAULT, startSourceClient, type SendOptions, type SourceClient, type SourceOptions } from "./source.ts";

export interface RunSourceOptions extends SourceOptions {
  /**
   * The stream to send on. The engine keeps positions per stream name, so it must stay the same
   * across restarts of the connector. Default: the target name.
   */
  stream?: string;
  /** Whether the Source reads the same records again from its start when reopened. Default: source.finite. */
  replayable?: boolean;
  /** On abort, how long to wait for the engine to commit what was sent before ending the session. */
  drainTimeoutMs?: number;
}

/** A push-style source: sends through the client until it is done or the signal aborts. */
export type SourceProducer = (client: SourceClient, signal: AbortSignal) => Promise<void>;

/**
 * Resolves when a finite source has ended and the engine has committed all of it (StreamEnded),
 * when a producer has returned, or after options.signal aborted and what was sent is drained.
 * Rejects with a ConnectorError on a configuration error, or with the source's own failure.
 */
export async function runSource(options: RunSourceOptions, source: Source | SourceProducer): Promise<void> {
  const signal = options.signal ?? new AbortController().signal;
  const drainTimeoutMs = options.drainTimeoutMs ?? DRAIN_TIMEOUT_MS_DEFAULT;
  if (typeof source === "function") {
    const client = await connect(options, signal, drainTimeoutMs);
    if (client === null) return;
    // Closing on abort abandons a send the producer may be blocked in; the client still drains.
    const stop = (): void => void client.close({ drainTimeoutMs });
    signal.addEventListener("abort", stop, { once: true });
    try {
      await source(client, signal);
    } catch (err) {
      if (!signal.aborted) throw err;
    } finally {
      signal.removeEventListener("abort", stop);
      await client.close({ drainTimeoutMs });
    }
    return;
  }
  const log = options.log ?? silentLogger();
  const stream = options.stream ?? options.target;
  const replayable = options.replayable ?? source.finite;
  let client: SourceClient | null = null;
  // Stopping closes the source (ending a read that may never return) and the client (abandoning a
  // send that waits for room in a full buffer while no engine commits); the client still drains.
  const stop = (): void => {
    void source.close();
    void client?.close({ drainTimeoutMs });
  };
  signal.addEventListener("abort", stop, { once: true });
  try {
    // A replayable source needs no resume point to open, so a missing file fails before dialling.
    if (replayable) await source.open({ name: stream, log });
    client = await connect(options, signal, drainTimeoutMs);
    if (client === null || signal.aborted) return;
    // A configuration error ends the client; closing the source ends its read too.
    client.done.catch(() => void source.close());
    await pump(source, client, signal, { log, stream, replayable });
  } catch (err) {
    // After an abort, a failure is the abandoned send or read the stop caused.
    if (!signal.aborted) throw err;
  } finally {
    signal.removeEventListener("abort", stop);
    await source.close();
    await client?.close({ drainTimeoutMs });
  }
}

/**
 * A client once the engine has welcomed it, or null if the signal aborted first. The client is
 * given no signal of its own: runSource stops the source first, then drains and closes it.
 */
async function connect(options: RunSourceOptions, signal: AbortSignal, drainTimeoutMs: number): Promise<SourceClient | null> {
  const { client, welcomed } = startSourceClient({ ...options, signal: undefined });
  const abandon = (): void => void client.close({ drainTimeoutMs });
  signal.addEventListener("abort", abandon, { once: true });
  if (signal.aborted) abandon();
  try {
    await welcomed;
    return client;
  } catch (err) {
    // Stopped while still dialling: nothing was sent, so there is nothing to drain.
    if (signal.aborted) return null;
    throw err;
  } finally {
    signal.removeEventListener("abort", abandon);
  }
}

async function pump(
  source: Source,
  client: SourceClient,
  signal: AbortSignal,
  { log, stream, replayable }: { log: Logger; stream: string; replayable: boolean },
): Promise<void> {
  const { resumeAfter } = await client.open(stream);
  if (!replayable) await source.open({ name: stream, log, ...(resumeAfter === 0n ? {} : { resumeFrom: resumeAfter }) });
  log.info({ stream, resumeAfter: resumeAfter.toString(), replayable }, "source opened");

  // Batches whose records are not all committed, to tell the Source what it may acknowledge.
  // Bounded by the replay buffer: each holds at least one buffered record until committed.
  const uncommitted = new Fifo<{ lastPosition: bigint; upTo: unknown }>();
  const commit = source.commit?.bind(source);
  if (commit !== undefined) {
    client.onCommitted((committedStream, position) => {
      if (committedStream !== stream) return;
      let upTo: unknown;
      let covered = false;
      for (let head = uncommitted.peek(); head !== undefined && head.lastPosition <= position; head = uncommitted.peek()) {
        upTo = uncommitted.shift()!.upTo;
        covered = true;
      }
      if (covered) commit(upTo);
    });
  }

  let ordinal = 0n;
  for (let batch = await source.read(); batch !== null; batch = await source.read()) {
    let lastPosition: bigint | undefined;
    for (let i = 0; i < batch.values.length; i++) {
      const sendOptions: SendOptions = {};
      const id = batch.recordIds?.[i];
      if (id !== undefined) sendOptions.idempotencyId = id;
      if (replayable) {
        ordinal++;
        if (ordinal <= resumeAfter) continue;
        sendOptions.position = ordinal;
      }
      lastPosition = await client.send(stream, batch.values[i]!, sendOptions);
    }
    if (commit !== undefined && lastPosition !== undefined) {
      uncommitted.push({ lastPosition, upTo: batch.position });
    }
  }
  if (signal.aborted || !source.finite) return;
  const lastPosition = await client.end(stream);
  log.info({ stream, lastPosition: lastPosition.toString() }, "source ended; the engine committed all of it");
}
