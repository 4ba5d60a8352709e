/**
 * The decimal digits of a non-negative safe integer, without V8's number-string cache. `${n}`
 * and String(n) keep every string they make in that cache, so with a new number per record
 * (positions, sequences) each one outlives the young generation: the engine's scavenges copied
 * about 20 bytes a record, which made their pauses, and so p99 latency, longer.
 */

/** n -> its digits, for n < 10000; and the same padded to 4 digits, for the groups after the first. */
let head: string[] | undefined;
let group: string[] | undefined;

export function decimal(n: number): string {
  if (head === undefined || group === undefined) {
    head = [];
    group = [];
    for (let i = 0; i < 10_000; i++) {
      const digits = String(i);
      head.push(digits);
      group.push(digits.padStart(4, "0"));
    }
  }
  if (n < 10_000) return head[n]!;
  let digits = "";
  while (n >= 10_000) {
    const rest = Math.floor(n / 10_000);
    digits = group[n - rest * 10_000]! + digits;
    n = rest;
  }
  return head[n]! + digits;
}
