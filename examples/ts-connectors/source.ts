// A minimal source: sends a few lines to the app source "lines" and exits once the engine has
// committed them. Positions are the lines' numbers, so a rerun resends nothing the engine has.
//   node --import tsx examples/ts-connectors/source.ts      (engine: KEYWAY_ENGINE, default 127.0.0.1:7700)
import { runSource } from "keyway/sdk";

const lines = ["it was the best of times", "it was the worst of times", "it was the age of wisdom"];

await runSource(
  { engine: process.env.KEYWAY_ENGINE ?? "127.0.0.1:7700", target: "lines", connectorName: "example-source", token: process.env.KEYWAY_TOKEN },
  async (client) => {
    for (const [i, line] of lines.entries()) await client.send("dickens", line, { position: BigInt(i + 1) });
    await client.end("dickens");
  },
);
