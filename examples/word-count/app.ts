// Word count: one output line per input word, "<word> <running count>". Scale-independent: it
// names no worker count, so it runs unchanged on one process or a cluster.
import { pipeline } from "keyway";

export default pipeline("word-count")
  .source("lines")
  .flatMap((line: string) => line.toLowerCase().split(/[^\p{L}\p{N}]+/u).filter(Boolean))
  .keyBy((word) => word)
  .state(
    () => ({ count: 0 }),
    (word, s) => {
      s.count += 1;
      return `${word} ${s.count}`;
    },
  )
  .sink("counts");
