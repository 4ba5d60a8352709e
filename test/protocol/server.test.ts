/** The server as a whole: handshake, Describe, health, binding its address, shutdown, redirect. */
import { createServer, type Server as NetServer } from "node:net";
import * as grpc from "@grpc/grpc-js";
import { service as healthService } from "grpc-health-check";
import { afterEach, describe, expect, it } from "vitest";
import { isKeywayError } from "../../src/errors.ts";
import { silentLogger } from "../../src/log/logger.ts";
import { ConnectorService, DescribeRequestSchema, ErrorCode, type DescribeResponse } from "../../src/protocol/gen/keyway/v1/connector_pb.ts";
import { clientDefinition } from "../../src/rpc/grpc-adapter.ts";
import { startConnectorServer } from "../../src/protocol/index.ts";
import { create } from "@bufbuild/protobuf";
import { TestPartitioner, TestSink, TestSource } from "./helpers/connectors.ts";
import { startHarness, testApp, type Harness } from "./helpers/harness.ts";
import { client, closeClients, failure, hello, openSource } from "./helpers/raw-session.ts";

let harness: Harness | undefined;
let blocker: NetServer | undefined;
afterEach(async () => {
  closeClients();
  await harness?.stop();
  harness = undefined;
  blocker?.close();
  blocker = undefined;
});

function describeCall(address: string): Promise<DescribeResponse> {
  const method = clientDefinition(ConnectorService).Describe!;
  return new Promise((resolve, reject) =>
    client(address).makeUnaryRequest(method.path, method.requestSerialize, method.responseDeserialize as (b: Buffer) => DescribeResponse, create(DescribeRequestSchema), (err, response) =>
      err ? reject(err) : resolve(response!),
    ),
  );
}

describe("handshake", () => {
  it("welcomes a source with a session id, the negotiated version, credits and limits", async () => {
    harness = await startHarness({ limits: { maxBatchRecords: 8, maxMessageBytes: 64 * 1024, idempotencyWindow: 50 } });
    const session = openSource(harness.address);
    session.send(hello("in", { version: { major: 1, minor: 7 } }));
    const welcome = await session.next("welcome");
    expect(welcome.sessionId).not.toBe("");
    // The connector speaks 1.7, the engine 1.0: the minor is negotiated down.
    expect(welcome.version).toMatchObject({ major: 1, minor: 0 });
    // Two batches' worth, so the connector can send one while the engine processes the other.
    expect(welcome.initialCredits).toBe(16);
    expect(welcome.limits).toMatchObject({ maxBatchRecords: 8, maxMessageBytes: 64 * 1024, idempotencyWindow: 50 });
  });

  it("gives every session its own id; sinks and partitioners get no credits with the Welcome", async () => {
    harness = await startHarness();
    const a = await TestSource.connect(harness.address);
    const b = await TestSource.connect(harness.address);
    expect(a.welcome.sessionId).not.toBe(b.welcome.sessionId);
    const sink = await TestSink.connect(harness.address, "out", { credits: 0 });
    const partitioner = await TestPartitioner.connect(harness.address, { credits: 0 });
    expect(sink.welcome.initialCredits).toBe(0);
    expect(partitioner.welcome.initialCredits).toBe(0);
  });

  it("accepts the right token", async () => {
    harness = await startHarness({ token: "s3cret" });
    const source = await TestSource.connect(harness.address, "in", { token: "s3cret" });
    expect(source.welcome.sessionId).not.toBe("");
  });
});

describe("Describe and health", () => {
  it("describes the app's connector names, versions and limits, without a token", async () => {
    harness = await startHarness({ token: "s3cret", limits: { maxBatchRecords: 8 } });
    const described = await describeCall(harness.address);
    expect(described.app).toBe("protocol-test");
    expect(described.sources).toEqual(["in", "kin"]);
    expect(described.sinks).toEqual(["out", "kout"]);
    expect(described.partitioners).toEqual(["pk"]);
    expect(described.versions.map((v) => `${v.major}.${v.minor}`)).toEqual(["1.0"]);
    expect(described.limits).toMatchObject({ maxBatchRecords: 8, maxMessageBytes: 16 * 1024 * 1024, idempotencyWindow: 100_000 });
    expect(described.tokenRequired).toBe(true);
  });

  it("answers bytes that are not a health request with INVALID_ARGUMENT, and serves on", async () => {
    harness = await startHarness();
    const raw = (bytes: Buffer) => bytes;
    const Raw = grpc.makeGenericClientConstructor(
      { Check: { path: "/grpc.health.v1.Health/Check", requestStream: false, responseStream: false, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw } },
      "RawHealth",
    );
    const client = new Raw(harness.address, grpc.credentials.createInsecure());
    try {
      // A varint cut off after its first byte: does not decode.
      const err = await new Promise<grpc.ServiceError>((resolve) =>
        (client as unknown as { Check: (req: Buffer, cb: (err: grpc.ServiceError) => void) => void }).Check(Buffer.from([0x08, 0x80]), resolve),
      );
      expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(err.details).toMatch(/does not decode as \/grpc\.health\.v1\.Health\/Check/);
    } finally {
      client.close();
    }
    expect((await describeCall(harness.address)).app).toBe("protocol-test");
  });

  it.each(["", "keyway.v1.ConnectorService"])("answers the standard health check for service %j with SERVING", async (service) => {
    harness = await startHarness();
    const Health = grpc.makeGenericClientConstructor(healthService, "Health");
    const health = new Health(harness.address, grpc.credentials.createInsecure());
    try {
      const response = await new Promise<{ status: string }>((resolve, reject) =>
        (health as unknown as { Check: (req: object, cb: (err: Error | null, res: { status: string }) => void) => void }).Check({ service }, (err, res) =>
          err ? reject(err) : resolve(res),
        ),
      );
      expect(response.status).toBe("SERVING");
    } finally {
      health.close();
    }
  });
});

describe("the server's address", () => {
  it("binds an ephemeral port and reports it", async () => {
    harness = await startHarness();
    expect(harness.address).toMatch(/^127\.0\.0\.1:[1-9]\d*$/);
  });

  it("fails with PORT_IN_USE when the address is taken", async () => {
    blocker = createServer();
    await new Promise<void>((resolve) => blocker!.listen(0, "127.0.0.1", () => resolve()));
    const { port } = blocker.address() as { port: number };
    const started = startConnectorServer({
      app: testApp,
      listen: `127.0.0.1:${port}`,
      sourceTargets: ["in"],
      sinkTargets: [],
      partitioners: [],
      log: silentLogger(),
    });
    const err = await started.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isKeywayError(err) && err.code).toBe("PORT_IN_USE");
    expect((err as Error).message).toBe(`cannot listen on 127.0.0.1:${port} for connectors: address in use`);
  });
});

describe("ending every session", () => {
  it("sends every session Error SHUTTING_DOWN, then status UNAVAILABLE, on close", async () => {
    harness = await startHarness();
    const source = await TestSource.connect(harness.address);
    const sink = await TestSink.connect(harness.address);
    const partitioner = await TestPartitioner.connect(harness.address);
    await harness.server.close();
    for (const session of [source.session, sink.session, partitioner.session]) {
      const { error, status } = await failure(session);
      expect(ErrorCode[error.code]).toBe("SHUTTING_DOWN");
      expect(grpc.status[status.code]).toBe("UNAVAILABLE");
    }
  });

  it("redirects every session: Redirect, then status UNAVAILABLE", async () => {
    harness = await startHarness();
    const source = await TestSource.connect(harness.address);
    const sink = await TestSink.connect(harness.address);
    harness.server.redirectAll("127.0.0.1:7799", "moved");
    for (const redirect of [await source.session.next("redirect"), await sink.session.next("redirect")]) {
      expect(redirect).toMatchObject({ address: "127.0.0.1:7799", reason: "moved" });
    }
    for (const status of [await source.session.status, await sink.session.status]) expect(grpc.status[status.code]).toBe("UNAVAILABLE");
  });

  it("ends a session with OK when its connector half-closes", async () => {
    harness = await startHarness();
    const source = await TestSource.connect(harness.address);
    source.session.end();
    expect(grpc.status[(await source.session.status).code]).toBe("OK");
  });
});
