/**
 * The cluster server's HTTP/2 receive window: a connection is asked for RECEIVE_WINDOW_BYTES a
 * stream, not HTTP/2's 64 KiB (grpc-js has no server option for it; a grpc-js upgrade that drops
 * the hook would make links stall every 64 KiB again, silently: this says so).
 */
import { connect, type Settings } from "node:http2";
import * as grpc from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import { RECEIVE_WINDOW_BYTES, widenReceiveWindow } from "../src/rpc/receive-window.ts";

const cleanup: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanup.splice(0)) c();
});

const bound = (server: grpc.Server): Promise<number> =>
  new Promise((resolve, reject) => server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, port) => (err === null ? resolve(port) : reject(err))));

/** The stream window the server asks of a new connection, once its settings have arrived. */
const askedWindow = (port: number): Promise<number | undefined> =>
  new Promise((resolve) => {
    const session = connect(`http://127.0.0.1:${port}`);
    cleanup.push(() => session.destroy());
    let latest: number | undefined;
    session.on("remoteSettings", (settings: Settings) => (latest = settings.initialWindowSize));
    // The server's first SETTINGS and the wider one it sends at once are both in by a ping's answer.
    session.once("connect", () => session.ping(() => resolve(latest)));
  });

describe("cluster server receive window", () => {
  it("asks each connection for RECEIVE_WINDOW_BYTES a stream once widened", async () => {
    const plain = new grpc.Server();
    cleanup.push(() => plain.forceShutdown());
    expect(await askedWindow(await bound(plain))).toBe(65_535);

    const widened = new grpc.Server();
    cleanup.push(() => widened.forceShutdown());
    const port = await bound(widened);
    widenReceiveWindow(widened);
    expect(await askedWindow(port)).toBe(RECEIVE_WINDOW_BYTES);
  });
});
