// The ws-ingest benchmark's app: counts the records of source "in" and emits the running count
// once every COUNT_EVERY records, so the driver, listening as the tcp sink's peer, sees the count
// reach what it sent without the sink costing anything per record. Stateless on purpose (a
// closure counter, not a keyed state stage): the figure is the WebSocket source's ingest through
// the engine's batch loop, not the keyed path, which word-count and tcp-latency measure. It runs on
// one process only (the counter is per process).
import { pipeline } from "keyway";

/** The driver sends a multiple of this; the last count it sees is then the total. */
export const COUNT_EVERY = 10_000;
const NONE: readonly string[] = [];
let seen = 0;

export default pipeline("ws-count")
  .source("in")
  .flatMap((_message: string) => (++seen % COUNT_EVERY === 0 ? [String(seen)] : NONE))
  .sink("out");
