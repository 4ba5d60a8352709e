import { describe, expect, it } from "vitest";
import { decimal } from "../src/util/decimal.ts";

describe("decimal", () => {
  it("gives String(n) for every integer to 10^5", () => {
    for (let n = 0; n <= 100_000; n++) if (decimal(n) !== String(n)) expect(decimal(n)).toBe(String(n));
  });

  it("gives String(n) at each group boundary, for random integers and at the largest safe integer", () => {
    const cases = [Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER - 1, 2 ** 32, 2 ** 31 - 1, 10_000_0000, 99_999_999, 100_000_000_000];
    for (let p = 4; p <= 15; p++) cases.push(10 ** p - 1, 10 ** p, 10 ** p + 1, 10 ** p + 10_000, 10 ** p * 3 + 7);
    let seed = 12345;
    for (let i = 0; i < 10_000; i++) {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      cases.push(Math.floor((seed / 2 ** 32) * Number.MAX_SAFE_INTEGER));
    }
    for (const n of cases) expect(decimal(n)).toBe(String(n));
  });
});
