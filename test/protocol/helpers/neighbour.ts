/**
 * A healthy source and sink pair beside a misbehaving session: source "in", stream "healthy",
 * through the upper pipeline to sink "out". flows() sends the next records and waits for their
 * Committed and their outputs, proving the engine and other sessions go on.
 */
import { expect } from "vitest";
import { records, TestSink, TestSource } from "./connectors.ts";
import type { HelloFields } from "./raw-session.ts";

const STREAM = "healthy";
const RECORDS_PER_ROUND = 3;

export interface Neighbour {
  source: TestSource;
  sink: TestSink;
  /** Sends the next round of records and waits until every one is committed and delivered. */
  flows(): Promise<void>;
}

export async function healthyNeighbour(address: string, fields: HelloFields = {}): Promise<Neighbour> {
  const sink = await TestSink.connect(address, "out", { token: fields.token });
  const source = await TestSource.connect(address, "in", fields);
  await source.open(STREAM);
  let sent = 0;
  const neighbour: Neighbour = {
    source,
    sink,
    async flows() {
      const from = sent + 1;
      sent += RECORDS_PER_ROUND;
      await source.send(STREAM, records(from, sent, "h"));
      await source.untilCommitted(STREAM, sent);
      await sink.untilValues(sent);
      expect(sink.values().filter((v) => v.startsWith("H"))).toEqual(records(1, sent, "H").map((r) => r.value));
    },
  };
  await neighbour.flows();
  return neighbour;
}
