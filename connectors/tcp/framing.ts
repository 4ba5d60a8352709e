/**
 * Frame decoders and encoders for byte streams, free of sockets so they can be tested alone.
 *
 * Two framings:
 * - newline: UTF-8 text, one frame per line ending in "\n"; a trailing "\r" is dropped so CRLF
 *   peers (telnet, Windows tools) work. A value containing "\n" reads back as several frames.
 * - length-prefixed: a 4-byte big-endian unsigned length, then that many bytes.
 *
 * Every decoder takes a limit and fails with FRAME_TOO_LARGE past it, before buffering the excess:
 * a peer must not be able to make us hold more than maxFrameBytes for one frame.
 */
import { Buffer, isUtf8 } from "node:buffer";
import type { Payload } from "../../src/connector/types.ts";
import { ErrorCode, KeywayError } from "../../src/errors.ts";

export type Framing = "newline" | "length-prefixed";

export const DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024;
/**
 * The largest maxFrameBytes accepted: well under V8's string length limit (about 2^29 UTF-16
 * units), so any newline frame within the limit can be decoded into one string.
 */
export const MAX_FRAME_BYTES_LIMIT = 256 * 1024 * 1024;

const NEWLINE = 0x0a;
const CARRIAGE_RETURN = 0x0d;
const LENGTH_PREFIX_BYTES = 4;
const LENGTH_PREFIX_MAX = 0xffff_ffff;

export interface FrameDecoder<T extends Payload> {
  /**
   * Appends to `out` every frame the bytes complete. On bad input it throws a KeywayError
   * (FRAME_TOO_LARGE or MALFORMED) after appending the good frames that preceded the bad one;
   * the decoder is then unusable, as the stream has no frame boundary left to resynchronise on.
   * The decoder copies what it keeps, so the caller may reuse `chunk`.
   */
  push(chunk: Uint8Array, out: T[]): void;
  /** The stream ended: appends a final unterminated frame if the framing allows one, else throws. */
  end(out: T[]): void;
}

export function newlineDecoder(maxFrameBytes: number = DEFAULT_MAX_FRAME_BYTES): FrameDecoder<string> {
  assertMaxFrameBytes(maxFrameBytes);
  return new NewlineDecoder(maxFrameBytes);
}

export function lengthPrefixedDecoder(
  maxFrameBytes: number = DEFAULT_MAX_FRAME_BYTES,
): FrameDecoder<Uint8Array> {
  assertMaxFrameBytes(maxFrameBytes);
  return new LengthPrefixedDecoder(maxFrameBytes);
}

class NewlineDecoder implements FrameDecoder<string> {
  /** Bytes of the current unterminated line, kept as pieces so a slow trickle is not quadratic. */
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private failed = false;

  constructor(private readonly maxFrameBytes: number) {}

  push(chunk: Uint8Array, out: string[]): void {
    this.assertUsable();
    const bytes = asBuffer(chunk);
    const lastNewline = bytes.lastIndexOf(NEWLINE);
    if (lastNewline < 0) {
      this.hold(bytes);
      return;
    }
    let complete = bytes.subarray(0, lastNewline + 1);
    if (this.pendingBytes > 0) {
      this.pending.push(complete);
      complete = Buffer.concat(this.pending, this.pendingBytes + complete.length);
      this.pending = [];
      this.pendingBytes = 0;
    }
    this.decodeLines(complete, out);
    this.hold(bytes.subarray(lastNewline + 1));
  }

  end(out: string[]): void {
    this.assertUsable();
    if (this.pendingBytes === 0) return;
    const line = Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    out.push(this.decodeLine(line));
  }

  /** `bytes` ends with "\n". */
  private decodeLines(bytes: Buffer, out: string[]): void {
    // Fast path, the common case: one validation and one decode for the whole run of lines. A run
    // no longer than the limit cannot hold an oversized line.
    if (bytes.length - 1 <= this.maxFrameBytes && isUtf8(bytes)) {
      const lines = bytes.toString("utf8", 0, bytes.length - 1).split("\n");
      for (const line of lines) out.push(stripCarriageReturn(line));
      return;
    }
    // Slow path: line by line, so the good lines before the bad one are still delivered.
    let start = 0;
    while (start < bytes.length) {
      const newline = bytes.indexOf(NEWLINE, start);
      out.push(this.decodeLine(bytes.subarray(start, newline)));
      start = newline + 1;
    }
  }

  private decodeLine(line: Buffer): string {
    if (line.length > this.maxFrameBytes) this.fail(tooLarge(line.length, this.maxFrameBytes));
    if (!isUtf8(line)) this.fail(new KeywayError(ErrorCode.MALFORMED, "line is not valid UTF-8"));
    const end = line.length > 0 && line[line.length - 1] === CARRIAGE_RETURN ? line.length - 1 : line.length;
    return line.toString("utf8", 0, end);
  }

  private hold(bytes: Buffer): void {
    if (bytes.length === 0) return;
    // Fail as soon as the line is too long, without waiting for a newline that may never come.
    if (this.pendingBytes + bytes.length > this.maxFrameBytes) {
      this.fail(tooLarge(this.pendingBytes + bytes.length, this.maxFrameBytes, "and still growing"));
    }
    this.pending.push(Buffer.from(bytes));
    this.pendingBytes += bytes.length;
  }

  private fail(err: KeywayError): never {
    this.failed = true;
    this.pending = [];
    this.pendingBytes = 0;
    throw err;
  }

  private assertUsable(): void {
    if (this.failed) throw new KeywayError(ErrorCode.INTERNAL, "newline decoder used after it failed");
  }
}

class LengthPrefixedDecoder implements FrameDecoder<Uint8Array> {
  private readonly header = new Uint8Array(LENGTH_PREFIX_BYTES);
  private headerBytes = 0;
  /** The frame being filled once its header is known; allocated only after the length is checked. */
  private body: Uint8Array | null = null;
  private bodyBytes = 0;
  private failed = false;

  constructor(private readonly maxFrameBytes: number) {}

  push(chunk: Uint8Array, out: Uint8Array[]): void {
    if (this.failed) throw new KeywayError(ErrorCode.INTERNAL, "length-prefixed decoder used after it failed");
    let offset = 0;
    while (offset < chunk.length) {
      if (this.body === null) {
        const headerPart = Math.min(LENGTH_PREFIX_BYTES - this.headerBytes, chunk.length - offset);
        this.header.set(chunk.subarray(offset, offset + headerPart), this.headerBytes);
        this.headerBytes += headerPart;
        offset += headerPart;
        if (this.headerBytes < LENGTH_PREFIX_BYTES) return;
        const frameBytes = readUint32BE(this.header);
        if (frameBytes > this.maxFrameBytes) {
          this.failed = true;
          throw tooLarge(frameBytes, this.maxFrameBytes, "announced by its length prefix");
        }
        this.headerBytes = 0;
        // Copies, so a frame never pins the (possibly much larger) chunk it arrived in.
        if (chunk.length - offset >= frameBytes) {
          out.push(new Uint8Array(chunk.subarray(offset, offset + frameBytes)));
          offset += frameBytes;
          continue;
        }
        this.body = new Uint8Array(frameBytes);
        this.bodyBytes = 0;
      }
      const bodyPart = Math.min(this.body.length - this.bodyBytes, chunk.length - offset);
      this.body.set(chunk.subarray(offset, offset + bodyPart), this.bodyBytes);
      this.bodyBytes += bodyPart;
      offset += bodyPart;
      if (this.bodyBytes === this.body.length) {
        out.push(this.body);
        this.body = null;
      }
    }
  }

  end(_out: Uint8Array[]): void {
    if (this.headerBytes > 0 || this.body !== null) {
      this.failed = true;
      const had = this.body === null ? `${this.headerBytes} of 4 length bytes` : `${this.bodyBytes} of ${this.body.length} bytes`;
      throw new KeywayError(ErrorCode.MALFORMED, `stream ended inside a frame (${had})`);
    }
  }
}

/**
 * One buffer holding `values` as newline frames, for a single write. Strings are UTF-8; bytes are
 * written raw. With `maxFrameBytes`, a value longer than it throws FRAME_TOO_LARGE rather than send
 * what the peer would reject.
 */
export function encodeNewlineFrames(values: readonly Payload[], maxFrameBytes?: number): Buffer {
  if (maxFrameBytes !== undefined) for (const value of values) checkFrameSize(value, maxFrameBytes);
  if (values.every((value) => typeof value === "string")) {
    return Buffer.from(values.length === 0 ? "" : (values as string[]).join("\n") + "\n", "utf8");
  }
  const newline = Buffer.from("\n");
  const parts: Uint8Array[] = [];
  for (const value of values) parts.push(typeof value === "string" ? Buffer.from(value, "utf8") : value, newline);
  return Buffer.concat(parts);
}

/** One buffer holding `values` as length-prefixed frames; strings are encoded as UTF-8. */
export function encodeLengthPrefixedFrames(values: readonly Payload[], maxFrameBytes?: number): Buffer {
  const limit = Math.min(maxFrameBytes ?? LENGTH_PREFIX_MAX, LENGTH_PREFIX_MAX);
  const bodies = values.map((value) => (typeof value === "string" ? Buffer.from(value, "utf8") : value));
  let totalBytes = 0;
  for (const body of bodies) {
    if (body.length > limit) throw tooLarge(body.length, limit);
    totalBytes += LENGTH_PREFIX_BYTES + body.length;
  }
  const out = Buffer.allocUnsafe(totalBytes);
  let offset = 0;
  for (const body of bodies) {
    offset = out.writeUInt32BE(body.length, offset);
    out.set(body, offset);
    offset += body.length;
  }
  return out;
}

export function encodeFrames(framing: Framing, values: readonly Payload[], maxFrameBytes?: number): Buffer {
  return framing === "newline"
    ? encodeNewlineFrames(values, maxFrameBytes)
    : encodeLengthPrefixedFrames(values, maxFrameBytes);
}

function checkFrameSize(value: Payload, maxFrameBytes: number): void {
  // A UTF-16 unit is at most 3 UTF-8 bytes, so most strings skip the byte count.
  if (typeof value === "string") {
    if (value.length * 3 > maxFrameBytes) {
      const frameBytes = Buffer.byteLength(value, "utf8");
      if (frameBytes > maxFrameBytes) throw tooLarge(frameBytes, maxFrameBytes);
    }
  } else if (value.length > maxFrameBytes) {
    throw tooLarge(value.length, maxFrameBytes);
  }
}

function tooLarge(frameBytes: number, maxFrameBytes: number, detail?: string): KeywayError {
  const suffix = detail === undefined ? "" : ` (${detail})`;
  return new KeywayError(
    ErrorCode.FRAME_TOO_LARGE,
    `frame of ${frameBytes} bytes exceeds maxFrameBytes ${maxFrameBytes}${suffix}`,
  );
}

/** Throws USAGE unless maxFrameBytes is an integer from 1 to MAX_FRAME_BYTES_LIMIT. */
export function assertMaxFrameBytes(maxFrameBytes: number): void {
  if (!Number.isSafeInteger(maxFrameBytes) || maxFrameBytes < 1 || maxFrameBytes > MAX_FRAME_BYTES_LIMIT) {
    throw new KeywayError(
      ErrorCode.USAGE,
      `maxFrameBytes must be an integer from 1 to ${MAX_FRAME_BYTES_LIMIT}, got ${maxFrameBytes}`,
    );
  }
}

function stripCarriageReturn(line: string): string {
  return line.charCodeAt(line.length - 1) === CARRIAGE_RETURN ? line.slice(0, -1) : line;
}

function asBuffer(chunk: Uint8Array): Buffer {
  return Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
}

function readUint32BE(bytes: Uint8Array): number {
  return ((bytes[0]! << 24) >>> 0) + (bytes[1]! << 16) + (bytes[2]! << 8) + bytes[3]!;
}
