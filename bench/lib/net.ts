/** Loopback helpers for benchmarks that talk to the system under test over TCP. */
import { connect, createServer, type Server, type Socket } from "node:net";
import type { MeasuredChild } from "./child.ts";

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Listens on 127.0.0.1:port (0: any free port); resolves with the port. */
export function listen(server: Server, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => {
      server.off("error", reject);
      resolve((server.address() as { port: number }).port);
    });
  });
}

export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** A port free right now; the child binds it a moment later (a race we accept on a bench machine). */
export async function freePort(): Promise<number> {
  const server = createServer();
  const port = await listen(server, 0);
  await closeServer(server);
  return port;
}

/**
 * Connects to a child's listening port, retrying every retryMs until it listens, the child dies or
 * timeoutMs pass. A short retryMs suits a driver that times how soon a restarted child is back.
 */
export async function connectWhenListening(port: number, child: MeasuredChild, timeoutMs: number, retryMs = 50): Promise<Socket> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (child.exited()) throw new Error("exited before it listened");
    const socket = await new Promise<Socket | null>((resolve) => {
      const s = connect({ host: "127.0.0.1", port, noDelay: true });
      s.once("connect", () => {
        s.removeAllListeners("error");
        resolve(s);
      });
      s.once("error", () => resolve(null));
    });
    if (socket !== null) return socket;
    if (performance.now() > deadline) throw new Error(`did not listen on port ${port} within ${timeoutMs / 1000} s`);
    await sleep(retryMs);
  }
}

/** Writes text, waiting for the socket to drain when its buffer is full (the peer's pace). */
export function writeWithBackpressure(socket: Socket, text: string): Promise<void> {
  if (socket.write(text)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onDrain = () => {
      socket.off("close", onClose);
      resolve();
    };
    const onClose = () => {
      socket.off("drain", onDrain);
      reject(new Error("connection closed while writing"));
    };
    socket.once("drain", onDrain);
    socket.once("close", onClose);
  });
}
