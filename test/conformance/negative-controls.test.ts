// The suite fails when it should: each deliberately broken connector or engine of
// conformance/negative-controls fails exactly the cases its breakage breaks, and passes every other.
// Where a control has two breaks with disjoint cases, each run also shows the other's cases pass
// unbroken; the partitioner and the engine also run unbroken.
import { describe, expect, it } from "vitest";
import { loadCases, runEngineSuite, selectCases, type RunSummary } from "../../src/conformance/index.ts";
import type { Role } from "../../src/conformance/wire.ts";
import { freePort, startNode } from "../helpers/process.ts";
import { ids, NODE_TSX, runSuite, waitListening } from "./helpers/suites.ts";

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

/**
 * The engine control serves a source's handshake and nothing else (no records flow), so it runs the
 * cases made of Hello, Welcome and OpenStream alone.
 */
const ENGINE_CONTROL: { script: string; cases: string[]; breaks: Record<string, string[]> } = {
  script: "conformance/negative-controls/engine.ts",
  cases: [
    "engine.welcome-source",
    "engine.hello-first",
    "engine.second-hello",
    "engine.version-major",
    "engine.version-absent",
    "engine.version-minor",
    "engine.check-order",
    "engine.check-order-version-first",
    "engine.token-wrong",
    "engine.token-missing",
    "engine.unknown-target",
    "engine.status-details-bounded",
  ],
  breaks: { none: [], "unbounded-details": ["engine.status-details-bounded"] },
};
const ENGINE_START_MS_MAX = 30_000;

/** A whole suite, with a control that waits out every bounded wait of its broken cases, on a loaded machine. */
const SUITE_MS_MAX = 600_000;

function expectFailsExactly(summary: RunSummary, expected: string[], skipped: string[]): void {
  const reasons = summary.results.filter((r) => r.status !== "pass" && r.status !== "skip").map((r) => `${r.id}: ${r.reason}`);
  expect(ids(summary.results, "fail"), reasons.join("\n")).toEqual(expected);
  expect(ids(summary.results, "error")).toEqual([]);
  expect(ids(summary.results, "skip")).toEqual(skipped);
}

describe.concurrent("negative controls", () => {
  for (const control of CONTROLS) {
    for (const [mode, expected] of Object.entries(control.breaks)) {
      it(`${control.role} --break ${mode} fails exactly ${expected.length === 0 ? "nothing" : expected.join(", ")}`, async () => {
        const summary = await runSuite(control.role, [...NODE_TSX, control.script, ...control.args, "--break", mode], control.fixture);
        // Every case applies to the controls: the fixture declares acks, writes and keys.
        expectFailsExactly(summary, expected, control.role === "source" ? ["source.idempotency-ids"] : []);
      }, SUITE_MS_MAX);
    }
  }

  for (const [mode, expected] of Object.entries(ENGINE_CONTROL.breaks)) {
    it(`engine --break ${mode} fails exactly ${expected.length === 0 ? "nothing" : expected.join(", ")} of its handshake cases`, async () => {
      const address = `127.0.0.1:${await freePort()}`;
      const token = "t-engine-token";
      const engine = startNode(["--import", "tsx", ENGINE_CONTROL.script, "--listen", address, "--source", "in", "--token", token, "--break", mode]);
      try {
        await waitListening(address, ENGINE_START_MS_MAX);
        const summary = await runEngineSuite({ address, token, source: "in" }, selectCases(loadCases("engine"), ENGINE_CONTROL.cases));
        expectFailsExactly(summary, expected, []);
      } finally {
        engine.child.kill("SIGTERM");
        await engine.finished;
      }
    }, SUITE_MS_MAX);
  }
});
