/**
 * The format-1 checkpoint: one file per data dir, `checkpoint.v8`, holding every occupied slot,
 * replaced atomically at each checkpoint. Keyway now writes checkpoint chains (format 2,
 * `checkpoint-chain.ts`); this file is read once to upgrade a data dir written by an older
 * keyway, and is deleted once the first base of the chain is durable. The writer stays for the
 * tests of that upgrade and for the checkpoint benchmark's before-figure.
 */
import { mkdir, open, readFile, rename } from "node:fs/promises";
import { join } from "node:path";
import { deserialize, serialize } from "node:v8";
import { ErrorCode, KeywayError } from "../errors.ts";

export const LEGACY_FILE_NAME = "checkpoint.v8";
const FORMAT_VERSION = 1;

export interface LegacyCheckpoint {
  app: string;
  slotCount: number;
  /** Per pipeline, in app order: the source's progress (a bigint position or its progressAt() value). */
  sources: Array<{ progress: unknown } | undefined>;
  /** Per pipeline, in app order: [slot, exported slot state] for every slot that holds keys. */
  slots: Array<Array<[number, Uint8Array]>>;
  createdAtMs: number;
}

export async function writeLegacyCheckpoint(dir: string, checkpoint: LegacyCheckpoint): Promise<void> {
  await mkdir(dir, { recursive: true });
  const final = join(dir, LEGACY_FILE_NAME);
  const temporary = `${final}.tmp`;
  const file = await open(temporary, "w");
  try {
    await file.writeFile(serialize({ v: FORMAT_VERSION, checkpoint }));
    await file.sync();
  } finally {
    await file.close();
  }
  await rename(temporary, final);
  const directory = await open(dir, "r");
  try {
    await directory.sync();
  } finally {
    await directory.close();
  }
}

/** The format-1 checkpoint in dir, or undefined when there is none. */
export async function readLegacyCheckpoint(dir: string): Promise<LegacyCheckpoint | undefined> {
  let bytes: Buffer;
  try {
    bytes = await readFile(join(dir, LEGACY_FILE_NAME));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new KeywayError(ErrorCode.BAD_CHECKPOINT, `cannot read checkpoint in ${dir}: ${(err as Error).message}`);
  }
  let decoded: { v?: number; checkpoint?: LegacyCheckpoint };
  try {
    decoded = deserialize(bytes);
  } catch {
    throw new KeywayError(ErrorCode.BAD_CHECKPOINT, `checkpoint in ${dir} is corrupt`);
  }
  if (decoded?.v !== FORMAT_VERSION || decoded.checkpoint === undefined) {
    throw new KeywayError(ErrorCode.BAD_CHECKPOINT, `checkpoint in ${dir} has an unknown format (version ${decoded?.v})`);
  }
  return decoded.checkpoint;
}
