// The suite fails when it should: each deliberately broken connector of conformance/negative-controls
// fails exactly the cases its breakage breaks, and passes every other. Where a control has two
// breaks with disjoint cases, each run also shows the other's cases pass unbroken; the partitioner
// also runs unbroken.
import { describe, expect, it } from "vitest";
import type { Role } from "../../src/conformance/wire.ts";
import { ids, NODE_TSX, runSuite } from "./helpers/suites.ts";

interface Control {
  role: Role;
  script: string;
  args: string[];
  fixture: string;
  /** --break mode -> the cases it must fail. */
  breaks: Record<string, string[]>;
}

const CONTROLS: Control[] = [
  {
    role: "source",
    script: "conformance/negative-controls/source.ts",
    args: ["--input", "{workdir}/in.txt", "--acks", "{workdir}/acks"],
    fixture: "negative-controls/source.fixture.json",
    breaks: {
      credits: ["source.credits-initial", "source.credits-zero", "source.fresh-session"],
      "early-ack": ["source.commit-gates-ack"],
      "from-zero": ["source.resume-after-reconnect", "source.resume-after-restart"],
    },
  },
  {
    role: "partitioner",
    script: "conformance/negative-controls/partitioner.ts",
    args: [],
    fixture: "negative-controls/partitioner.fixture.json",
    breaks: {
      none: [],
      "no-answer": [
        "partitioner.unknown-fields",
        "partitioner.answer",
        "partitioner.answer-large-ids",
        "partitioner.deterministic",
        "partitioner.expected-keys",
        "partitioner.resent-request",
        "partitioner.large-message",
      ],
      "no-failover": ["partitioner.failover"],
    },
  },
  {
    role: "sink",
    script: "conformance/negative-controls/sink.ts",
    args: ["--out", "{workdir}/out.txt"],
    fixture: "negative-controls/sink.fixture.json",
    breaks: {
      "no-dedup": ["sink.redelivery", "sink.ids-opaque", "sink.replay-window"],
      "ack-before-write": ["sink.ack-after-write", "sink.ack-out-of-order"],
      "fixed-window": ["sink.replay-window"],
    },
  },
];

/** A whole suite, with a control that waits out every bounded wait of its broken cases, on a loaded machine. */
const SUITE_MS_MAX = 600_000;

describe.concurrent("negative controls", () => {
  for (const control of CONTROLS) {
    for (const [mode, expected] of Object.entries(control.breaks)) {
      it(`${control.role} --break ${mode} fails exactly ${expected.length === 0 ? "nothing" : expected.join(", ")}`, async () => {
        const summary = await runSuite(control.role, [...NODE_TSX, control.script, ...control.args, "--break", mode], control.fixture);
        const reasons = summary.results.filter((r) => r.status !== "pass" && r.status !== "skip").map((r) => `${r.id}: ${r.reason}`);
        expect(ids(summary.results, "fail"), reasons.join("\n")).toEqual(expected);
        expect(ids(summary.results, "error")).toEqual([]);
        // Every case applies to the controls: the fixture declares acks, writes and keys.
        const skipped = control.role === "source" ? ["source.idempotency-ids"] : [];
        expect(ids(summary.results, "skip")).toEqual(skipped);
      }, SUITE_MS_MAX);
    }
  }
});
