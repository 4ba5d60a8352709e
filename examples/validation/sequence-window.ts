// The sequence-window validation app, after Wallaroo's: per key, the inputs are 1, 2, 3, ...; the
// state is the last four; each output is that window. Loss, duplication, reordering or state lost
// in a move all show up as a window that is not the one the checker expects.
// Input lines: "<key> <n>". Output lines: "<key> <n-3>,<n-2>,<n-1>,<n>" (fewer at the start).
import { pipeline } from "keyway";

const WINDOW = 4;

export default pipeline("sequence-window")
  .source("in")
  .map((line: string) => {
    const space = line.indexOf(" ");
    return { key: line.slice(0, space), n: Number(line.slice(space + 1)) };
  })
  .keyBy((r) => r.key)
  .state(
    () => ({ window: [] as number[] }),
    (r, s) => {
      s.window.push(r.n);
      if (s.window.length > WINDOW) s.window.shift();
      return `${r.key} ${s.window.join(",")}`;
    },
  )
  .sink("out");
