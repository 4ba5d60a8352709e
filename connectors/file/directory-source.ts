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
          offsets[files[current]!] = String(batch.position);
          return { values: batch.values, position: ++batches };
        }
        await source.close();
        if (++current >= files.length || closed) return null;
        await openCurrent();
      }
    },
    checkpoint: () => ({ offsets: { ...offsets } }),
    async close() {
      closed = true;
      await source?.close();
    },
  };
}
