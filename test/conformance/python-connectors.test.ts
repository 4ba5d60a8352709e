// The Python connectors keep every promise the suite checks: the SDK's partition function example,
// the RabbitMQ example's totals sink, and the RabbitMQ source against a real broker (a node of
// this test's own, so the upstream acknowledgements are RabbitMQ's).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../helpers/process.ts";
import { PYTHON, requirePython } from "../python/helpers.ts";
import { startPrivateRabbitMQ, type PrivateRabbitMQ } from "./helpers/private-rabbitmq.ts";
import { failures, ids, runSuite } from "./helpers/suites.ts";

const SUITE_MS_MAX = 600_000;
const BROKER_MS_MAX = 180_000;

beforeAll(requirePython);

describe.concurrent("conformance of the Python connectors", () => {
  it("examples/python-partitioner/partitioner.py", async () => {
    const summary = await runSuite(
      "partitioner",
      [PYTHON, "examples/python-partitioner/partitioner.py", "--engine", "{engine}", "--target", "{target}", "--log-level", "WARNING"],
      "fixtures/python-partitioner.json",
    );
    expect(failures(summary)).toEqual([]);
    expect(ids(summary.results, "skip")).toEqual([]);
  }, SUITE_MS_MAX);

  it("examples/rabbitmq/totals_sink.py", async () => {
    const summary = await runSuite(
      "sink",
      [PYTHON, "examples/rabbitmq/totals_sink.py", "--engine", "{engine}", "--target", "{target}", "--totals", "{workdir}/totals.json", "--id-window", "1000", "--log-level", "WARNING"],
      "fixtures/python-totals-sink.json",
    );
    expect(failures(summary)).toEqual([]);
    expect(ids(summary.results, "skip")).toEqual([]);
  }, SUITE_MS_MAX);
});

describe("conformance of the RabbitMQ source", () => {
  let broker: PrivateRabbitMQ | undefined;
  const saved = new Map<string, string | undefined>();

  beforeAll(async () => {
    const amqpPort = await freePort();
    let distPort = await freePort();
    while (distPort === amqpPort) distPort = await freePort();
    broker = await startPrivateRabbitMQ(amqpPort, distPort);
    // The fixture's commands (publish.py, queues.py, rabbitmqctl) and the connector read these;
    // this file runs in a process of its own, so nothing else sees them.
    for (const [name, value] of Object.entries(broker.env)) {
      saved.set(name, process.env[name]);
      process.env[name] = value;
    }
  }, BROKER_MS_MAX);

  afterAll(async () => {
    for (const [name, value] of saved) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
    await broker?.stop();
  }, BROKER_MS_MAX);

  it("examples/rabbitmq/rabbitmq_source.py", async () => {
    const summary = await runSuite(
      "source",
      [PYTHON, "examples/rabbitmq/rabbitmq_source.py", "--engine", "{engine}", "--target", "{target}", "--queue", "conformance-{run}", "--prefetch", "100", "--log-level", "WARNING"],
      "fixtures/rabbitmq-source.json",
    );
    expect(failures(summary)).toEqual([]);
    // Unbounded: it never ends its stream.
    expect(ids(summary.results, "skip")).toEqual(["source.end-of-stream", "source.half-close"]);
  }, SUITE_MS_MAX);
});
