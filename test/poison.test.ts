import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { expectOneLineError, runKeyway, scratchDir } from "./helpers/process.ts";

/** An app whose head throws on lines starting "boom" and whose state step throws on records ending " bad". */
function poisonApp(dir: string, asyncUpdate = false): string {
  const app = join(dir, "app.ts");
  writeFileSync(
    app,
    `import { pipeline } from "keyway";
export default pipeline("poison")
  .source("in")
  .map((line: string) => {
    if (line.startsWith("boom")) throw new Error("boom line");
    return line;
  })
  .keyBy((line: string) => line.split(" ")[0]!)
  .state(() => ({ n: 0 }), ${asyncUpdate ? "async " : ""}(line: string, s: { n: number }, key) => {
    if (line.endsWith(" bad")) throw new Error("bad record");
    s.n++;
    return \`\${String(key)} \${s.n}\`;
  })
  .sink("out");
`,
  );
  return app;
}

const lines = (path: string) => readFileSync(path, "utf8").split("\n").filter((l) => l !== "");

describe("poison records", () => {
  it("stops the run on a record a head step throws on, naming the pipeline, the stage and the record's position, and saying how to go on", async () => {
    const dir = scratchDir("poison-head");
    writeFileSync(join(dir, "in.txt"), "a 1\nb 1\nboom 1\na 2\n");
    await expectOneLineError(
      ["run", poisonApp(dir), "--source", `in=file:${join(dir, "in.txt")}`, "--sink", `out=file:${join(dir, "out.txt")}`],
      1,
      /^keyway: error \[RECORD_FAILED\]: pipeline "poison", head \(the steps before the first keyBy\), record \d+#2: boom line \(run with --dead-letter URI to send failing records there and go on\)$/,
    );
  });

  it("stops the run on a record a state step throws on, naming the stage and the key", async () => {
    const dir = scratchDir("poison-state");
    writeFileSync(join(dir, "in.txt"), "a 1\nb 1\na bad\n");
    await expectOneLineError(
      ["run", poisonApp(dir), "--source", `in=file:${join(dir, "in.txt")}`, "--sink", `out=file:${join(dir, "out.txt")}`],
      1,
      /^keyway: error \[RECORD_FAILED\]: pipeline "poison", keyed stage 1, record in the source batch ending at position \d+, key "a": bad record \(run with --dead-letter/,
    );
  });

  it("with --dead-letter sends each failing record there with its error, stage and position, and goes on: the other outputs are exact", async () => {
    const dir = scratchDir("poison-dead-letter");
    writeFileSync(join(dir, "in.txt"), "a 1\nb 1\nboom 1\na bad\na 2\nb 2\n");
    const result = await runKeyway(["run", poisonApp(dir), "--source", `in=file:${join(dir, "in.txt")}`, "--sink", `out=file:${join(dir, "out.txt")}`,
      "--dead-letter", `file:${join(dir, "dead.txt")}`]);
    expect(result.code, result.stderr).toBe(0);
    expect(lines(join(dir, "out.txt"))).toEqual(["a 1", "b 1", "a 2", "b 2"]);
    const dead = lines(join(dir, "dead.txt")).map((l) => JSON.parse(l) as Record<string, string>);
    expect(dead).toHaveLength(2);
    expect(dead[0]).toMatchObject({ pipeline: "poison", stage: "head (the steps before the first keyBy)", error: "boom line", value: "boom 1" });
    expect(dead[0]!.position).toMatch(/^\d+#2$/);
    expect(dead[1]).toMatchObject({ pipeline: "poison", stage: "keyed stage 1", key: "a", error: "bad record", value: "a bad" });
  });

  it("refuses a state step that returns a Promise at the first record, dead-letter or not", async () => {
    const dir = scratchDir("poison-async");
    writeFileSync(join(dir, "in.txt"), "a 1\n");
    await expectOneLineError(
      ["run", poisonApp(dir, true), "--source", `in=file:${join(dir, "in.txt")}`, "--sink", `out=file:${join(dir, "out.txt")}`, "--dead-letter", `file:${join(dir, "dead.txt")}`],
      1,
      /^keyway: error \[BAD_APP\]: pipeline "poison": its state update function returned a Promise; steps must be synchronous/,
    );
  });

  it("refuses --dead-letter in a cluster, for now, with one line and exit 2", async () => {
    const dir = scratchDir("poison-cluster");
    await expectOneLineError(
      ["run", poisonApp(dir), "--source", `in=file:${join(dir, "in.txt")}`, "--sink", `out=file:${join(dir, "out.txt")}`, "--workers", "2", "--dead-letter", `file:${join(dir, "dead.txt")}`],
      2,
      /^keyway: error \[USAGE\]: --dead-letter is not supported in a cluster yet/,
    );
  });
});
