// Word count whose routing key comes from a partition function in Python (partitioner.py),
// attached over the connector protocol by the name "word-key". It counts exactly what
// examples/word-count/app.ts counts with its in-app keyBy: one output line per input word,
// "<word> <running count>".
import { partitioner, pipeline } from "keyway";

export default pipeline("word-count")
  .source("lines")
  .flatMap((line: string) => line.toLowerCase().split(/[^\p{L}\p{N}]+/u).filter(Boolean))
  .keyBy(partitioner("word-key"))
  .state(
    () => ({ count: 0 }),
    (word: string, s) => {
      s.count += 1;
      return `${word} ${s.count}`;
    },
  )
  .sink("counts");
