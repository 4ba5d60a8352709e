// The app `keyway conformance engine` expects the engine under test to run: every record of the
// source "in" reaches the sink "out" unchanged, routed through the partition function "pk".
//   keyway run conformance/engine-app.ts --source in=connector --sink out=connector --listen 127.0.0.1:7700 --token T
//   keyway conformance engine --target 127.0.0.1:7700 --token T --source in --sink out --partitioner pk
import { partitioner, pipeline } from "keyway";

export default pipeline("conformance")
  .source("in")
  .keyBy(partitioner("pk"))
  // No state is kept: each record passes through once, as it came.
  .state(
    () => ({}),
    (value: string) => value,
  )
  .sink("out");
