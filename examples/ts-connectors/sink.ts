// A minimal sink: prints the app sink "counts" to stdout, each output once (by its record id,
// within the last 100000 ids), until Ctrl-C.
//   node --import tsx examples/ts-connectors/sink.ts        (engine: KEYWAY_ENGINE, default 127.0.0.1:7700)
import { createIdWindow, runSink } from "keyway/sdk";

const stop = new AbortController();
process.once("SIGINT", () => stop.abort());

await runSink(
  { engine: process.env.KEYWAY_ENGINE ?? "127.0.0.1:7700", target: "counts", connectorName: "example-sink", token: process.env.KEYWAY_TOKEN, dedup: createIdWindow(100_000), signal: stop.signal },
  async ({ records }) => {
    process.stdout.write(records.map((r) => `${Buffer.from(r.value).toString("utf8")}\n`).join(""));
  },
);
