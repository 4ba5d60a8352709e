/**
 * The exchange over real gRPC between two exchanges in this process: a broken stream is
 * reopened and only what the receiver lacks is sent again, every batch applied once and in
 * order; an outsider's bad frames are refused on that stream alone.
 */
import * as grpc from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import { CHANNEL_OPTIONS, CLUSTER_VERSION, createExchange, type BatchIn, type Exchange } from "../src/exchange/grpc-exchange.ts";
import { ExchangeService, type LinkResponse } from "../src/protocol/gen/keyway/v1/cluster_pb.ts";
import { createLogger } from "../src/log/logger.ts";
import { clientDefinition } from "../src/rpc/grpc-adapter.ts";
import { tokenMetadata } from "../src/rpc/cluster-token.ts";

const log = createLogger("silent");
const TOKEN = "t0ken";
const cleanup: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanup.splice(0)) c();
});

function serve(exchange: Exchange, port = 0): Promise<{ server: grpc.Server; port: number }> {
  const server = new grpc.Server(CHANNEL_OPTIONS);
  server.addService(exchange.definition, exchange.service);
  return new Promise((resolve, reject) =>
    server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve({ server, port: bound }))),
  );
}

/** A receiving exchange "w1" that records every batch's first byte, in the order applied. */
function receiver(): { exchange: Exchange; applied: number[] } {
  const applied: number[] = [];
  const exchange = createExchange({
    self: () => "w1",
    token: TOKEN,
    log,
    receive: (batch: BatchIn) => {
      applied.push(batch.payload[0]!);
      return { applied: Promise.resolve(), done: Promise.resolve() };
    },
  });
  cleanup.push(() => exchange.close());
  return { exchange, applied };
}

function sender(): Exchange {
  const exchange = createExchange({ self: () => "w0", token: TOKEN, log, receive: () => ({ applied: Promise.resolve(), done: Promise.resolve() }) });
  cleanup.push(() => exchange.close());
  return exchange;
}

const batch = (n: number) => ({ epoch: 1, pipeline: 0, stage: 0, toSink: false, hops: 0, records: 1, payload: Uint8Array.of(n) });

describe("the exchange over gRPC", () => {
  it("reopens a broken link and sends again only what the receiver had not applied: each batch once, in order", async () => {
    const { exchange: receiving, applied } = receiver();
    let { server, port } = await serve(receiving);
    const sending = sender();
    await sending.setPeers([{ id: "w1", address: `127.0.0.1:${port}` }]);
    const first = Array.from({ length: 100 }, (_, i) => sending.send("w1", batch(i)));
    await Promise.all(first);
    // The receiver's server goes away mid-run (its link state stays, as a worker's does) and comes back.
    server.forceShutdown();
    const during = Array.from({ length: 100 }, (_, i) => sending.send("w1", batch(100 + i)));
    await new Promise((r) => setTimeout(r, 200));
    ({ server } = await serve(receiving, port));
    cleanup.push(() => server.forceShutdown());
    await Promise.all(during);
    expect(applied).toEqual(Array.from({ length: 200 }, (_, i) => i % 256));
    expect(sending.backlog()).toEqual({ out: 0, in: 0 });
  });

  it("refuses a link without the token, one that does not open first, and one that skips a sequence", async () => {
    const { exchange: receiving, applied } = receiver();
    const { server, port } = await serve(receiving);
    cleanup.push(() => server.forceShutdown());
    const Client = grpc.makeGenericClientConstructor(clientDefinition(ExchangeService), "ExchangeService");
    const outcome = (token: string | undefined, frames: object[]): Promise<string> => {
      const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
      cleanup.push(() => client.close());
      const call = (client as unknown as { Link(meta: grpc.Metadata): grpc.ClientDuplexStream<object, LinkResponse> }).Link(tokenMetadata(token));
      for (const f of frames) call.write(f);
      return new Promise((resolve) => call.on("error", (err: grpc.ServiceError) => resolve(`${err.code}: ${err.details}`)));
    };
    const open = { kind: { case: "open", value: { from: "w9", version: CLUSTER_VERSION } } };
    const at = (seq: bigint) => ({ kind: { case: "batch", value: { seq, epoch: 1n, records: 1, payload: Uint8Array.of(7) } } });
    expect(await outcome(undefined, [open])).toBe("16: wrong or missing cluster token");
    expect(await outcome(TOKEN, [at(1n)])).toBe("3: a link starts with LinkOpen, then carries batches");
    expect(await outcome(TOKEN, [open, at(1n), at(3n)])).toMatch(/^9: batch 3 from w9 after 1: a batch is missing$/);
    expect(await outcome(TOKEN, [{ kind: { case: "open", value: { from: "w9", version: { major: 9, minor: 0 } } } }])).toBe(`9: cluster protocol 9 is not ${CLUSTER_VERSION.major}`);
    // Only the one good batch was applied; the receiver serves on.
    expect(applied).toEqual([7]);
  });
});
