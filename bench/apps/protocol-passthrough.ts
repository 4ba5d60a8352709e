// The protocol benchmark's app: records from an external source process go through the keyed path
// unchanged to an external sink process. Each record is "k<key>,<seq>,<sentAtUs>"; it is routed
// by its key field (1000 keys) and a state stage returns it as it came, so the sink can check it
// byte for byte and read its send stamp back.
import { pipeline } from "keyway";

export default pipeline("protocol-passthrough")
  .source("in")
  .keyBy((record: string) => record.slice(0, record.indexOf(",")))
  .state(
    () => ({}),
    (record) => record,
  )
  .sink("out");
