import { describe, expect, expectTypeOf, it } from "vitest";
import { app, partitioner, pipeline, toAppSpec, type Stream } from "../src/index.ts";
import { ErrorCode } from "../src/errors.ts";
import { createKeyHash } from "../src/routing/hash.ts";
import { equalRanges } from "../src/routing/partition-map.ts";
import { compileDataflow } from "../src/runtime/dataflow.ts";
import type { PipelineSpec } from "../src/app/spec.ts";
import type { Payload } from "../src/connector/types.ts";

/** Runs values through a dataflow as one source batch and returns the sink's values. */
async function run(flow: { process: ReturnType<typeof compileDataflow>["process"] }, values: Payload[]): Promise<Payload[]> {
  return (await flow.process({ values, position: 1n }, false)).values;
}

async function compile(p: PipelineSpec, slotCount = 64) {
  return compileDataflow(p, { hashOf: await createKeyHash(), placement: { map: equalRanges(slotCount, ["w0"], 1), self: 0 } });
}

describe("application API", () => {
  it("lets types flow through the chain", () => {
    const s = pipeline("p").source("in", (b) => b.length);
    expectTypeOf(s).toEqualTypeOf<Stream<number>>();
    expectTypeOf(s.map((n) => `${n}`)).toEqualTypeOf<Stream<string>>();
    expectTypeOf(s.flatMap((n) => [n, n])).toEqualTypeOf<Stream<number>>();
    const keyed = s.keyBy((n) => `${n}`).state(
      () => ({ total: 0 }),
      (n, st) => {
        st.total += n;
        return { total: st.total };
      },
    );
    expectTypeOf(keyed).toEqualTypeOf<Stream<{ total: number }>>();
    expectTypeOf(pipeline("q").source("in")).toEqualTypeOf<Stream<string>>();
  });

  it("is immutable: extending a stream twice gives two independent pipelines", () => {
    const base = pipeline("p").source("in").map((s) => s.trim());
    const a = base.filter((s) => s.length > 0).sink("a");
    const b = base.sink("b");
    expect(a.steps.map((s) => s.kind)).toEqual(["map", "filter"]);
    expect(b.steps.map((s) => s.kind)).toEqual(["map"]);
  });

  it("runs map, flatMap, filter, keyed state and a re-keyed second state stage", async () => {
    // Stage 1 counts words; stage 2 re-keys by the count and records which words reached it.
    const p = pipeline("p")
      .source("in")
      .flatMap((line) => line.split(" "))
      .filter((w) => w !== "")
      .map((w) => w.toUpperCase())
      .keyBy((w) => w)
      .state(
        () => ({ n: 0 }),
        (w, s) => {
          s.n++;
          return { w, n: s.n };
        },
      )
      .keyBy((r) => String(r.n))
      .state(
        () => ({ words: [] as string[] }),
        (r, s) => {
          s.words.push(r.w);
          return `${r.n}:${s.words.join(",")}`;
        },
      )
      .sink("out");
    const flow = await compile(p);
    expect(await run(flow, ["a b", "a  c"])).toEqual(["1:A", "1:A,B", "2:A", "1:A,B,C"]);
    expect(await run(flow, [new TextEncoder().encode("b")])).toEqual(["2:A,B"]);
    expect(flow.stores.map((s) => s.keyCount)).toEqual([3, 2]);
  });

  it("lets a state update emit nothing, one output or several", async () => {
    const p = pipeline("p")
      .source("in")
      .keyBy((v) => v)
      .state(
        () => ({ n: 0 }),
        (v, s) => {
          s.n++;
          if (s.n === 1) return undefined;
          if (s.n === 2) return `${v} twice`;
          return [`${v} again`, `${v} ${s.n}`];
        },
      )
      .sink("out");
    const flow = await compile(p);
    expect(await run(flow, ["x", "x", "x", "y"])).toEqual(["x twice", "x again", "x 3"]);
  });

  it("uses the source decoder and the sink encoder, JSON for objects by default", async () => {
    const decoded = pipeline("p")
      .source("in", (b) => JSON.parse(new TextDecoder().decode(b)) as { user: string; amount: number })
      .keyBy((m) => m.user)
      .state(
        () => ({ sum: 0 }),
        (m, s) => {
          s.sum += m.amount;
          return { user: m.user, sum: s.sum };
        },
      );
    const json = await compile(decoded.sink("out"));
    expect(await run(json, ['{"user":"u1","amount":3}', '{"user":"u1","amount":4}'])).toEqual([
      '{"user":"u1","sum":3}',
      '{"user":"u1","sum":7}',
    ]);
    const custom = await compile(decoded.sink("out", (r) => `${r.user}=${r.sum}`));
    expect(await run(custom, ['{"user":"u2","amount":1}'])).toEqual(["u2=1"]);
  });

  it("routes byte keys by their bytes", async () => {
    const p = pipeline("p")
      .source("in", (b) => b)
      .keyBy((b) => b.subarray(0, 1))
      .state(
        () => ({ n: 0 }),
        (_b, s, key) => {
          s.n++;
          return `${key[0]}:${s.n}`;
        },
      )
      .sink("out");
    const flow = await compile(p);
    expect(await run(flow, [new Uint8Array([1, 9]), new Uint8Array([2]), new Uint8Array([1])])).toEqual(["1:1", "2:1", "1:2"]);
  });

  it("refuses a keyBy that returns neither a string nor bytes", async () => {
    const p = pipeline("p")
      .source("in")
      .keyBy((v) => v.length as unknown as string)
      .state(() => ({}), () => undefined)
      .sink("out");
    const flow = await compile(p);
    await expect(run(flow, ["abc"])).rejects.toThrow(expect.objectContaining({ code: ErrorCode.BAD_APP }));
  });

  it("groups pipelines into an app and checks their names", () => {
    const a = pipeline("a").source("s1").sink("out");
    const b = pipeline("b").source("s2").sink("out");
    expect(app("both", a, b).pipelines).toHaveLength(2);
    expect(toAppSpec(a)?.pipelines).toEqual([a]);
    expect(toAppSpec({ default: 1 })).toBeUndefined();
    expect(() => app("dup", a, a)).toThrow(/two pipelines named "a"/);
    expect(() => app("shared", a, pipeline("c").source("s1").sink("x"))).toThrow(/both read source "s1"/);
    expect(() => app("none")).toThrow(/no pipelines/);
    expect(() => pipeline("bad name")).toThrow(expect.objectContaining({ code: ErrorCode.BAD_APP }));
    expect(() => pipeline("p").source("")).toThrow(/source name/);
  });
});

describe("record ids and partition functions in the dataflow", () => {
  const counter = (p: ReturnType<typeof pipeline>) =>
    p
      .source("in")
      .flatMap((line) => line.split(" "))
      .keyBy((w) => w)
      .state(
        () => ({ n: 0 }),
        (w, s) => {
          s.n++;
          return [`${w}`, `${w} ${s.n}`];
        },
      )
      .sink("out");

  it("gives each output an id from its source record and its index, stable on replay", async () => {
    const batch = { values: ["a b", "a"], position: 9n, recordIds: ["s@7", "s@8"] };
    const first = await (await compile(counter(pipeline("wc")))).process(batch, true);
    expect(first.ids).toEqual(["wc:s@7:0.0", "wc:s@7:0.1", "wc:s@7:1.0", "wc:s@7:1.1", "wc:s@8:0.0", "wc:s@8:0.1"]);
    const replay = await (await compile(counter(pipeline("wc")))).process(batch, true);
    expect(replay).toEqual(first);
    const positional = await (await compile(counter(pipeline("wc")))).process({ values: ["x"], position: 40n }, true);
    expect(positional.ids).toEqual(["wc:40#0:0.0", "wc:40#0:0.1"]);
  });

  it("asks the partition function for a whole batch of keys and routes by them", async () => {
    const asked: string[][] = [];
    const p = pipeline("p")
      .source("in")
      .keyBy(partitioner("first-letter"))
      .state(
        () => ({ n: 0 }),
        (v, s, key) => {
          s.n++;
          return `${typeof key === "string" ? key : "bytes"}:${v}:${s.n}`;
        },
      )
      .sink("out");
    const slotCount = 64;
    const flow = compileDataflow(p, {
      hashOf: await createKeyHash(),
      placement: { map: equalRanges(slotCount, ["w0"], 1), self: 0 },
      partition: async (name, values) => {
        const texts = values.map((v) => new TextDecoder().decode(v));
        asked.push([name, ...texts]);
        return texts.map((t) => t[0]!);
      },
    });
    expect(await run(flow, ["apple", "avocado", "banana"])).toEqual(["a:apple:1", "a:avocado:2", "b:banana:1"]);
    expect(asked).toEqual([["first-letter", "apple", "avocado", "banana"]]);
  });

  it("refuses to compile a partitioner stage without a partition service", async () => {
    const p = pipeline("p").source("in").keyBy(partitioner("k")).state(() => ({}), () => undefined).sink("out");
    await expect(compile(p)).rejects.toThrow(/no partitioner service/);
  });
});
