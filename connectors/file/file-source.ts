/**
 * `file:PATH`: the lines of a file, as UTF-8 strings. The hot path of the word-count benchmark, so
 * it reads large chunks into one reused buffer and decodes each chunk's lines with one decode and
 * one split; a batch is the lines of one chunk and its position is the byte offset after them.
 */
import { Buffer } from "node:buffer";
import { open as openFile } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import type { Source, SourceBatch, SourceContext } from "../../src/connector/types.ts";
import { ErrorCode, KeywayError } from "../../src/errors.ts";
import type { Logger } from "../../src/log/logger.ts";

export interface FileSourceOptions {
  /** Bytes read per system call, and so roughly per batch. */
  chunkBytes?: number;
  /** A line longer than this fails the source with FRAME_TOO_LARGE instead of growing the buffer. */
  maxLineBytes?: number;
}

/**
 * A batch's garbage (lines, words, keyed arrays, output strings) should die in V8's young
 * generation: at 256 KiB a batch outlived scavenges and word count spent 5.2 s and 245 MiB, at
 * 64 KiB 3.85 s and 152 MiB. Smaller chunks pay the engine's per-batch cost more often (16 KiB: 4.7 s).
 */
export const DEFAULT_CHUNK_BYTES = 64 * 1024;
export const DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024;

const NEWLINE = 0x0a;
const CARRIAGE_RETURN = 0x0d;
const BYTE_ORDER_MARK = 0xfeff;

export function fileSource(path: string, opts: FileSourceOptions = {}): Source {
  const chunkBytes = positiveInteger("chunkBytes", opts.chunkBytes ?? DEFAULT_CHUNK_BYTES);
  const maxLineBytes = positiveInteger("maxLineBytes", opts.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES);
  return new FileSource(path, chunkBytes, maxLineBytes);
}

class FileSource implements Source {
  readonly finite = true;
  private name = "";
  private handle: FileHandle | null = null;
  private closed = false;
  private ended = false;
  private reading = false;
  /** Holds the unfinished line carried over from the previous chunk at its start, then new bytes. */
  private buffer: Buffer;
  private carriedBytes = 0;
  /** File offset of the next byte to read; a number is exact for any file under 8 PiB. */
  private readOffset = 0;

  constructor(
    private readonly path: string,
    chunkBytes: number,
    private readonly maxLineBytes: number,
  ) {
    this.buffer = Buffer.allocUnsafe(chunkBytes);
  }

  async open(ctx: SourceContext): Promise<void> {
    this.name = ctx.name;
    let handle: FileHandle;
    try {
      handle = await openFile(this.path, "r");
    } catch (err) {
      throw this.notFound(err);
    }
    const stat = await handle.stat().catch(async (err: unknown) => {
      await handle.close();
      throw this.notFound(err);
    });
    if (!stat.isFile()) {
      await handle.close();
      throw new KeywayError(
        ErrorCode.FILE_NOT_FOUND,
        `source "${this.name}": file not found: ${this.path} (not a regular file)`,
      );
    }
    this.handle = handle;
    if (ctx.resumeFrom !== undefined) this.seek(ctx.resumeFrom, stat.size, ctx.log);
  }

  async read(): Promise<SourceBatch | null> {
    if (this.reading) throw new KeywayError(ErrorCode.INTERNAL, `source "${this.name}": concurrent read()`);
    this.reading = true;
    try {
      return await this.nextBatch();
    } finally {
      this.reading = false;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const handle = this.handle;
    this.handle = null;
    // FileHandle.close waits for a pending read, which then sees `closed` and resolves null.
    await handle?.close();
  }

  private async nextBatch(): Promise<SourceBatch | null> {
    for (;;) {
      const handle = this.handle;
      if (this.closed || this.ended || handle === null) return null;
      const bufferOffset = this.readOffset - this.carriedBytes;
      const { bytesRead } = await handle.read(
        this.buffer,
        this.carriedBytes,
        this.buffer.length - this.carriedBytes,
        this.readOffset,
      );
      if (this.closed) return null;
      if (bytesRead === 0) {
        this.ended = true;
        if (this.carriedBytes === 0) return null;
        // The last line had no newline: it is still a line.
        const line = this.decode(bufferOffset, 0, this.carriedBytes);
        this.carriedBytes = 0;
        return { values: [stripCarriageReturn(line)], position: BigInt(this.readOffset) };
      }
      this.readOffset += bytesRead;
      const filledBytes = this.carriedBytes + bytesRead;
      const lastNewline = this.buffer.lastIndexOf(NEWLINE, filledBytes - 1);
      if (lastNewline < 0) {
        this.carry(0, filledBytes);
        continue;
      }
      const values = this.decode(bufferOffset, 0, lastNewline).split("\n");
      for (let i = 0; i < values.length; i++) {
        const line = values[i]!;
        this.checkLineLength(line);
        values[i] = stripCarriageReturn(line);
      }
      this.carry(lastNewline + 1, filledBytes);
      return { values, position: BigInt(bufferOffset + lastNewline + 1) };
    }
  }

  private decode(bufferOffset: number, start: number, end: number): string {
    const text = this.buffer.toString("utf8", start, end);
    // Editors on Windows start UTF-8 files with a byte order mark; it is not part of the first line.
    return bufferOffset === 0 && start === 0 && text.charCodeAt(0) === BYTE_ORDER_MARK ? text.slice(1) : text;
  }

  /** Moves the unfinished line at buffer[start, end) to the front, growing the buffer up to the line limit. */
  private carry(start: number, end: number): void {
    this.carriedBytes = end - start;
    if (this.carriedBytes > this.maxLineBytes) throw this.lineTooLong(this.carriedBytes, "and still growing");
    if (start > 0) this.buffer.copy(this.buffer, 0, start, end);
    if (this.carriedBytes === this.buffer.length) {
      // One byte past the limit is enough to tell a line at the limit from one over it.
      const grown = Buffer.allocUnsafe(Math.min(this.buffer.length * 2, this.maxLineBytes + 1));
      this.buffer.copy(grown, 0, 0, this.carriedBytes);
      this.buffer = grown;
    }
  }

  private checkLineLength(line: string): void {
    // A UTF-16 unit is at most 3 UTF-8 bytes, so the byte count is needed only for long lines.
    if (line.length * 3 <= this.maxLineBytes) return;
    const lineBytes = Buffer.byteLength(line, "utf8");
    if (lineBytes > this.maxLineBytes) throw this.lineTooLong(lineBytes);
  }

  private seek(resumeFrom: bigint, fileBytes: number, log: Logger): void {
    if (resumeFrom < 0n) {
      throw new KeywayError(ErrorCode.INTERNAL, `source "${this.name}": negative resume position ${resumeFrom}`);
    }
    if (resumeFrom > BigInt(fileBytes)) {
      log.warn(
        { source: this.name, path: this.path, resumeFrom: resumeFrom.toString(), fileBytes },
        "resume position is past the end of the file (was it truncated or replaced?); reading nothing",
      );
    }
    this.readOffset = Number(resumeFrom);
  }

  private lineTooLong(lineBytes: number, detail?: string): KeywayError {
    const suffix = detail === undefined ? "" : ` ${detail}`;
    return new KeywayError(
      ErrorCode.FRAME_TOO_LARGE,
      `source "${this.name}": ${this.path}: line of ${lineBytes} bytes${suffix} exceeds maxLineBytes ${this.maxLineBytes}`,
    );
  }

  private notFound(cause: unknown): KeywayError {
    const reason = errnoCode(cause);
    const detail = reason === "ENOENT" || reason === undefined ? "" : ` (${reason})`;
    return new KeywayError(ErrorCode.FILE_NOT_FOUND, `source "${this.name}": file not found: ${this.path}${detail}`, {
      cause,
    });
  }
}

function stripCarriageReturn(line: string): string {
  return line.charCodeAt(line.length - 1) === CARRIAGE_RETURN ? line.slice(0, -1) : line;
}

function errnoCode(err: unknown): string | undefined {
  return typeof err === "object" && err !== null && "code" in err && typeof err.code === "string"
    ? err.code
    : undefined;
}

function positiveInteger(what: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new KeywayError(ErrorCode.USAGE, `${what} must be a positive integer, got ${value}`);
  }
  return value;
}
