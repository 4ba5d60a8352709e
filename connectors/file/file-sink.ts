/**
 * `file:PATH` as a sink: appends each record as one line. A batch becomes one buffer and one
 * write; the write stream coalesces queued buffers into one writev when the disk is slower.
 */
import { once } from "node:events";
import type { WriteStream } from "node:fs";
import { mkdir, open as openFile } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { dirname } from "node:path";
import { finished } from "node:stream/promises";
import type { Payload, Sink, SinkContext } from "../../src/connector/types.ts";
import { ErrorCode, KeywayError } from "../../src/errors.ts";
import { encodeNewlineFrames } from "../tcp/framing.ts";

export interface FileSinkOptions {
  /** Bytes queued for the disk above which write() waits for them to drain. */
  highWaterBytes?: number;
}

export const DEFAULT_HIGH_WATER_BYTES = 1024 * 1024;

export function fileSink(path: string, opts: FileSinkOptions = {}): Sink {
  const highWaterBytes = opts.highWaterBytes ?? DEFAULT_HIGH_WATER_BYTES;
  if (!Number.isSafeInteger(highWaterBytes) || highWaterBytes < 1) {
    throw new KeywayError(ErrorCode.USAGE, `highWaterBytes must be a positive integer, got ${highWaterBytes}`);
  }
  return new FileSink(path, highWaterBytes);
}

class FileSink implements Sink {
  private name = "";
  private stream: WriteStream | null = null;
  private closed = false;
  private recordsBuffered = 0;
  /** Write callbacks run in order, so the last one settling means every earlier one has. */
  private lastWrite: Promise<void> = Promise.resolve();

  constructor(
    private readonly path: string,
    private readonly highWaterBytes: number,
  ) {}

  async open(ctx: SinkContext): Promise<void> {
    this.name = ctx.name;
    let handle: FileHandle;
    try {
      await mkdir(dirname(this.path), { recursive: true });
      handle = await openFile(this.path, "a");
    } catch (err) {
      const reason = typeof err === "object" && err !== null && "code" in err ? ` (${String(err.code)})` : "";
      throw new KeywayError(
        ErrorCode.FILE_NOT_FOUND,
        `sink "${this.name}": cannot open file for writing: ${this.path}${reason}`,
        { cause: err },
      );
    }
    const stream = handle.createWriteStream({ highWaterMark: this.highWaterBytes });
    // Failures surface, typed, through write callbacks, drain waits and flush(); this listener only
    // keeps an unobserved 'error' from crashing the process.
    stream.on("error", (err) => ctx.log.debug({ sink: this.name, path: this.path, err }, "file sink write failed"));
    this.stream = stream;
  }

  async write(values: Payload[]): Promise<void> {
    const stream = this.openStream();
    if (values.length === 0) return;
    const bytes = encodeNewlineFrames(values);
    const records = values.length;
    this.recordsBuffered += records;
    let hasRoom = true;
    this.lastWrite = new Promise<void>((resolve, reject) => {
      hasRoom = stream.write(bytes, (err) => {
        if (err) return reject(this.failed(err));
        this.recordsBuffered -= records;
        resolve();
      });
    });
    // flush() reports the failure; without this an unflushed failure would be an unhandled rejection.
    this.lastWrite.catch(() => {});
    if (hasRoom) return;
    if (stream.errored) throw this.failed(stream.errored);
    await once(stream, "drain").catch((err: Error) => {
      throw this.failed(err);
    });
  }

  private failed(err: Error): KeywayError {
    const code = "code" in err ? ` (${String(err.code)})` : "";
    return new KeywayError(ErrorCode.WRITE_FAILED, `sink "${this.name}": writing to ${this.path} failed: ${err.message}${code}`, { cause: err });
  }

  flush(): Promise<void> {
    return this.lastWrite;
  }

  bufferedRecords(): number {
    return this.recordsBuffered;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const stream = this.stream;
    this.stream = null;
    if (stream === null) return;
    stream.end();
    await finished(stream);
  }

  private openStream(): WriteStream {
    if (this.stream === null) {
      const state = this.closed ? "closed" : "not open";
      throw new KeywayError(ErrorCode.INTERNAL, `sink "${this.name}": write() on a sink that is ${state}`);
    }
    return this.stream;
  }
}
