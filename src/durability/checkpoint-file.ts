/**
 * One checkpoint file per data dir, replaced atomically: write a temporary file, fsync it,
 * rename it over the old one, fsync the directory. A crash at any point leaves either the old
 * checkpoint or the new one, never a torn file.
 */
import { mkdir, open, readFile, rename } from "node:fs/promises";
import { join } from "node:path";
import { deserialize, serialize } from "node:v8";
import { ErrorCode, KeywayError } from "../errors.ts";

const FILE_NAME = "checkpoint.v8";
const FORMAT_VERSION = 1;

export interface Checkpoint {
  app: string;
  slotCount: number;
  /** Per pipeline, in app order: the source's progress (a bigint position or its checkpoint() value). */
  sources: Array<{ progress: unknown } | undefined>;
  /** Per pipeline, in app order: [slot, exported slot state] for every slot that holds keys. */
  slots: Array<Array<[number, Uint8Array]>>;
  createdAtMs: number;
}

export async function writeCheckpoint(dir: string, checkpoint: Checkpoint): Promise<void> {
  await mkdir(dir, { recursive: true });
  const final = join(dir, FILE_NAME);
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

/** The last completed checkpoint in dir, or undefined when there is none. */
export async function readCheckpoint(dir: string): Promise<Checkpoint | undefined> {
  let bytes: Buffer;
  try {
    bytes = await readFile(join(dir, FILE_NAME));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new KeywayError(ErrorCode.BAD_CHECKPOINT, `cannot read checkpoint in ${dir}: ${(err as Error).message}`);
  }
  let decoded: { v?: number; checkpoint?: Checkpoint };
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
