// The TCP latency baseline: the least a Node process can do and still be a line relay. It
// connects out to the sink peer, then listens; complete lines from any client are forwarded as
// they arrive (a partial line waits for its end), with Nagle off on both sides and socket
// backpressure honoured. The engine's path does the same framing work plus keying and state.
//
// usage: node tcp-relay.mjs LISTEN_PORT TARGET_HOST:TARGET_PORT
import { connect, createServer } from "node:net";

const [listenPortArg, target] = process.argv.slice(2);
const listenPort = Number(listenPortArg);
const [targetHost, targetPortArg] = (target ?? "").split(":");
if (!Number.isInteger(listenPort) || !targetHost || !targetPortArg) {
  process.stderr.write("usage: node tcp-relay.mjs LISTEN_PORT TARGET_HOST:TARGET_PORT\n");
  process.exit(2);
}

const NEWLINE = 0x0a;

function connectOut() {
  return new Promise((resolve) => {
    const attempt = () => {
      const socket = connect({ host: targetHost, port: Number(targetPortArg), noDelay: true });
      socket.once("connect", () => {
        socket.removeAllListeners("error");
        resolve(socket);
      });
      socket.once("error", () => setTimeout(attempt, 50));
    };
    attempt();
  });
}

const out = await connectOut();
out.on("error", (err) => {
  process.stderr.write(`tcp-relay: sink connection failed: ${err.message}\n`);
  process.exit(1);
});

const server = createServer({ noDelay: true }, (client) => {
  let partial = null;
  client.on("data", (chunk) => {
    const lastNewline = chunk.lastIndexOf(NEWLINE);
    if (lastNewline < 0) {
      partial = partial === null ? chunk : Buffer.concat([partial, chunk]);
      return;
    }
    let complete = chunk.subarray(0, lastNewline + 1);
    if (partial !== null) complete = Buffer.concat([partial, complete]);
    partial = lastNewline + 1 < chunk.length ? chunk.subarray(lastNewline + 1) : null;
    if (!out.write(complete)) {
      client.pause();
      out.once("drain", () => client.resume());
    }
  });
  client.on("error", () => client.destroy());
});
server.listen(listenPort, "127.0.0.1");

process.on("SIGTERM", () => {
  server.close();
  out.end(() => process.exit(0));
});
