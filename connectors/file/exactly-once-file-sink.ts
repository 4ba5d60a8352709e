/**
 * The bundled file sink made exactly-once across its own crashes, for `keyway connector
 * file-sink`. The output file holds only the output lines, exactly as an in-process file sink
 * writes them; a ledger beside it, `<path>.ids`, records which record ids the output holds.
 *
 * The ledger is JSON lines, one per batch written: {"end": <output file size after the batch>,
 * "ids": [<the batch's record ids>]}. Each batch's line is appended (and handed to the OS)
 * before the batch's output, so after a crash at any point:
 * - the output may end inside a batch whose ledger line exists: it is truncated back to the
 *   largest "end" it fully contains, and the ledger lines past it are dropped, so those records
 *   count as unwritten; the engine redelivers them, since nothing unflushed was acked;
 * - a ledger line cut short by the crash is dropped too: its batch's output was never started.
 * At start the ids of the ledger fill the sink's id window, so redelivered records already in
 * the output are skipped. The ledger is rewritten to hold only the window's ids whenever it has
 * grown to twice the window, so it stays bounded.
 *
 * This survives the connector's process dying (SIGKILL): written bytes are in the OS. It does not
 * fsync, so a machine crash may lose the tail of both files (and the engine resends it).
 */
import { Buffer } from "node:buffer";
import { mkdir, open as openFile, readFile, rename, stat, truncate, type FileHandle } from "node:fs/promises";
import { dirname } from "node:path";
import { fileSink } from "./file-sink.ts";
import type { Payload, Sink, SinkContext } from "../../src/connector/types.ts";
import { ErrorCode, KeywayError } from "../../src/errors.ts";
import type { Logger } from "../../src/log/logger.ts";
import { createIdWindow, type IdWindow } from "../../src/sdk/id-window.ts";

export interface ExactlyOnceFileSink {
  sink: Sink;
  /** Preloaded with the ids the output already holds; pass it to runSink as `dedup`. */
  window: IdWindow;
}

interface LedgerEntry {
  end: number;
  ids: string[];
}

/** Recovers the output and its ledger after a crash, and returns the sink and its id window. */
export async function openExactlyOnceFileSink(path: string, windowIds: number, log: Logger): Promise<ExactlyOnceFileSink> {
  const ledgerPath = `${path}.ids`;
  await mkdir(dirname(path), { recursive: true });
  const outputBytes = await fileSize(path);
  const entries = await readLedger(ledgerPath, log);
  const window = createIdWindow(windowIds);
  let end = outputBytes;
  if (entries.length === 0) {
    if (outputBytes > 0) log.info({ path, bytes: outputBytes }, "output file exists without a ledger; appending after its content");
  } else {
    const lastEnd = entries[entries.length - 1]!.end;
    if (outputBytes > lastEnd) {
      throw new KeywayError(
        ErrorCode.BAD_CHECKPOINT,
        `${path} has ${outputBytes} bytes but its ledger ${ledgerPath} accounts for ${lastEnd}: something else wrote to it; move one of them away`,
      );
    }
    let kept = entries.length;
    while (kept > 0 && entries[kept - 1]!.end > outputBytes) kept--;
    if (kept === 0) {
      throw new KeywayError(ErrorCode.BAD_CHECKPOINT, `${path} is shorter (${outputBytes} bytes) than its ledger ${ledgerPath} says it ever was`);
    }
    end = entries[kept - 1]!.end;
    if (end < outputBytes) await truncate(path, end);
    if (kept < entries.length || end < outputBytes) {
      log.warn({ path, droppedBatches: entries.length - kept, droppedBytes: outputBytes - end }, "dropped output of batches cut short by a crash; the engine resends them");
    }
    for (const entry of entries.slice(0, kept)) for (const id of entry.ids) window.add(id);
  }
  await writeLedger(ledgerPath, { end, ids: [...window.ids()] });
  return { sink: new LedgeredSink(path, ledgerPath, end, window), window };
}

class LedgeredSink implements Sink {
  readonly wantsRecordIds = true;
  private readonly inner: Sink;
  private ledger: FileHandle | null = null;
  /** Ids in the ledger file; it is compacted at twice the window. */
  private ledgerIds: number;

  constructor(
    private readonly path: string,
    private readonly ledgerPath: string,
    /** The output file's size once every write so far lands. */
    private end: number,
    private readonly window: IdWindow,
  ) {
    this.inner = fileSink(path);
    this.ledgerIds = window.size;
  }

  async open(ctx: SinkContext): Promise<void> {
    await this.inner.open(ctx);
    this.ledger = await openFile(this.ledgerPath, "a");
  }

  async write(values: Payload[], recordIds?: string[]): Promise<void> {
    if (recordIds === undefined || recordIds.length !== values.length) {
      throw new KeywayError(ErrorCode.INTERNAL, `file sink ${this.path}: every record needs an id for the ledger`);
    }
    if (this.ledgerIds + recordIds.length > 2 * this.window.capacity) await this.compact();
    let bytes = 0;
    for (const value of values) bytes += (typeof value === "string" ? Buffer.byteLength(value, "utf8") : value.length) + 1;
    this.end += bytes;
    await this.ledger!.write(`${JSON.stringify({ end: this.end, ids: recordIds } satisfies LedgerEntry)}\n`);
    this.ledgerIds += recordIds.length;
    await this.inner.write(values);
  }

  flush(): Promise<void> {
    return this.inner.flush();
  }

  bufferedRecords(): number {
    return this.inner.bufferedRecords();
  }

  async close(): Promise<void> {
    await this.inner.close();
    await this.ledger?.close();
    this.ledger = null;
  }

  /** Rewrites the ledger as one line holding the window: everything older is out of it anyway. */
  private async compact(): Promise<void> {
    // The new ledger must not claim bytes that are not yet in the output.
    await this.inner.flush();
    await this.ledger!.close();
    await writeLedger(this.ledgerPath, { end: this.end, ids: [...this.window.ids()] });
    this.ledger = await openFile(this.ledgerPath, "a");
    this.ledgerIds = this.window.size;
  }
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return 0;
    throw err;
  }
}

async function readLedger(ledgerPath: string, log: Logger): Promise<LedgerEntry[]> {
  let text: string;
  try {
    text = await readFile(ledgerPath, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  const lines = text.split("\n");
  // Text after the last newline is a line the crash cut short: its batch's output never started.
  const torn = lines.pop()!;
  if (torn !== "") log.warn({ ledgerPath, bytes: torn.length }, "dropping a ledger line cut short by a crash");
  return lines.map((line, i) => {
    try {
      const entry = JSON.parse(line) as LedgerEntry;
      if (Number.isSafeInteger(entry.end) && Array.isArray(entry.ids)) return entry;
    } catch {
      // reported below
    }
    throw new KeywayError(ErrorCode.BAD_CHECKPOINT, `${ledgerPath}: line ${i + 1} is not a ledger entry`);
  });
}

/** Replaces the ledger atomically: written beside it, then renamed over it. */
async function writeLedger(ledgerPath: string, entry: LedgerEntry): Promise<void> {
  const temporary = `${ledgerPath}.tmp`;
  const handle = await openFile(temporary, "w");
  try {
    await handle.write(`${JSON.stringify(entry)}\n`);
  } finally {
    await handle.close();
  }
  await rename(temporary, ledgerPath);
}
