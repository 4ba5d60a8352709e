/**
 * The checks a connector case may list in `expect`, each a judgement over everything the harness
 * recorded: it returns undefined when the connector kept the promise, or the reason it did not.
 * Checks read the trace only; they never wait (except for reading a probe).
 */
import type { Hello, PartitionBatch, PartitionKeys, RecordBatch } from "../../protocol/gen/keyway/v1/connector_pb.ts";
import type { Params } from "../case.ts";
import { readAcked } from "../fixture.ts";
import type { ConnectorCaseRun, ReceivedRecord } from "./case-run.ts";
import type { ScriptedSession } from "./scripted-session.ts";

export type ConnectorCheck = (run: ConnectorCaseRun, p: Params) => string | undefined | Promise<string | undefined>;

const taken = (run: ConnectorCaseRun): ScriptedSession[] => run.sessions.filter((s) => s.number > 0).sort((a, b) => a.number - b.number);

function session(run: ConnectorCaseRun, p: Params): ScriptedSession | string {
  const n = p.number("session", 1);
  return run.numbered(n) ?? `session ${n} never happened`;
}

function first<T>(items: Iterable<T>, fail: (item: T) => string | undefined): string | undefined {
  for (const item of items) {
    const reason = fail(item);
    if (reason !== undefined) return reason;
  }
  return undefined;
}

const hellos = (run: ConnectorCaseRun): Array<{ session: ScriptedSession; hello: Hello }> => run.hellos();

const records = (run: ConnectorCaseRun, s: ScriptedSession): ReceivedRecord[] => run.records(s);

/** Why a Hello after a move is not the same connector's, or undefined when it is (R-REDIRECT, R-FAILOVER). */
function identityChange(before: Hello, after: Hello): string | undefined {
  const differs = (["connectorName", "instanceId", "target", "token"] as const).filter((f) => after[f] !== before[f]);
  return differs.length === 0 ? undefined : differs.join(", ");
}

function label(run: ConnectorCaseRun, index: number): string {
  return `record ${index} ("${run.fixture.records![index - 1]}")`;
}

export const CONNECTOR_CHECKS: Readonly<Record<string, ConnectorCheck>> = {
  // ---- every role ----

  hello_first: (run) =>
    first(run.sessions, (s) => {
      const kind = s.firstReceived?.kind;
      return kind === undefined || kind === "hello" ? undefined : `the first message of ${s.describe()} was "${kind}", not Hello`;
    }),

  one_hello: (run) =>
    first(run.sessions, (s) => {
      const n = s.received("hello").length;
      return n <= 1 ? undefined : `${s.describe()} sent Hello ${n} times`;
    }),

  version_major: (run, p) => {
    const major = p.number("major", 1);
    return first(hellos(run), ({ session: s, hello }) =>
      hello.version?.major === major ? undefined : `${s.describe()}: Hello.version is ${hello.version === undefined ? "absent" : `${hello.version.major}.${hello.version.minor}`}, not major ${major}`,
    );
  },

  hello_target: (run) =>
    first(hellos(run), ({ session: s, hello }) =>
      hello.target === run.placeholders.target ? undefined : `${s.describe()}: Hello.target is "${hello.target}", not the configured "${run.placeholders.target}"`,
    ),

  hello_token: (run) =>
    first(hellos(run), ({ session: s, hello }) =>
      hello.token === run.target.token
        ? undefined
        : `${s.describe()}: Hello.token is ${hello.token === "" ? "empty" : "not the configured token"} (given in KEYWAY_TOKEN and {token})`,
    ),

  identity: (run) => {
    const all = hellos(run);
    const bad = all.find(({ hello }) => hello.connectorName === "" || hello.instanceId === "");
    if (bad !== undefined) return `${bad.session.describe()}: connector_name "${bad.hello.connectorName}", instance_id "${bad.hello.instanceId}": both should be non-empty`;
    if (all.length < 2) return `only ${all.length} session(s) seen; the case needs a reconnect to compare identities`;
    const { hello: h1 } = all[0]!;
    return first(all.slice(1), ({ session: s, hello }) =>
      hello.instanceId === h1.instanceId && hello.connectorName === h1.connectorName
        ? undefined
        : `${s.describe()}: identity ${hello.connectorName}/${hello.instanceId} differs from the first session's ${h1.connectorName}/${h1.instanceId}`,
    );
  },

  nothing_before_welcome: (run) =>
    first(taken(run), (s) => {
      const welcome = s.sent("welcome")[0];
      if (welcome === undefined) return undefined;
      const early = s.events.find((e) => e.dir === "in" && e.kind !== "hello" && e.seq < welcome.seq);
      return early === undefined ? undefined : `${s.describe()}: "${early.kind}" arrived ${welcome.t - early.t} ms before the Welcome was sent`;
    }),

  known_kinds_only: (run) =>
    first(run.sessions, (s) => {
      const odd = s.received().find((e) => e.kind === "unknown" || e.kind === "malformed");
      return odd === undefined ? undefined : `${s.describe()}: received a ${odd.kind === "unknown" ? "message with no kind known to version 1.0" : `message that does not parse (${String(odd.value)})`}`;
    }),

  sessions: (run, p) => {
    const n = run.sessions.length;
    const min = p.optionalNumber("min");
    const max = p.optionalNumber("max");
    const within = p.optionalString("during");
    if (min !== undefined && n < min) return `${n} session(s) opened; expected at least ${min}${within === undefined ? "" : ` ${within}`}`;
    if (max !== undefined && n > max) return `${n} sessions opened; expected at most ${max}${within === undefined ? "" : ` ${within}`}`;
    return undefined;
  },

  no_deadline: (run) =>
    first(run.sessions, (s) =>
      s.deadline === Infinity ? undefined : `${s.describe()} was opened with a deadline ${Math.round(s.deadline - Date.now())} ms from now; sessions are long-lived`,
    ),

  token_not_logged: (run) => {
    const token = run.target.token;
    for (const p of run.processes) {
      if (p.stderr().includes(token)) return "the token appears in the connector's standard error";
      if (p.stdout().includes(token)) return "the token appears in the connector's standard output";
    }
    return undefined;
  },

  exited_nonzero: (run) => {
    const exit = run.process?.exit;
    if (exit === undefined) return "the connector did not exit";
    if (exit.killed) return "the connector did not exit by itself";
    if (exit.code === 0) return "the connector exited with code 0; a configuration error must exit non-zero";
    return undefined;
  },

  redirect_followed: (run) => {
    const redirected = taken(run).find((s) => s.sent("redirect").length > 0);
    if (redirected === undefined) return "no session was redirected";
    const redirectSeq = redirected.sent("redirect")[0]!.seq;
    const next = run.sessions.find((s) => s.arrivedSeq > redirectSeq);
    if (next === undefined) return "no session followed the Redirect";
    if (next.at !== "secondary") return "after the Redirect the connector dialled its configured address again, not the one redirected to";
    if (next.hello === undefined) return "the session at the redirected address sent no Hello";
    const differs = identityChange(redirected.hello!, next.hello);
    return differs === undefined ? undefined : `the Hello at the redirected address differs in ${differs}`;
  },

  failed_over: (run) => {
    const stopped = run.stopped;
    if (stopped === undefined) return "no engine address went away in this case";
    const lost = taken(run).filter((s) => s.at === stopped.at && s.arrivedSeq < stopped.seq).at(-1);
    if (lost?.hello === undefined) return `no session was open at the ${stopped.at} address when it went away`;
    const next = run.sessions.find((s) => s.arrivedSeq > stopped.seq);
    if (next === undefined) return `after the ${stopped.at} address went away, no session came to the other address the Welcome listed`;
    if (next.hello === undefined) return "the session at the other address sent no Hello";
    const differs = identityChange(lost.hello, next.hello);
    return differs === undefined ? undefined : `the Hello at the other address differs in ${differs}`;
  },

  half_closed: (run, p) => {
    const s = session(run, p);
    if (typeof s === "string") return s;
    if (s.endedHow === "half-close") return undefined;
    if (s.endedHow === undefined) return `${s.describe()} was still open; the connector should half-close it once settled`;
    return `${s.describe()} ended by ${s.endedHow === "cancelled" ? "cancellation (or the process ending)" : "the harness"}, not by a half-close`;
  },

  // ---- source ----

  credits_respected: (run) =>
    first(run.sessions, (s) => {
      let granted = 0;
      let spent = 0;
      for (const e of s.events) {
        if (e.dir === "out" && e.kind === "welcome") granted += (e.value as { initialCredits: number }).initialCredits;
        if (e.dir === "out" && e.kind === "credits") granted += (e.value as { records: number }).records;
        if (e.dir === "in" && e.kind === "batch") {
          spent += (e.value as RecordBatch).records.length;
          if (spent > granted) return `${s.describe()}: ${spent} records sent with ${granted} credit${granted === 1 ? "" : "s"} granted so far`;
        }
      }
      return undefined;
    }),

  positions_valid: (run) =>
    first(run.sessions, (s) => {
      const last = new Map<string, bigint>();
      for (const r of records(run, s)) {
        if (r.position < 1n) return `${s.describe()}: a record on "${r.stream}" at position ${r.position}; positions start at 1`;
        const before = last.get(r.stream) ?? 0n;
        if (r.position <= before) return `${s.describe()}: position ${r.position} on "${r.stream}" after ${before}; positions must strictly increase`;
        last.set(r.stream, r.position);
      }
      return undefined;
    }),

  batch_limit: (run) =>
    first(run.sessions, (s) => {
      const max = (s.sent("welcome")[0]?.value as { limits?: { maxBatchRecords: number } } | undefined)?.limits?.maxBatchRecords;
      if (max === undefined) return undefined;
      const big = s.received("batch").find((e) => (e.value as RecordBatch).records.length > max);
      return big === undefined ? undefined : `${s.describe()}: a RecordBatch of ${(big.value as RecordBatch).records.length} records; Welcome.limits.max_batch_records is ${max}`;
    }),

  streams_valid: (run) =>
    first(run.sessions, (s) => {
      const opened = new Set<string>();
      const requested = new Set<string>();
      for (const e of s.events) {
        const stream = (e.value as { stream?: string } | undefined)?.stream;
        if (e.dir === "out" && e.kind === "opened") opened.add(stream!);
        if (e.dir !== "in") continue;
        if (e.kind === "open") {
          if (stream === "") return `${s.describe()}: OpenStream with an empty stream name`;
          if (requested.has(stream!)) return `${s.describe()}: stream "${stream}" opened twice in one session`;
          requested.add(stream!);
        }
        if ((e.kind === "batch" || e.kind === "end") && !opened.has(stream!)) {
          return `${s.describe()}: ${e.kind === "batch" ? "RecordBatch" : "EndStream"} for "${stream}" before its StreamOpened`;
        }
      }
      return undefined;
    }),

  resume_respected: (run, p) => {
    const s = session(run, p);
    if (typeof s === "string") return s;
    const resume = new Map(s.sent("opened").map((e) => [(e.value as { stream: string }).stream, (e.value as { resumeAfter: bigint }).resumeAfter]));
    const replayed = records(run, s).filter((r) => r.position <= (resume.get(r.stream) ?? 0n));
    if (replayed.length === 0) return undefined;
    const r = replayed[0]!;
    return `${s.describe()}: ${replayed.length} record(s) at or below resume_after ${resume.get(r.stream)} were sent again (first at position ${r.position}); resume after it`;
  },

  delivered: (run, p) => {
    const s = session(run, p);
    if (typeof s === "string") return s;
    const from = run.recordIndex(p.raw("from") ?? 1, "delivered");
    const through = run.recordIndex(p.raw("through") ?? "last", "delivered");
    const seen = new Set(records(run, s).map((r) => r.index));
    const missing: number[] = [];
    for (let i = from; i <= through; i++) if (!seen.has(i)) missing.push(i);
    if (missing.length === 0) return undefined;
    return `${s.describe()}: ${missing.length} of records ${from}..${through} never arrived (first: ${label(run, missing[0]!)})`;
  },

  in_order: (run, p) => {
    if (run.fixture.ordered === false) return undefined;
    const s = session(run, p);
    if (typeof s === "string") return s;
    let last = 0;
    for (const r of records(run, s)) {
      if (r.index === undefined) continue;
      if (r.index < last) return `${s.describe()}: ${label(run, r.index)} arrived after record ${last}; the upstream order is ${run.fixture.records!.slice(0, 3).join(", ")}...`;
      last = r.index;
    }
    return undefined;
  },

  original_positions: (run, p) => {
    // After its own restart a queue-style source numbers redeliveries anew (protocol §7.9).
    if (p.boolean("position_replay_only", false) && run.fixture.replay === "queue") return undefined;
    const s = session(run, p);
    if (typeof s === "string") return s;
    for (const r of records(run, s)) {
      if (r.index === undefined) continue;
      const original = run.records().find((o) => o.index === r.index && o.session.number < s.number && o.session.number > 0);
      if (original !== undefined && (original.position !== r.position || original.stream !== r.stream)) {
        return `${s.describe()}: ${label(run, r.index)} was resent at ${r.stream}@${r.position}; it was first sent at ${original.stream}@${original.position}`;
      }
    }
    return undefined;
  },

  end_stream: (run, p) => {
    const s = session(run, p);
    if (typeof s === "string") return s;
    const ends = s.received("end");
    if (ends.length === 0) return `${s.describe()}: no EndStream`;
    for (const end of ends) {
      const stream = (end.value as { stream: string }).stream;
      const late = s.received("batch").find((e) => e.seq > end.seq && (e.value as RecordBatch).stream === stream);
      if (late !== undefined) return `${s.describe()}: a RecordBatch on "${stream}" after its EndStream`;
      const again = s.received("end").find((e) => e.seq > end.seq && (e.value as { stream: string }).stream === stream);
      if (again !== undefined) return `${s.describe()}: EndStream for "${stream}" sent twice`;
    }
    return undefined;
  },

  acked_at_most: (run, p) => {
    const name = p.string("probe");
    const acked = run.probes.get(name);
    if (acked === undefined) return `probe "${name}" was not taken`;
    const max = p.number("records");
    return acked <= max ? undefined : `${acked} records were acknowledged upstream when only ${max} were committed (probe "${name}")`;
  },

  acked_eventually: async (run) => {
    const total = run.fixture.records?.length ?? 0;
    const acked = await readAcked(run.fixture.acks!, total, run.placeholders, () => run.process?.stdout() ?? "");
    return acked >= total ? undefined : `${acked} of ${total} committed records were acknowledged upstream; the acks probe may not work`;
  },

  ids_stable: (run) => {
    const ids = new Map<number, string>();
    for (const r of run.records()) {
      if (r.index === undefined) continue;
      if (r.idempotencyId === "") return `${label(run, r.index)} has no idempotency_id; a queue-style source should set one (R-SRC-IDEMPOTENCY)`;
      const before = ids.get(r.index);
      if (before !== undefined && before !== r.idempotencyId) return `${label(run, r.index)} was redelivered with idempotency_id "${r.idempotencyId}", first "${before}"`;
      ids.set(r.index, r.idempotencyId);
    }
    return undefined;
  },

  // ---- sink ----

  // An Ack{s} settles, by the engine's rule, every batch sent on the session with a sequence up to
  // s, including a lower one resent after s and possibly still in flight when the sink acked. A
  // sink cannot know of those, so it is held only to what it must have received: batch s and the
  // batches sent before it (a stream delivers in order). See docs/conformance.md, "ambiguities".
  acks_valid: (run) =>
    first(run.sessions, (s) => {
      const sentAt = new Map<bigint, number>();
      /** Batches an Ack settled, with the send order of the batch that Ack named. */
      const settledVia = new Map<bigint, number>();
      for (const e of s.events) {
        if (e.dir === "out" && e.kind === "batch") sentAt.set((e.value as { sequence: bigint }).sequence, e.seq);
        if (e.dir === "in" && e.kind === "ack") {
          const seq = (e.value as { sequence: bigint }).sequence;
          const named = sentAt.get(seq);
          if (named === undefined) return `${s.describe()}: Ack{${seq}} names a batch not sent on this session`;
          const via = settledVia.get(seq);
          if (via !== undefined && named < via) return `${s.describe()}: Ack{${seq}} names a batch an earlier Ack already settled`;
          for (const q of sentAt.keys()) if (q <= seq && !settledVia.has(q)) settledVia.set(q, named);
        }
      }
      return undefined;
    }),

  acks_after_write: async (run) => {
    for (const s of run.sessions) {
      const sent: Array<{ sequence: bigint; at: number; values: string[] }> = [];
      const settled = new Set<bigint>();
      for (const e of s.events) {
        if (e.dir === "out" && e.kind === "batch") {
          const sequence = (e.value as { sequence: bigint }).sequence;
          sent.push({ sequence, at: e.seq, values: run.sinkBatches.get(sequence)!.records.map((r) => r.value) });
        }
        if (e.dir !== "in" || e.kind !== "ack") continue;
        const seq = (e.value as { sequence: bigint }).sequence;
        const named = sent.find((b) => b.sequence === seq);
        if (named === undefined) continue;
        // What the sink had certainly received: batches sent up to the one the Ack names.
        const covered = sent.filter((b) => b.sequence <= seq && b.at <= named.at && !settled.has(b.sequence));
        for (const b of covered) settled.add(b.sequence);
        const needed = covered.flatMap((b) => b.values);
        const written = await run.writtenAtAck(e, needed);
        if (typeof written === "string") return written;
        const have = new Set(written);
        const missing = needed.filter((v) => !have.has(v));
        if (missing.length > 0) return `${s.describe()}: Ack{${seq}} arrived before ${missing.length} of its records were written (first: "${abbreviate(missing[0]!)}")`;
      }
    }
    return undefined;
  },

  written_once: async (run) => {
    const written = await run.readWritten();
    const counts = new Map<string, number>();
    for (const v of written) counts.set(v, (counts.get(v) ?? 0) + 1);
    for (const batch of run.sinkBatches.values()) {
      if (batch.sameAs !== undefined) continue;
      for (const r of batch.records) {
        const n = counts.get(r.value) ?? 0;
        if (n !== 1) return `record ${r.id} ("${abbreviate(r.value)}") was written ${n} times; each output must be written once (deduplicate by record id)`;
      }
    }
    return undefined;
  },

  credits_granted: (run, p) => {
    const s = session(run, p);
    if (typeof s === "string") return s;
    const wanted = run.creditsWanted(s, p.raw("at_least"), "credits_granted");
    let balance = 0;
    let peak = 0;
    for (const e of s.events) {
      if (e.dir === "in" && e.kind === "credits") balance += (e.value as { records: number }).records;
      if (e.dir === "out" && e.kind === "batch") {
        const v = e.value as { records?: unknown[]; values?: unknown[] };
        balance -= (v.records ?? v.values ?? []).length;
      }
      peak = Math.max(peak, balance);
    }
    return peak >= wanted ? undefined : `${s.describe()}: at most ${peak} credits were granted at once; at least ${wanted} (max_batch_records) should be`;
  },

  // ---- partitioner ----

  answers_valid: (run) =>
    first(run.sessions, (s) => {
      const sent = new Map<bigint, number>();
      const answered = new Set<bigint>();
      for (const e of s.events) {
        if (e.dir === "out" && e.kind === "batch") {
          const b = e.value as Pick<PartitionBatch, "requestId" | "values">;
          sent.set(b.requestId, b.values.length);
        }
        if (e.dir !== "in" || e.kind !== "keys") continue;
        const k = e.value as PartitionKeys;
        const count = sent.get(k.requestId);
        if (count === undefined) return `${s.describe()}: an answer to request ${k.requestId}, which was not sent on this session`;
        if (answered.has(k.requestId)) return `${s.describe()}: request ${k.requestId} answered twice`;
        answered.add(k.requestId);
        if (k.keys.length !== count) return `${s.describe()}: request ${k.requestId} had ${count} values but was answered with ${k.keys.length} keys`;
        const empty = k.keys.findIndex((key) => key.kind.case === undefined);
        if (empty >= 0) return `${s.describe()}: key ${empty} of request ${k.requestId} sets neither text nor raw`;
      }
      return undefined;
    }),

  answered: (run, p) => {
    const s = session(run, p);
    if (typeof s === "string") return s;
    const ids = (p.raw("requests") as string[]).map((id) => BigInt(id));
    const answeredIds = new Set(run.answers(s).map((a) => a.keys.requestId));
    const missing = ids.filter((id) => !answeredIds.has(id));
    return missing.length === 0 ? undefined : `${s.describe()}: request(s) ${missing.join(", ")} never answered`;
  },

  deterministic: (run) => {
    const keyOf = new Map<string, string>();
    for (const s of run.sessions) {
      for (const { keys } of run.answers(s)) {
        const values = run.requests.get(keys.requestId);
        if (values === undefined) continue;
        for (const [i, key] of keys.keys.entries()) {
          const value = Buffer.from(values[i] ?? []).toString("utf8");
          const k = describeKey(key);
          const before = keyOf.get(value);
          if (before !== undefined && before !== k) return `value "${abbreviate(value)}" got key ${k} and earlier ${before}; a partition function must be deterministic`;
          keyOf.set(value, k);
        }
      }
    }
    return keyOf.size > 0 ? undefined : "no request was answered";
  },

  keys_match_fixture: (run) => {
    const expected = run.fixture.keys!;
    for (const s of run.sessions) {
      for (const { keys } of run.answers(s)) {
        const values = run.requests.get(keys.requestId) ?? [];
        for (const [i, key] of keys.keys.entries()) {
          const value = Buffer.from(values[i] ?? []).toString("utf8");
          const want = expected[value];
          if (want === undefined) continue;
          const got = key.kind.case === "text" ? key.kind.value : key.kind.case === "raw" ? Buffer.from(key.kind.value).toString("utf8") : undefined;
          if (got !== want) return `value "${value}" got key ${describeKey(key)}; the fixture expects "${want}"`;
        }
      }
    }
    return undefined;
  },
};

function describeKey(key: PartitionKeys["keys"][number]): string {
  if (key.kind.case === "text") return `text:"${abbreviate(key.kind.value)}"`;
  if (key.kind.case === "raw") return `raw:${Buffer.from(key.kind.value).toString("hex").slice(0, 40)}`;
  return "(none)";
}

function abbreviate(text: string): string {
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}
