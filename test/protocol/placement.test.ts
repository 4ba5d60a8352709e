/**
 * The server as one worker of a cluster: Welcome and Describe list the cluster's addresses, a
 * Hello whose session belongs elsewhere is redirected, rebalance() moves live sessions, and
 * sessionCounts() reports them. A real server and engine, and a placement the test steers.
 */
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import { ConnectorService, DescribeRequestSchema, ErrorCode, type DescribeResponse } from "../../src/protocol/gen/keyway/v1/connector_pb.ts";
import type { SessionPlacement } from "../../src/protocol/index.ts";
import { clientDefinition } from "../../src/rpc/grpc-adapter.ts";
import { TestPartitioner, TestSink, TestSource } from "./helpers/connectors.ts";
import { startHarness, type Harness } from "./helpers/harness.ts";
import { client, closeClients, failure, hello, openSink, openSource } from "./helpers/raw-session.ts";

let harness: Harness | undefined;
afterEach(async () => {
  closeClients();
  await harness?.stop();
  harness = undefined;
});

function describeCall(address: string): Promise<DescribeResponse> {
  const method = clientDefinition(ConnectorService).Describe!;
  return new Promise((resolve, reject) =>
    client(address).makeUnaryRequest(method.path, method.requestSerialize, method.responseDeserialize as (b: Buffer) => DescribeResponse, create(DescribeRequestSchema), (err, response) =>
      err ? reject(err) : resolve(response!),
    ),
  );
}

const OTHER = "127.0.0.1:7781";
const THIRD = "127.0.0.1:7782";

/** A placement the test steers: `moved` maps "role/target" to where such sessions now belong. */
interface SteeredPlacement extends SessionPlacement {
  workers: string[];
  moved: Map<string, string>;
  asked: Array<{ role: string; target: string; instanceId: string }>;
}

function steered(workers: string[]): SteeredPlacement {
  const placement: SteeredPlacement = {
    workers,
    moved: new Map(),
    asked: [],
    addresses: () => placement.workers,
    redirectFor(role, target, instanceId) {
      placement.asked.push({ role, target, instanceId });
      return placement.moved.get(`${role}/${target}`);
    },
  };
  return placement;
}

describe("cluster addresses", () => {
  it("a single engine lists its own address in every Welcome and in Describe", async () => {
    harness = await startHarness();
    const source = await TestSource.connect(harness.address);
    const sink = await TestSink.connect(harness.address);
    const partitioner = await TestPartitioner.connect(harness.address);
    for (const welcome of [source.welcome, sink.welcome, partitioner.welcome]) expect(welcome.clusterAddresses).toEqual([harness.address]);
    expect((await describeCall(harness.address)).clusterAddresses).toEqual([harness.address]);
  });

  it("a worker lists what its placement says, read at each Welcome and Describe", async () => {
    const placement = steered([]);
    harness = await startHarness({ placement });
    placement.workers = [harness.address, OTHER];
    expect((await TestSource.connect(harness.address)).welcome.clusterAddresses).toEqual([harness.address, OTHER]);
    placement.workers = [OTHER, harness.address, THIRD];
    expect((await TestSink.connect(harness.address)).welcome.clusterAddresses).toEqual([OTHER, harness.address, THIRD]);
    expect((await describeCall(harness.address)).clusterAddresses).toEqual([OTHER, harness.address, THIRD]);
  });
});

describe("redirect at Hello", () => {
  it("answers a Hello whose session belongs on another worker with a Redirect, then UNAVAILABLE", async () => {
    const placement = steered([]);
    harness = await startHarness({ placement });
    placement.workers = [harness.address, OTHER];
    placement.moved.set("source/in", OTHER);
    const session = openSource(harness.address);
    session.send(hello("in", { instanceId: "rq-7" }));
    const redirect = await session.next("redirect");
    expect(redirect.address).toBe(OTHER);
    expect(redirect.reason).not.toBe("");
    expect(grpc.status[(await session.status).code]).toBe("UNAVAILABLE");
    expect(session.responses.map((r) => r.kind.case)).toEqual(["redirect"]);
    expect(placement.asked).toEqual([{ role: "source", target: "in", instanceId: "rq-7" }]);
    // Another target of the same role stays.
    const staying = await TestSource.connect(harness.address, "kin");
    expect(staying.welcome.sessionId).not.toBe("");
  });

  it("checks the Hello before asking the placement: a wrong token is refused, not redirected", async () => {
    const placement = steered([]);
    harness = await startHarness({ placement, token: "s3cret" });
    placement.moved.set("sink/out", OTHER);
    const session = openSink(harness.address);
    session.send(hello("out", { token: "wrong" }));
    const { error } = await failure(session);
    expect(ErrorCode[error.code]).toBe("UNAUTHENTICATED");
    expect(placement.asked).toEqual([]);
  });

  it("welcomes a session the placement sends to this very worker, rather than redirect it in a loop", async () => {
    const placement = steered([]);
    harness = await startHarness({ placement });
    placement.moved.set("source/in", harness.address);
    const source = await TestSource.connect(harness.address);
    expect(source.welcome.sessionId).not.toBe("");
  });
});

describe("rebalance", () => {
  it("redirects the live sessions the placement now puts elsewhere, and only those", async () => {
    const placement = steered([]);
    harness = await startHarness({ placement });
    const moving = await TestSource.connect(harness.address, "kin", { instanceId: "a" });
    const staying = await TestSource.connect(harness.address, "in", { instanceId: "b" });
    const sink = await TestSink.connect(harness.address);
    // A session still waiting to say Hello serves nothing yet, so it has nowhere to go.
    const silent = openSource(harness.address);
    expect(harness.server.rebalance("nothing moved")).toBe(0);

    placement.asked.length = 0;
    placement.moved.set("source/kin", OTHER);
    placement.moved.set("sink/out", THIRD);
    expect(harness.server.rebalance("w2 joined")).toBe(2);
    expect(await moving.session.next("redirect")).toMatchObject({ address: OTHER, reason: "w2 joined" });
    expect(await sink.session.next("redirect")).toMatchObject({ address: THIRD, reason: "w2 joined" });
    expect(placement.asked).toContainEqual({ role: "source", target: "kin", instanceId: "a" });
    expect(placement.asked).toContainEqual({ role: "source", target: "in", instanceId: "b" });

    // The session that stays keeps working.
    await staying.open("s");
    await staying.send("s", [{ position: 1, value: "still here" }]);
    await staying.untilCommitted("s", 1);
    expect(staying.session.responses.some((r) => r.kind.case === "redirect")).toBe(false);
    silent.send(hello("kin"));
    expect((await silent.next("redirect")).address).toBe(OTHER);
  });
});

describe("session counts", () => {
  it("counts live welcomed sessions by role", async () => {
    harness = await startHarness();
    expect(harness.server.sessionCounts()).toEqual({ source: 0, sink: 0, partitioner: 0 });
    const a = await TestSource.connect(harness.address);
    await TestSource.connect(harness.address, "kin");
    await TestSink.connect(harness.address);
    await TestPartitioner.connect(harness.address);
    // Not welcomed: no Hello yet, or a Hello refused.
    openSource(harness.address);
    const refused = openSink(harness.address);
    refused.send(hello("nope"));
    await refused.status;
    expect(harness.server.sessionCounts()).toEqual({ source: 2, sink: 1, partitioner: 1 });
    a.session.end();
    await a.session.status;
    expect(harness.server.sessionCounts()).toEqual({ source: 1, sink: 1, partitioner: 1 });
  });
});
