/**
 * Follows a file that a sink appends the sequence-window app's output to ("k<key> <n-3>,...,<n>"):
 * the driver polls it every few milliseconds and parses what was appended, so it sees each output
 * line at about the time the sink wrote it, on the driver's clock. The lines are parsed from the
 * bytes (no string per line), and a line cut by a read is continued by the next one. For output
 * that arrives over a socket, lib/sequence-load.ts has SinkCollector.
 */
import { closeSync, openSync, readFileSync, readSync } from "node:fs";

const NL = 0x0a;
const SPACE = 0x20;
const COMMA = 0x2c;
const ZERO = 0x30;
const NINE = 0x39;
const READ_BYTES = 1 << 20;

export class SequenceFileTail {
  lines = 0;
  malformed = 0;
  private fd: number | undefined;
  private position = 0;
  private readonly buffer = Buffer.allocUnsafe(READ_BYTES);
  private timer: NodeJS.Timeout | undefined;
  // Parser state, kept across reads: 0 expects "k", 1 in the key's digits, 2 in the window.
  private phase = 0;
  private key = 0;
  private last = 0;
  private previous = -1;
  private bad = false;

  /** onOutput gets each line's key, the last n of its window and the one before it (-1 when the window has one). */
  constructor(
    private readonly path: string,
    private readonly onOutput: (key: number, n: number, nowMs: number, previous: number) => void,
  ) {}

  /** Polls every intervalMs until stop(). */
  start(intervalMs: number): void {
    this.timer = setInterval(() => this.poll(), intervalMs);
  }

  stop(): void {
    clearInterval(this.timer);
    this.poll();
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  /** Reads and parses whatever was appended since the last poll; the file may not exist yet. */
  poll(): void {
    if (this.fd === undefined) {
      try {
        this.fd = openSync(this.path, "r");
      } catch {
        return;
      }
    }
    const nowMs = performance.now();
    for (;;) {
      const n = readSync(this.fd, this.buffer, 0, READ_BYTES, this.position);
      if (n === 0) return;
      this.position += n;
      this.parse(this.buffer, n, nowMs);
    }
  }

  /** The whole file, for the checker. */
  text(): string {
    return readFileSync(this.path, "latin1");
  }

  private parse(chunk: Buffer, length: number, nowMs: number): void {
    for (let i = 0; i < length; i++) {
      const c = chunk[i]!;
      if (c === NL) {
        if (this.bad || this.phase !== 2) this.malformed++;
        else this.onOutput(this.key, this.last, nowMs, this.previous);
        this.lines++;
        this.phase = 0;
        this.key = 0;
        this.last = 0;
        this.previous = -1;
        this.bad = false;
      } else if (this.phase === 0) {
        if (c === 0x6b /* k */) this.phase = 1;
        else this.bad = true;
      } else if (this.phase === 1) {
        if (c >= ZERO && c <= NINE) this.key = this.key * 10 + (c - ZERO);
        else if (c === SPACE) this.phase = 2;
        else this.bad = true;
      } else if (c === COMMA) {
        this.previous = this.last;
        this.last = 0;
      } else if (c >= ZERO && c <= NINE) {
        this.last = this.last * 10 + (c - ZERO);
      } else {
        this.bad = true;
      }
    }
  }
}
