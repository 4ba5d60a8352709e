/**
 * The checks an engine case may list in `expect`: judgements over everything the harness's
 * sessions sent and received. Each returns undefined when the engine kept the promise, or why not.
 */
import type { PartitionBatch, SinkBatch, Welcome } from "../../protocol/gen/keyway/v1/connector_pb.ts";
import type { Params } from "../case.ts";
import type { EngineCaseRun } from "./case-run.ts";
import type { ClientSession } from "./client-session.ts";

/** grpc.health.v1.HealthCheckResponse.ServingStatus.SERVING */
const SERVING = 1;
const HOST_PORT = /^.+:\d+$/;

/** A SinkBatch or a PartitionBatch: records or values. */
type BatchOfEither = { records?: unknown[]; values?: unknown[] };

export type EngineCheck = (run: EngineCaseRun, p: Params) => string | undefined;

function first<T>(items: Iterable<T>, fail: (item: T) => string | undefined): string | undefined {
  for (const item of items) {
    const reason = fail(item);
    if (reason !== undefined) return reason;
  }
  return undefined;
}

/** Records the engine sent a sink or partitioner session against the credits it had granted. */
function creditsRespected(s: ClientSession): string | undefined {
  let granted = 0;
  let received = 0;
  for (const e of s.events) {
    if (e.dir === "out" && e.kind === "credits") granted += (e.value as { records: number }).records;
    if (e.dir === "in" && e.kind === "batch") {
      const v = e.value as BatchOfEither;
      received += (v.records ?? v.values ?? []).length;
      if (received > granted) return `session ${s.name} (${s.role}) received ${received} records with ${granted} credits granted`;
    }
  }
  return undefined;
}

const mine = (run: EngineCaseRun, value: string): boolean => value.startsWith(`${run.runId}:`);

export const ENGINE_CHECKS: Readonly<Record<string, EngineCheck>> = {
  describe_ok: (run) => {
    const d = run.describeResponse;
    if (d === undefined) return "Describe was not called";
    if (!d.versions.some((v) => v.major === 1)) return `Describe.versions (${d.versions.map((v) => `${v.major}.${v.minor}`).join(", ")}) lacks major 1`;
    if (d.limits === undefined || d.limits.maxBatchRecords === 0 || d.limits.maxMessageBytes === 0) return "Describe.limits is absent or holds a zero limit";
    const { source, sink, partitioner, token } = run.target;
    if (source !== undefined && !d.sources.includes(source)) return `Describe.sources (${d.sources.join(", ")}) lacks "${source}"`;
    if (sink !== undefined && !d.sinks.includes(sink)) return `Describe.sinks (${d.sinks.join(", ")}) lacks "${sink}"`;
    if (partitioner !== undefined && !d.partitioners.includes(partitioner)) return `Describe.partitioners (${d.partitioners.join(", ")}) lacks "${partitioner}"`;
    const tokenGiven = token !== undefined && token !== "";
    if (d.tokenRequired !== tokenGiven) return `Describe.token_required is ${d.tokenRequired}, but the harness was ${tokenGiven ? "" : "not "}given a token`;
    return undefined;
  },

  cluster_addresses: (run) => {
    if (run.describeResponse === undefined) return "Describe was not called";
    const lists: Array<[string, readonly string[]]> = [["Describe", run.describeResponse.clusterAddresses]];
    for (const s of run.sessions.values()) if (s.welcome !== undefined) lists.push([`the Welcome of session ${s.name}`, s.welcome.clusterAddresses]);
    if (lists.length === 1) return "no session was welcomed";
    const dialled = run.target.address;
    return first(lists, ([where, addresses]) => {
      const malformed = addresses.find((a) => !HOST_PORT.test(a));
      if (malformed !== undefined) return `${where} lists "${malformed}" in cluster_addresses; each entry is host:port`;
      if (!addresses.includes(dialled)) return `${where} lists [${addresses.join(", ")}] in cluster_addresses, without ${dialled}, the address the harness dialled`;
      return undefined;
    });
  },

  health_serving: (run) =>
    first(run.health, ([service, status]) =>
      status === SERVING ? undefined : `health Check for service "${service}" answered ${typeof status === "string" ? status : `status ${status}`}, not SERVING (1), without a token`,
    ),

  sink_credits_respected: (run) => first(run.ofRole("sink"), creditsRespected),

  partition_credits_respected: (run) => first(run.ofRole("partitioner"), creditsRespected),

  batch_limits: (run) =>
    first([...run.ofRole("sink"), ...run.ofRole("partitioner")], (s) => {
      const max = (s.welcome as Welcome | undefined)?.limits?.maxBatchRecords;
      if (max === undefined) return undefined;
      const big = s.received("batch").find((e) => {
        const v = e.value as BatchOfEither;
        const n = (v.records ?? v.values ?? []).length;
        return n > max || n === 0;
      });
      if (big === undefined) return undefined;
      const v = big.value as BatchOfEither;
      return `session ${s.name} received a batch of ${(v.records ?? v.values ?? []).length} records; batches hold 1 to max_batch_records (${max})`;
    }),

  outputs_once: (run, p) => {
    const values = run.values(p, "outputs_once");
    const copies = new Map<string, Set<string>>();
    for (const o of run.outputs()) {
      if (!values.includes(o.value)) continue;
      // A batch resent with the same sequence is one delivery; a new sequence is a new output.
      const set = copies.get(o.value) ?? new Set<string>();
      set.add(`${o.sequence}/${o.id}`);
      copies.set(o.value, set);
    }
    for (const v of values) {
      const n = copies.get(v)?.size ?? 0;
      if (n !== 1) return `the input ${v} produced ${n} outputs; replays and duplicates must be dropped, and nothing accepted lost`;
    }
    return undefined;
  },

  outputs_absent: (run, p) => {
    const values = new Set(run.values(p, "outputs_absent"));
    const seen = run.outputs().find((o) => values.has(o.value));
    return seen === undefined ? undefined : `the input ${seen.value} produced an output; it should have been dropped`;
  },

  ids_deterministic: (run, p) => {
    const stream = run.stream(p.string("stream"));
    const idOf = new Map<string, string>();
    const valueOf = new Map<string, string>();
    for (const o of run.outputs()) {
      if (!mine(run, o.value) || !o.value.includes(`:${stream}:`)) continue;
      const position = o.value.slice(o.value.lastIndexOf(":") + 1);
      // The conformance app emits each record once, from its one keyed stage: path 0.0 (§8.6).
      const suffix = `:${stream}@${position}:0.0`;
      if (!o.id.endsWith(suffix)) return `the output of ${stream}@${position} has id "${o.id}"; §8.6 makes it "<pipeline>${suffix}"`;
      const before = idOf.get(o.value);
      if (before !== undefined && before !== o.id) return `the output of ${o.value} had id "${before}" and then "${o.id}"; ids must be deterministic`;
      idOf.set(o.value, o.id);
      const other = valueOf.get(o.id);
      if (other !== undefined && other !== o.value) return `id "${o.id}" names two outputs (${other} and ${o.value}); ids must be unique`;
      valueOf.set(o.id, o.value);
    }
    return idOf.size > 0 ? undefined : `no output of stream ${stream} arrived`;
  },

  sequences_consecutive: (run, p) => {
    const s = run.session(p.string("session"), "sequences_consecutive");
    let highest: bigint | undefined;
    for (const e of s.received("batch")) {
      const sequence = (e.value as SinkBatch).sequence;
      if (sequence < 1n) return `session ${s.name} received batch sequence ${sequence}; sequences start at 1`;
      if (highest !== undefined && sequence > highest && sequence !== highest + 1n) {
        return `session ${s.name}, the only sink session, received batch ${sequence} after ${highest}; new batches are numbered one after another`;
      }
      if (highest === undefined || sequence > highest) highest = sequence;
    }
    return highest === undefined ? `session ${s.name} received no batch` : undefined;
  },

  redelivered: (run, p) => {
    const from = run.session(p.string("from"), "redelivered");
    const to = run.session(p.string("to"), "redelivered");
    const acked = new Set(from.sent("ack").map((e) => (e.value as { sequence: bigint }).sequence));
    const unacked = from.received("batch").map((e) => e.value as SinkBatch).filter((b) => ![...acked].some((a) => a >= b.sequence));
    const mineUnacked = unacked.filter((b) => b.records.some((r) => mine(run, Buffer.from(r.value).toString("utf8"))));
    if (mineUnacked.length === 0) return `session ${from.name} received none of this case's outputs to leave unacked`;
    const later = to.received("batch").map((e) => e.value as SinkBatch);
    for (const b of mineUnacked) {
      const index = later.findIndex((l) => l.sequence === b.sequence);
      if (index < 0) return `batch ${b.sequence}, unacked when session ${from.name} ended, was not resent to ${to.name}`;
      const again = later[index]!;
      const same = again.records.length === b.records.length && again.records.every((r, i) => r.id === b.records[i]!.id && Buffer.from(r.value).equals(Buffer.from(b.records[i]!.value)));
      if (!same) return `batch ${b.sequence} was resent with different records; a resend keeps its records and ids`;
      const newer = later.slice(0, index).find((l) => l.sequence > b.sequence && !unacked.some((u) => u.sequence === l.sequence));
      if (newer !== undefined) return `newer batch ${newer.sequence} was sent to ${to.name} before resent batch ${b.sequence}`;
    }
    return undefined;
  },

  request_redelivered: (run, p) => {
    const from = run.session(p.string("from"), "request_redelivered");
    const to = run.session(p.string("to"), "request_redelivered");
    const id = run.requestIds.get(p.string("request"));
    if (id === undefined) return `request "${p.string("request")}" was never seen`;
    const original = from.received("batch").map((e) => e.value as PartitionBatch).find((b) => b.requestId === id)!;
    const again = to.received("batch").map((e) => e.value as PartitionBatch).find((b) => b.requestId === id);
    if (again === undefined) return `request ${id}, unanswered when session ${from.name} ended, was not re-sent to ${to.name}`;
    const same = again.values.length === original.values.length && again.values.every((v, i) => Buffer.from(v).equals(Buffer.from(original.values[i]!)));
    return same ? undefined : `request ${id} was re-sent with different values`;
  },

  commits_monotonic: (run, p) => {
    const stream = run.stream(p.string("stream"));
    let highestSent = 0n;
    let last = 0n;
    const events = [...run.sessions.values()].filter((s) => s.role === "source").flatMap((s) => s.events.map((e) => ({ s, e }))).sort((a, b) => a.e.seq - b.e.seq);
    for (const { s, e } of events) {
      const v = e.value as { stream?: string; position?: bigint; committed?: bigint; records?: Array<{ position: bigint }> } | undefined;
      if (v?.stream !== stream) continue;
      if (e.dir === "out" && e.kind === "batch") for (const r of v.records!) if (r.position > highestSent) highestSent = r.position;
      const committed = e.kind === "committed" || e.kind === "ended" ? v.position! : e.kind === "opened" ? v.committed! : undefined;
      if (e.dir !== "in" || committed === undefined) continue;
      if (committed < last) return `session ${s.name}: ${e.kind} reports ${committed} committed after ${last}; commits never go back`;
      if (committed > highestSent) return `session ${s.name}: ${e.kind} reports ${committed} committed, above the highest position sent (${highestSent})`;
      last = committed;
    }
    return last > 0n ? undefined : `nothing on ${stream} was reported committed`;
  },

  credits_regranted: (run, p) => {
    const s = run.session(p.string("session"), "credits_regranted");
    const initial = s.welcome?.initialCredits ?? 0;
    const sent = s.sent("batch").reduce((n, e) => n + (e.value as { records: unknown[] }).records.length, 0);
    const grants = s.received("credits").length;
    if (grants === 0) return `session ${s.name} got no Credits after its Welcome (${initial} initial) while records were taken`;
    return sent > initial ? undefined : `only ${sent} records were sent, not more than the ${initial} initial credits`;
  },

  no_error: (run, p) => {
    const s = run.session(p.string("session"), "no_error");
    const error = s.received("error")[0];
    return error === undefined ? undefined : `session ${s.name} got ${run.ending(s)}`;
  },
};
