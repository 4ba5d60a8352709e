/**
 * `file:DIR` on one process: every regular file in the directory, in name order, one after the
 * other, each line a record. Progress is the byte offset reached in each file, so a run with a
 * data dir resumes every file where it stood. In a cluster the files are spread over the workers
 * instead, each read there as a `file:` source of its own.
 */
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import type { Source, SourceBatch, SourceContext } from "../../src/connector/types.ts";
import { ErrorCode, KeywayError } from "../../src/errors.ts";
import { Fifo } from "../../src/util/fifo.ts";
import { fileSource, type FileSourceOptions } from "./file-source.ts";

/** The regular files of a directory, by name; an empty directory is an error. */
export function filesOf(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch (err) {
    throw new KeywayError(ErrorCode.FILE_NOT_FOUND, `cannot read directory ${dir}: ${(err as Error).message}`);
  }
  const files = names.map((n) => join(dir, n)).filter((p) => statSync(p, { throwIfNoEntry: false })?.isFile() === true);
  if (files.length === 0) throw new KeywayError(ErrorCode.FILE_NOT_FOUND, `directory ${dir} holds no regular file to read`);
  return files;
}

export function isDirectory(path: string): boolean {
  return statSync(path, { throwIfNoEntry: false })?.isDirectory() === true;
}

export function directorySource(dir: string, options: FileSourceOptions = {}): Source {
  let files: string[] = [];
  let current = 0;
  let source: Source | undefined;
  let ctx: SourceContext | undefined;
  let batches = 0n;
  let closed = false;
  const offsets: Record<string, string> = {};
  // Per batch read and not yet committed or passed by a progress taken: the offset it moved and
  // where that offset was before, so progress is taken only when asked for, as of an earlier batch.
  const moves = new Fifo<{ position: bigint; path: string; before: string | undefined }>();
  const forgetThrough = (position: bigint): void => {
    while (moves.length > 0 && moves.peek()!.position <= position) moves.shift();
  };

  const openCurrent = async (): Promise<void> => {
    const path = files[current]!;
    source = fileSource(path, options);
    const resume = offsets[path];
    await source.open({ ...ctx!, ...(resume === undefined ? {} : { resumeFrom: BigInt(resume) }) });
  };

  return {
    finite: true,
    async open(context) {
      ctx = { name: context.name, log: context.log };
      files = filesOf(dir);
      const restored = context.resumeState as { offsets?: Record<string, string> } | undefined;
      Object.assign(offsets, restored?.offsets ?? {});
      await openCurrent();
    },
    async read(): Promise<SourceBatch | null> {
      for (;;) {
        if (closed || source === undefined) return null;
        const batch = await source.read();
        if (batch !== null) {
          const path = files[current]!;
          moves.push({ position: ++batches, path, before: offsets[path] });
          offsets[path] = String(batch.position);
          return { values: batch.values, position: batches };
        }
        await source.close();
        if (++current >= files.length || closed) return null;
        await openCurrent();
      }
    },
    progressAt(position) {
      forgetThrough(position);
      const at = { ...offsets };
      for (let i = moves.length - 1; i >= 0; i--) {
        const { path, before } = moves.at(i);
        if (before === undefined) delete at[path];
        else at[path] = before;
      }
      return { offsets: at };
    },
    // Without a data dir each batch is committed as it is done; a checkpoint's commit (its offsets) needs nothing here.
    commit(upTo) {
      if (typeof upTo === "bigint") forgetThrough(upTo);
    },
    async close() {
      closed = true;
      await source?.close();
    },
  };
}
