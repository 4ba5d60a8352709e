// The TCP latency benchmark's app: the smallest pipeline that still exercises the keyed path.
// Each line is "<key>,<seq>,<sentAtMs>"; it is routed by its key, counted in that key's state and
// passed through unchanged, so the driver can read its own send timestamp back.
import { pipeline } from "keyway";

export default pipeline("passthrough")
  .source("in")
  .keyBy((line: string) => line.slice(0, line.indexOf(",")))
  .state(
    () => ({ seen: 0 }),
    (line, s) => {
      s.seen += 1;
      return line;
    },
  )
  .sink("out");
