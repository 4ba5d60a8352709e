import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { fileSource } from "../../connectors/file/file-source.ts";
import type { FileSourceOptions } from "../../connectors/file/file-source.ts";
import type { SourceBatch } from "../../src/connector/types.ts";
import { ErrorCode, KeywayError } from "../../src/errors.ts";
import { makeTempDir, recordingLogger } from "./helpers.ts";

let dir: string;
let remove: () => Promise<void>;
beforeEach(async () => ({ dir, remove } = await makeTempDir()));
afterEach(() => remove());

async function writeInput(content: string | Uint8Array): Promise<string> {
  const path = join(dir, "in.txt");
  await writeFile(path, content);
  return path;
}

async function readBatches(path: string, opts?: FileSourceOptions, resumeFrom?: bigint): Promise<SourceBatch[]> {
  const source = fileSource(path, opts);
  await source.open({ name: "lines", log: recordingLogger(), ...(resumeFrom === undefined ? {} : { resumeFrom }) });
  const batches: SourceBatch[] = [];
  for (let batch = await source.read(); batch !== null; batch = await source.read()) batches.push(batch);
  await source.close();
  return batches;
}

const lines = (batches: SourceBatch[]) => batches.flatMap((batch) => batch.values);

describe("file source", () => {
  it("is finite", () => {
    expect(fileSource("x").finite).toBe(true);
  });

  it("reads every line, multi-byte characters intact wherever the chunks split them", async () => {
    const expected = ["héllo wörld", "日本語のテキスト", "🎉🚀", "", "ascii", "€uro €", "çà"];
    const path = await writeInput(expected.join("\n") + "\n");
    for (let chunkBytes = 1; chunkBytes <= 24; chunkBytes++) {
      expect(lines(await readBatches(path, { chunkBytes })), `chunkBytes ${chunkBytes}`).toEqual(expected);
    }
    expect(lines(await readBatches(path))).toEqual(expected);
  });

  it("drops the carriage return of CRLF endings, also when a chunk ends between \\r and \\n", async () => {
    const path = await writeInput("one\r\ntwo\r\n\r\nthree\r\n");
    for (const chunkBytes of [1, 2, 3, 4, 5, 1024]) {
      expect(lines(await readBatches(path, { chunkBytes }))).toEqual(["one", "two", "", "three"]);
    }
  });

  it("emits a final line that has no newline, positioned at the end of the file", async () => {
    const path = await writeInput("a\nb\nlast");
    const batches = await readBatches(path, { chunkBytes: 3 });
    expect(lines(batches)).toEqual(["a", "b", "last"]);
    expect(batches.at(-1)!.position).toBe(8n);
  });

  it("preserves empty lines", async () => {
    const path = await writeInput("\n\na\n\n");
    expect(lines(await readBatches(path))).toEqual(["", "", "a", ""]);
  });

  it("reads nothing from an empty file", async () => {
    expect(await readBatches(await writeInput(""))).toEqual([]);
  });

  it("skips a UTF-8 byte order mark at the start of the file only", async () => {
    const path = await writeInput("\uFEFFfirst\n\uFEFFsecond\n");
    expect(lines(await readBatches(path, { chunkBytes: 4 }))).toEqual(["first", "\uFEFFsecond"]);
  });

  it("positions each batch at the byte offset after its last line, strictly increasing", async () => {
    const content = "αβ\nγ\n\nδεζ\n";
    const path = await writeInput(content);
    const batches = await readBatches(path, { chunkBytes: 4 });
    const bytes = Buffer.from(content);
    let previous = -1n;
    for (const batch of batches) {
      expect(batch.values.length).toBeGreaterThan(0);
      expect(batch.position).toBeGreaterThan(previous);
      expect(bytes[Number(batch.position) - 1]).toBe(0x0a);
      previous = batch.position;
    }
    expect(previous).toBe(BigInt(bytes.length));
  });

  it("resumed from any batch's position yields exactly the lines after that batch", async () => {
    const expected = Array.from({ length: 200 }, (_, i) => `line ${i} ${"é".repeat(i % 7)}`);
    const path = await writeInput(expected.join("\n") + "\n");
    const batches = await readBatches(path, { chunkBytes: 64 });
    expect(batches.length).toBeGreaterThan(10);
    let linesBefore = 0;
    for (const batch of batches) {
      linesBefore += batch.values.length;
      const resumed = await readBatches(path, { chunkBytes: 64 }, batch.position);
      expect(lines(resumed)).toEqual(expected.slice(linesBefore));
    }
  });

  it("warns and reads nothing when resumed past the end of the file", async () => {
    const path = await writeInput("short\n");
    const log = recordingLogger();
    const source = fileSource(path);
    await source.open({ name: "lines", log, resumeFrom: 1000n });
    expect(await source.read()).toBeNull();
    expect(log.calls.some((call) => call.level === "warn" && call.fields.resumeFrom === "1000")).toBe(true);
    await source.close();
  });

  it("fails open() with FILE_NOT_FOUND naming the source and path for a missing file", async () => {
    const path = join(dir, "missing.txt");
    const error = await fileSource(path)
      .open({ name: "lines", log: recordingLogger() })
      .catch((err: unknown) => err);
    expect(error).toBeInstanceOf(KeywayError);
    expect((error as KeywayError).code).toBe(ErrorCode.FILE_NOT_FOUND);
    expect((error as KeywayError).message).toBe(`source "lines": file not found: ${path}`);
  });

  it("fails open() with FILE_NOT_FOUND for a directory", async () => {
    const path = join(dir, "sub");
    await mkdir(path);
    await expect(fileSource(path).open({ name: "lines", log: recordingLogger() })).rejects.toMatchObject({
      code: ErrorCode.FILE_NOT_FOUND,
    });
  });

  it("accepts a line at maxLineBytes and fails with FRAME_TOO_LARGE on a longer one", async () => {
    const path = await writeInput("12345678\nok\n123456789\nnever\n");
    const source = fileSource(path, { chunkBytes: 3, maxLineBytes: 8 });
    await source.open({ name: "lines", log: recordingLogger() });
    const seen: string[] = [];
    const error = await (async () => {
      for (let batch = await source.read(); batch !== null; batch = await source.read()) {
        seen.push(...(batch.values as string[]));
      }
    })().catch((err: unknown) => err);
    expect(seen).toEqual(["12345678", "ok"]);
    expect(error).toMatchObject({ code: ErrorCode.FRAME_TOO_LARGE });
    await source.close();
  });

  it("fails with FRAME_TOO_LARGE on a long line inside one big chunk", async () => {
    const path = await writeInput("ok\n" + "x".repeat(100) + "\n");
    await expect(readBatches(path, { maxLineBytes: 50 })).rejects.toMatchObject({ code: ErrorCode.FRAME_TOO_LARGE });
  });

  it("makes a pending read resolve null when closed", async () => {
    const path = await writeInput("a\nb\n");
    const source = fileSource(path);
    await source.open({ name: "lines", log: recordingLogger() });
    const pending = source.read();
    await source.close();
    expect(await pending).toBeNull();
    expect(await source.read()).toBeNull();
    await source.close();
  });
});
