import { describe, expect, it } from "vitest";
import { checkSequenceWindows } from "../examples/validation/check.ts";

const good = ["a 1", "b 1", "a 1,2", "a 1,2,3", "b 1,2", "a 1,2,3,4", "a 2,3,4,5"].join("\n");

describe("sequence-window checker", () => {
  it("accepts correct windows and counts keys and outputs", () => {
    expect(checkSequenceWindows(good, new Map([["a", 5], ["b", 2]]))).toEqual({ ok: true, keys: 2, outputs: 7, problems: [] });
  });

  it("catches loss, duplication, reordering and wrong state", () => {
    expect(checkSequenceWindows("a 1\na 1,2,3").problems[0]).toMatch(/loss/);
    expect(checkSequenceWindows("a 1\na 1,2\na 1,2").problems[0]).toMatch(/duplication or reordering/);
    expect(checkSequenceWindows("a 1\na 2\n").problems[0]).toMatch(/wrong state|duplication/);
    expect(checkSequenceWindows("a 1\na 1,3,2").problems[0]).toMatch(/expected 1,2/);
    expect(checkSequenceWindows(good, new Map([["a", 6]])).problems).toEqual(["key a: reached 5, expected 6 (loss)"]);
  });
});
