/**
 * One file of a checkpoint chain (checkpoint format 2): a base, holding every occupied slot, or a
 * delta, holding the slots changed since the previous checkpoint (a slot that became empty as an
 * entry of length 0). Each holds the sources' progress at its checkpoint.
 *
 * Layout, little-endian:
 *
 *   header    "KWCP", u32 format version (2), u32 kind (1 base, 2 delta), u32 meta length,
 *             u32 CRC-32 of the meta, u32 0                                         (24 bytes)
 *   meta      node:v8 serialisation of ChainMeta (app, slot count, pipelines, seq, time, progress)
 *   payloads  each entry's exported slot (state-store exportSlot), in index order
 *   index     per entry: u32 pipeline, u32 slot, u32 payload length (0: the slot is empty),
 *             u32 CRC-32 of the payload                                            (16 bytes each)
 *   trailer   u64 index offset, u32 entry count, u32 CRC-32 of the index, "KWCE", u32 0 (24 bytes)
 *
 * A file is written under a temporary name, fsynced, renamed and its directory fsynced
 * (`writeChainFile`). The trailer comes last and must agree with the file's size, so a torn file
 * (cut anywhere) is seen as such when opened. Payload checksums are stored per entry, so
 * compaction copies entries without reading their bytes twice or hashing them again.
 */
import { open, rename, unlink, type FileHandle } from "node:fs/promises";
import { deserialize, serialize } from "node:v8";
import * as zlib from "node:zlib";
import { ErrorCode, KeywayError } from "../errors.ts";

export const CHAIN_FORMAT_VERSION = 2;
export const KIND_BASE = 1;
export const KIND_DELTA = 2;
export type ChainKind = typeof KIND_BASE | typeof KIND_DELTA;

const MAGIC = 0x5043574b; // "KWCP" read as a little-endian u32
const TRAILER_MAGIC = 0x4543574b; // "KWCE"
const HEADER_BYTES = 24;
const INDEX_ENTRY_BYTES = 16;
const TRAILER_BYTES = 24;
/** Buffers per writev call (IOV_MAX is 1024 on Linux). */
const WRITEV_BATCH = 512;
/** Largest single read when copying or loading payloads. */
export const READ_RUN_BYTES = 16 * 2 ** 20;

export interface ChainMeta {
  app: string;
  slotCount: number;
  pipelines: number;
  /** The checkpoint's number: one more than the previous checkpoint's; a base made by compaction takes its last delta's. */
  seq: number;
  createdAtMs: number;
  /** Per pipeline, in app order: the source's progress (a bigint position or its progressAt() value). */
  sources: Array<{ progress: unknown } | undefined>;
}

/** An entry of the index: where a slot's payload is in the file. */
export interface ChainEntry {
  pipeline: number;
  slot: number;
  /** 0: the slot is empty (a delta's dropped slot). */
  length: number;
  crc: number;
  offset: number;
}

/** An opened, structurally whole chain file: its meta and index, payloads read on demand. */
export interface ChainFile {
  path: string;
  kind: ChainKind;
  meta: ChainMeta;
  entries: ChainEntry[];
  size: number;
}

/** A file that is not a whole chain file: torn by a crash, cut, or not one at all. */
export class TornFileError extends Error {}

/** A payload whose bytes differ from its checksum: the file is damaged. */
export class ChecksumError extends KeywayError {
  constructor(path: string, entry: ChainEntry) {
    super(ErrorCode.BAD_CHECKPOINT, `${path}: slot ${entry.slot} of pipeline ${entry.pipeline} fails its checksum (the file is damaged)`);
  }
}

const crcOf: (data: Uint8Array) => number =
  typeof (zlib as { crc32?: unknown }).crc32 === "function" ? (data) => zlib.crc32(data) : crc32Js;

/** CRC-32 (IEEE, as zlib), for Node versions without zlib.crc32. */
let crcTable: Int32Array | undefined;
function crc32Js(data: Uint8Array): number {
  if (crcTable === undefined) {
    crcTable = new Int32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c;
    }
  }
  let crc = -1;
  for (let i = 0; i < data.length; i++) crc = crcTable[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ -1) >>> 0;
}

export const crc32 = crcOf;

/** A payload to write: its bytes (null for an emptied slot), with its CRC when already known. */
export interface PayloadSource {
  pipeline: number;
  slot: number;
  bytes: Uint8Array | null;
  crc?: number;
}

/**
 * Writes a chain file durably at `path`: temporary file, fsync, rename, fsync of the directory.
 * `payloads` yields batches of entries in file order (an async source lets compaction copy
 * from other files without holding them whole). Returns the file's size.
 */
export async function writeChainFile(dir: string, path: string, kind: ChainKind, meta: ChainMeta, payloads: AsyncIterable<PayloadSource[]> | Iterable<PayloadSource[]>): Promise<number> {
  const temporary = `${path}.tmp`;
  const file = await open(temporary, "w");
  let size = 0;
  try {
    const metaBytes = serialize(meta);
    const header = Buffer.alloc(HEADER_BYTES);
    header.writeUInt32LE(MAGIC, 0);
    header.writeUInt32LE(CHAIN_FORMAT_VERSION, 4);
    header.writeUInt32LE(kind, 8);
    header.writeUInt32LE(metaBytes.length, 12);
    header.writeUInt32LE(crcOf(metaBytes), 16);
    const index: number[] = [];
    let pending: Uint8Array[] = [header, metaBytes];
    const flush = async (): Promise<void> => {
      for (const buffer of pending) size += buffer.byteLength;
      let from = 0;
      while (from < pending.length) {
        const batch = pending.slice(from, from + WRITEV_BATCH);
        await writeAll(file, batch);
        from += batch.length;
      }
      pending = [];
    };
    for await (const batch of payloads) {
      for (const p of batch) {
        const length = p.bytes === null ? 0 : p.bytes.byteLength;
        index.push(p.pipeline, p.slot, length, p.bytes === null ? 0 : (p.crc ?? crcOf(p.bytes)));
        if (p.bytes !== null && length > 0) pending.push(p.bytes);
      }
      await flush();
    }
    const indexOffset = size;
    const indexBytes = Buffer.alloc(index.length * 4);
    for (let i = 0; i < index.length; i++) indexBytes.writeUInt32LE(index[i]! >>> 0, i * 4);
    const trailer = Buffer.alloc(TRAILER_BYTES);
    trailer.writeBigUInt64LE(BigInt(indexOffset), 0);
    trailer.writeUInt32LE(index.length / 4, 8);
    trailer.writeUInt32LE(crcOf(indexBytes), 12);
    trailer.writeUInt32LE(TRAILER_MAGIC, 16);
    pending.push(indexBytes, trailer);
    await flush();
    await file.sync();
  } catch (err) {
    await file.close().catch(() => undefined);
    await unlink(temporary).catch(() => undefined);
    throw err;
  }
  await file.close();
  await rename(temporary, path);
  await syncDir(dir);
  return size;
}

/** writev until every byte is written (a short write resumes where it stopped). */
async function writeAll(file: FileHandle, buffers: Uint8Array[]): Promise<void> {
  let rest = buffers;
  for (;;) {
    const total = rest.reduce((n, b) => n + b.byteLength, 0);
    if (total === 0) return;
    const { bytesWritten } = await file.writev(rest);
    if (bytesWritten === total) return;
    let skip = bytesWritten;
    const next: Uint8Array[] = [];
    for (const b of rest) {
      if (skip >= b.byteLength) {
        skip -= b.byteLength;
        continue;
      }
      next.push(skip > 0 ? b.subarray(skip) : b);
      skip = 0;
    }
    rest = next;
  }
}

export async function syncDir(dir: string): Promise<void> {
  const directory = await open(dir, "r");
  try {
    await directory.sync();
  } finally {
    await directory.close();
  }
}

async function readExactly(file: FileHandle, length: number, position: number, into?: Buffer): Promise<Buffer> {
  const buffer = into === undefined ? Buffer.allocUnsafe(length) : into.subarray(0, length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await file.read(buffer, done, length - done, position + done);
    if (bytesRead === 0) throw new TornFileError(`ends at ${position + done}, ${length - done} bytes short`);
    done += bytesRead;
  }
  return buffer;
}

/**
 * Opens a chain file and checks its structure: header, meta and index checksums, and a trailer
 * that agrees with the file's size. Throws TornFileError when the file is not whole, and
 * BAD_CHECKPOINT when it is whole but of another format version.
 */
export async function openChainFile(path: string): Promise<ChainFile> {
  const file = await open(path, "r");
  try {
    const { size } = await file.stat();
    if (size < HEADER_BYTES + TRAILER_BYTES) throw new TornFileError(`${size} bytes, shorter than a header and a trailer`);
    const header = await readExactly(file, HEADER_BYTES, 0);
    if (header.readUInt32LE(0) !== MAGIC) throw new TornFileError("no checkpoint header");
    const version = header.readUInt32LE(4);
    if (version !== CHAIN_FORMAT_VERSION) {
      throw new KeywayError(ErrorCode.BAD_CHECKPOINT, `${path} has checkpoint format ${version}; this keyway reads format ${CHAIN_FORMAT_VERSION}`);
    }
    const kind = header.readUInt32LE(8);
    if (kind !== KIND_BASE && kind !== KIND_DELTA) throw new TornFileError(`unknown kind ${kind}`);
    const metaLength = header.readUInt32LE(12);
    const trailer = await readExactly(file, TRAILER_BYTES, size - TRAILER_BYTES);
    if (trailer.readUInt32LE(16) !== TRAILER_MAGIC) throw new TornFileError("no trailer");
    const indexOffset = Number(trailer.readBigUInt64LE(0));
    const count = trailer.readUInt32LE(8);
    if (indexOffset + count * INDEX_ENTRY_BYTES + TRAILER_BYTES !== size || indexOffset < HEADER_BYTES + metaLength) {
      throw new TornFileError("trailer does not agree with the file's size");
    }
    const metaBytes = await readExactly(file, metaLength, HEADER_BYTES);
    if (crcOf(metaBytes) !== header.readUInt32LE(16)) throw new TornFileError("meta checksum differs");
    const indexBytes = await readExactly(file, count * INDEX_ENTRY_BYTES, indexOffset);
    if (crcOf(indexBytes) !== trailer.readUInt32LE(12)) throw new TornFileError("index checksum differs");
    let meta: ChainMeta;
    try {
      meta = deserialize(metaBytes) as ChainMeta;
    } catch {
      throw new TornFileError("meta does not deserialise");
    }
    const entries: ChainEntry[] = [];
    let offset = HEADER_BYTES + metaLength;
    for (let i = 0; i < count; i++) {
      const at = i * INDEX_ENTRY_BYTES;
      const length = indexBytes.readUInt32LE(at + 8);
      entries.push({ pipeline: indexBytes.readUInt32LE(at), slot: indexBytes.readUInt32LE(at + 4), length, crc: indexBytes.readUInt32LE(at + 12), offset });
      offset += length;
    }
    if (offset !== indexOffset) throw new TornFileError("payload lengths do not add up to the index's offset");
    return { path, kind: kind as ChainKind, meta, entries, size };
  } finally {
    await file.close();
  }
}

/**
 * Reads the payloads of `entries` (all of one file, in file order) in runs of adjacent entries
 * of at most READ_RUN_BYTES, yielding each entry with its bytes. The bytes are views into one
 * buffer reused for every run: they are valid until the consumer asks for the next run (one
 * buffer, not one per run, so a restore of gigabytes allocates no external memory to speak of,
 * which would otherwise set off full GCs of the heap the restore is filling).
 * With `verify`, a payload whose CRC differs throws ChecksumError (BAD_CHECKPOINT).
 */
export async function* readPayloads(path: string, entries: readonly ChainEntry[], verify: boolean): AsyncGenerator<Array<{ entry: ChainEntry; bytes: Uint8Array }>> {
  const file = await open(path, "r");
  let buffer: Buffer | undefined;
  try {
    let i = 0;
    while (i < entries.length) {
      if (entries[i]!.length === 0) {
        yield [{ entry: entries[i]!, bytes: new Uint8Array(0) }];
        i++;
        continue;
      }
      // A run: entries adjacent in the file, up to the size limit (a bigger entry is a run alone).
      const start = entries[i]!.offset;
      let end = start + entries[i]!.length;
      let j = i + 1;
      while (j < entries.length && entries[j]!.length > 0 && entries[j]!.offset === end && end + entries[j]!.length - start <= READ_RUN_BYTES) {
        end += entries[j]!.length;
        j++;
      }
      if (buffer === undefined || buffer.length < end - start) buffer = Buffer.allocUnsafe(Math.max(end - start, Math.min(READ_RUN_BYTES, totalBytes(entries))));
      const runBytes = await readExactly(file, end - start, start, buffer).catch((err: unknown) => {
        throw err instanceof TornFileError ? new KeywayError(ErrorCode.BAD_CHECKPOINT, `${path}: ${err.message}`) : err;
      });
      const run: Array<{ entry: ChainEntry; bytes: Uint8Array }> = [];
      for (let k = i; k < j; k++) {
        const entry = entries[k]!;
        const bytes = runBytes.subarray(entry.offset - start, entry.offset - start + entry.length);
        if (verify && crcOf(bytes) !== entry.crc) throw new ChecksumError(path, entry);
        run.push({ entry, bytes });
      }
      yield run;
      i = j;
    }
  } finally {
    await file.close();
  }
}

function totalBytes(entries: readonly ChainEntry[]): number {
  let n = 0;
  for (const e of entries) n += e.length;
  return n;
}
