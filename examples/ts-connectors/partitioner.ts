// A partition function in its own process: keys each word by the word itself, exactly as the
// in-app `.keyBy((word) => word)` does, for apps that key by `partitioner("words")`.
//   node --import tsx examples/ts-connectors/partitioner.ts [ENGINE_HOST:PORT]
import { runPartitioner } from "keyway/sdk";

const stop = new AbortController();
for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => stop.abort());
const decoder = new TextDecoder();

await runPartitioner(
  { engine: process.argv[2] ?? process.env.KEYWAY_ENGINE ?? "127.0.0.1:7700", target: "words", connectorName: "example-partitioner", token: process.env.KEYWAY_TOKEN, signal: stop.signal },
  // Values arrive encoded: a string value as its UTF-8 bytes.
  (value) => decoder.decode(value),
);
