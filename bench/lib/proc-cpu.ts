/** CPU time of a running process read from /proc (Linux), for sampling a child between two moments. */
import { readFileSync } from "node:fs";

/** USER_HZ: the unit of utime and stime in /proc/<pid>/stat; 100 on every Linux ABI Node runs on. */
const CLOCK_TICKS_PER_SEC = 100;

/** User + system CPU seconds of every thread of `pid` so far; null when it cannot be read. */
export function procCpuSec(pid: number): number | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null;
  }
  // The command name (field 2) may hold spaces; the fields after it are fixed.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return Number.isFinite(utime) && Number.isFinite(stime) ? (utime + stime) / CLOCK_TICKS_PER_SEC : null;
}
