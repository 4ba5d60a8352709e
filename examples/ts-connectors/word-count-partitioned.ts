// Word count keyed by a partition function attached over gRPC (examples/ts-connectors/partitioner.ts)
// instead of an in-app keyBy. Its output equals examples/word-count/app.ts's.
import { partitioner, pipeline } from "keyway";

export default pipeline("word-count-partitioned")
  .source("lines")
  .flatMap((line: string) => line.toLowerCase().split(/[^\p{L}\p{N}]+/u).filter(Boolean))
  .keyBy(partitioner("words"))
  .state(
    () => ({ count: 0 }),
    (word: string, s) => {
      s.count += 1;
      return `${word} ${s.count}`;
    },
  )
  .sink("counts");
