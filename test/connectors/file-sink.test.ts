import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { fileSink } from "../../connectors/file/file-sink.ts";
import { ErrorCode, KeywayError } from "../../src/errors.ts";
import { makeTempDir, recordingLogger } from "./helpers.ts";

let dir: string;
let remove: () => Promise<void>;
beforeEach(async () => ({ dir, remove } = await makeTempDir()));
afterEach(() => remove());

describe("file sink", () => {
  it("appends each value as one line to what the file already holds, bytes raw", async () => {
    const path = join(dir, "out.txt");
    await writeFile(path, "existing\n");
    const sink = fileSink(path);
    await sink.open({ name: "counts", log: recordingLogger() });
    await sink.write(["a 1", "héllo 2"]);
    await sink.write([new Uint8Array([0x72, 0x61, 0x77]), "", "日本 3"]);
    await sink.flush();
    expect(await readFile(path, "utf8")).toBe("existing\na 1\nhéllo 2\nraw\n\n日本 3\n");
    await sink.close();
  });

  it("creates missing parent directories", async () => {
    const path = join(dir, "deep", "er", "out.txt");
    const sink = fileSink(path);
    await sink.open({ name: "counts", log: recordingLogger() });
    await sink.write(["x"]);
    await sink.close();
    expect(await readFile(path, "utf8")).toBe("x\n");
  });

  it("counts records until they reach the OS, and flush() waits for all of them", async () => {
    const path = join(dir, "out.txt");
    const sink = fileSink(path, { highWaterBytes: 1024 });
    await sink.open({ name: "counts", log: recordingLogger() });
    const expected: string[] = [];
    for (let batch = 0; batch < 200; batch++) {
      const values = Array.from({ length: 50 }, (_, i) => `batch ${batch} record ${i}`);
      expected.push(...values);
      const written = sink.write(values);
      // Accepted synchronously; the disk write completes later.
      expect(sink.bufferedRecords()).toBeGreaterThanOrEqual(values.length);
      await written;
    }
    await sink.flush();
    expect(sink.bufferedRecords()).toBe(0);
    expect(await readFile(path, "utf8")).toBe(expected.join("\n") + "\n");
    await sink.close();
  });

  it("closes idempotently and refuses writes after close", async () => {
    const sink = fileSink(join(dir, "out.txt"));
    await sink.open({ name: "counts", log: recordingLogger() });
    await sink.close();
    await sink.close();
    await expect(sink.write(["late"])).rejects.toMatchObject({ code: ErrorCode.INTERNAL });
  });

  it("fails open() with FILE_NOT_FOUND naming the sink and path when the path cannot be created", async () => {
    const blocker = join(dir, "plain-file");
    await writeFile(blocker, "");
    const path = join(blocker, "out.txt");
    const error = await fileSink(path)
      .open({ name: "counts", log: recordingLogger() })
      .catch((err: unknown) => err);
    expect(error).toBeInstanceOf(KeywayError);
    expect((error as KeywayError).code).toBe(ErrorCode.FILE_NOT_FOUND);
    expect((error as KeywayError).message).toContain(`sink "counts": cannot open file for writing: ${path}`);
  });

  it("fails open() with FILE_NOT_FOUND when the path is a directory", async () => {
    await expect(fileSink(dir).open({ name: "counts", log: recordingLogger() })).rejects.toMatchObject({
      code: ErrorCode.FILE_NOT_FOUND,
    });
  });
});
