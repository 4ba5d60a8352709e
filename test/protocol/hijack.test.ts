// The issue-12 hijack against the real processes: a session of another connector opens the bundled
// file source's stream and sends a record at 2^64-1. Before streams had owners the engine took it,
// and the file source's next run skipped its whole file and exited 0 with nothing delivered.
import { appendFileSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import { ErrorCode } from "../../src/protocol/gen/keyway/v1/connector_pb.ts";
import { expectExact, lineCount } from "../helpers/cluster.ts";
import { freePort, scratchDir, startKeyway, waitFor, type Running } from "../helpers/process.ts";
import { countWords, generateText } from "../helpers/text.ts";
import { closeClients, failure, hello, openSource, type Failure } from "./helpers/raw-session.ts";

const running: Running[] = [];
afterEach(() => {
  closeClients();
  for (const r of running.splice(0)) r.child.kill("SIGKILL");
});

const U64_MAX = 2n ** 64n - 1n;

/**
 * Another connector opens `stream` of source "lines" and, without waiting, sends a record at
 * 2^64-1. Resolves with the Error that ended its session, or undefined when the engine took the
 * stream (the record is then committed, and the session half-closed).
 */
async function hijack(engineAt: string, stream: string): Promise<Failure | undefined> {
  const session = openSource(engineAt);
  session.send(hello("lines", { connectorName: "intruder", instanceId: "intruder-1" }));
  await session.next("welcome");
  session.send({ kind: { case: "open", value: { stream } } });
  session.send({ kind: { case: "batch", value: { stream, records: [{ position: U64_MAX, value: Buffer.from("hijack") }] } } });
  const taken = session.next("committed").then(() => {
    session.end();
    return undefined;
  });
  return Promise.race([failure(session), taken]);
}

describe("stream ownership against the real file source", () => {
  it("another connector opening the file source's stream and sending position 2^64-1 gets STREAM_OWNED; the file source's next run delivers exactly the new lines", async () => {
    const dir = scratchDir("hijack");
    const input = join(dir, "in.txt");
    const output = join(dir, "out.txt");
    const first = generateText(12_000, 5);
    const second = generateText(12_000, 6);
    writeFileSync(input, first);
    const engineAt = `127.0.0.1:${await freePort()}`;
    const engine = startKeyway(["run", "examples/word-count/app.ts", "--source", "lines=connector", "--sink", "counts=connector", "--listen", engineAt]);
    running.push(engine);
    const sink = startKeyway(["connector", "file-sink", "--engine", engineAt, "--target", "counts", "--path", output, "--instance-id", "sink"]);
    running.push(sink);
    const source = (instance: string) => startKeyway(["connector", "file-source", "--engine", engineAt, "--target", "lines", "--path", input, "--instance-id", instance]);

    const run1 = source("run-1");
    running.push(run1);
    const finished1 = await run1.finished;
    expect(finished1.code, finished1.stderr).toBe(0);
    const firstCounts = countWords(first);
    const firstTotal = [...firstCounts.values()].reduce((a, b) => a + b, 0);
    await waitFor("the first run's counts at the sink", () => (lineCount(output) >= firstTotal ? true : undefined), 60_000);

    // The file source's stream is named by the file's absolute path; its session has ended.
    const attempt = await hijack(engineAt, resolve(input));
    expect(attempt, "the engine took another connector's stream").toBeDefined();
    expect(ErrorCode[attempt!.error.code]).toBe("STREAM_OWNED");
    expect(grpc.status[attempt!.status.code]).toBe("FAILED_PRECONDITION");

    // The file grows; the next run resumes after the lines the first one delivered.
    appendFileSync(input, second);
    const run2 = source("run-2");
    running.push(run2);
    const finished2 = await run2.finished;
    expect(finished2.code, finished2.stderr).toBe(0);
    const counts = countWords(first + second);
    const total = [...counts.values()].reduce((a, b) => a + b, 0);
    expect(total).toBeGreaterThan(firstTotal);
    await waitFor("every count at the sink", () => (lineCount(output) >= total ? true : undefined), 60_000);
    expect(lineCount(output)).toBe(total);
    expectExact(readFileSync(output, "utf8"), counts);
  });
});
