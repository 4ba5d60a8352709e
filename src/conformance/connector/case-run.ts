/**
 * Runs one case against a connector: serves the engine side on two loopback ports (the second is
 * where Redirect points, and the other worker of a cluster), starts the connector with the case's
 * placeholders, performs the case's steps in order, then judges its checks over everything
 * recorded. Every wait has a deadline; the connector is killed and both servers closed whatever
 * happens.
 */
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Hello, PartitionKeys, RecordBatch, SinkRecord } from "../../protocol/gen/keyway/v1/connector_pb.ts";
import { GRPC_STATUS_OF } from "../../protocol/protocol-error.ts";
import { Params, type ConformanceCase, type Step } from "../case.ts";
import {
  cleanup,
  DEFAULT_PARTITION_VALUES,
  DEFAULT_SINK_VALUE,
  DEFAULT_TARGET,
  feed,
  readAcked,
  readProbe,
  STARTUP_TIMEOUT_MS_DEFAULT,
  substitute,
  type LoadedFixture,
  type Placeholders,
} from "../fixture.ts";
import { Notifier, sleep, WaitTimeout } from "../notifier.ts";
import { skipKindOf, verdictOf, type CaseResult, type UnmetNeed } from "../result.ts";
import { errorCodeOf, grpcStatusOf, unknownKindMessage, type Role } from "../wire.ts";
import { ConnectorProcess, describeExit } from "./connector-process.ts";
import { CONNECTOR_CHECKS } from "./checks.ts";
import { describeFor, startScriptedServer, type ScriptedServer, type ServedAt, type ServedCall } from "./scripted-server.ts";
import { ScriptedSession, type CaseClock, type TraceEvent } from "./scripted-session.ts";
import type { ServerTls } from "../../rpc/tls.ts";

export interface ConnectorTarget {
  role: Role;
  /** The connector's command and arguments, with placeholders. */
  command: string[];
  fixture: LoadedFixture;
  /** The token sessions must present: KEYWAY_TOKEN and {token}. */
  token: string;
  /** Where each case gets a fresh directory ({workdir}); default the system's temporary directory. */
  workdirBase?: string;
  /** Keep case directories afterwards (for debugging a connector). */
  keepWorkdirs?: boolean;
  /** Serve the scripted engine over TLS with this certificate (the connector's command names the CA to trust). */
  tls?: ServerTls;
}

/** A failed step: the case cannot go on, and this is why. */
export class StepFailure extends Error {}

export const DEFAULT_LIMITS = { maxBatchRecords: 10_000, maxMessageBytes: 16 * 1024 * 1024, idempotencyWindow: 100_000 };
const WAIT_MS_DEFAULT = 10_000;
const SETTLE_MS_DEFAULT = 500;
/** stdout reaches the harness on another channel than the Ack: a written value may lag an Ack by this much. */
const STDOUT_LAG_MS_MAX = 2_000;

/** A record as the harness received it. */
export interface ReceivedRecord {
  seq: number;
  session: ScriptedSession;
  stream: string;
  position: bigint;
  value: string;
  /** 1-based index of the fixture record with this value; undefined for a value the fixture does not list. */
  index: number | undefined;
  idempotencyId: string;
}

export interface SentBatch {
  sequence: bigint;
  records: Array<{ id: string; value: string }>;
  /** The batch whose records this one repeats under a new sequence. */
  sameAs?: bigint;
}

/**
 * A value of about `bytes` bytes: the padding goes where the template says {pad} (so a JSON value
 * stays JSON), else after the value.
 */
function padded(template: string, bytes: number, values: Placeholders): string {
  const value = substitute(template, { ...values, pad: "" });
  const fill = "x".repeat(Math.max(0, bytes - value.length - 1));
  return template.includes("{pad}") ? substitute(template, { ...values, pad: fill }) : `${value} ${fill}`;
}

export class ConnectorCaseRun {
  readonly notifier = new Notifier();
  readonly clock: CaseClock = { seq: 0, startMs: Date.now() };
  /** Every session of the case, in arrival order. */
  readonly sessions: ScriptedSession[] = [];
  current: ScriptedSession | undefined;
  private taken = 0;
  readonly processes: ConnectorProcess[] = [];
  readonly probes = new Map<string, number>();
  /** Sink: every batch the harness sent, by sequence. */
  readonly sinkBatches = new Map<bigint, SentBatch>();
  /** Sink: the written values read when each Ack arrived, by the Ack's event seq. */
  readonly ackSnapshots = new Map<number, Promise<string[] | string>>();
  /** Partitioner: the values of every request sent, by request id. */
  readonly requests = new Map<bigint, Uint8Array[]>();
  readonly placeholders: Placeholders;
  readonly workdir: string;
  readonly valueIndex: Map<string, number>;
  private servers: Record<ServedAt, ScriptedServer> | undefined;
  /** The address a stop_server step took away, and when. */
  stopped: { at: ServedAt; seq: number } | undefined;
  private refusing: { code: number; status: number } | undefined;
  private fed = false;
  private startedAt = 0;

  constructor(
    readonly spec: ConformanceCase,
    readonly target: ConnectorTarget,
  ) {
    const base = target.workdirBase ?? tmpdir();
    mkdirSync(base, { recursive: true });
    this.workdir = mkdtempSync(join(base, `keyway-conformance-${spec.id.replace(/[^a-z0-9-]/g, "-")}-`));
    const run = this.workdir.slice(-6).replace(/[^A-Za-z0-9]/g, "x");
    this.placeholders = {
      token: target.token,
      target: this.fixture.target ?? DEFAULT_TARGET,
      workdir: this.workdir,
      case: spec.id.replace(/[^a-z0-9]+/g, "-"),
      run,
      fixture_dir: target.fixture.dir,
    };
    this.valueIndex = new Map((this.fixture.records ?? []).map((value, i) => [value, i + 1]));
  }

  get fixture() {
    return this.target.fixture.fixture;
  }

  get role(): Role {
    return this.target.role;
  }

  address(at: ServedAt): string {
    return this.servers![at].address;
  }

  get process(): ConnectorProcess | undefined {
    return this.processes.at(-1);
  }

  /** The case's verdict. */
  async run(): Promise<CaseResult> {
    const result = verdictOf(this.spec, Date.now());
    const unmet = this.unmetNeed();
    if (unmet !== undefined) {
      this.removeWorkdir();
      return { ...result("skip", unmet.reason), skip: skipKindOf(unmet.need) };
    }
    let stepFailure: string | undefined;
    try {
      await this.startServers();
      for (const [i, step] of this.spec.steps.entries()) {
        try {
          await this.perform(step, `${this.spec.id} step ${i + 1} (${step.op})`);
        } catch (err) {
          if (!(err instanceof StepFailure || err instanceof WaitTimeout)) throw err;
          stepFailure = `step ${i + 1} (${step.op}): ${err.message}`;
          break;
        }
      }
      // What a sink wrote is read when each Ack arrives; the checks need every read finished.
      await Promise.all([...this.ackSnapshots.values()]);
      const failures: string[] = [];
      for (const check of this.spec.expect) {
        const judge = CONNECTOR_CHECKS[check.check];
        if (judge === undefined) throw new Error(`${this.spec.id}: unknown check "${check.check}"`);
        const failure = await judge(this, new Params(check, `${this.spec.id} check ${check.check}`));
        if (failure !== undefined) failures.push(failure);
      }
      if (failures.length > 0 || stepFailure !== undefined) {
        const reasons = [...failures, ...(stepFailure === undefined ? [] : [stepFailure])];
        return result("fail", this.withContext(reasons.join("; ")));
      }
      return result("pass", "");
    } catch (err) {
      return result("error", `harness error: ${(err as Error).message}`);
    } finally {
      await this.teardown();
    }
  }

  private unmetNeed(): UnmetNeed | undefined {
    for (const need of this.spec.needs ?? []) {
      const reason = this.unmetReason(need);
      if (reason !== undefined) return { need, reason };
    }
    return undefined;
  }

  /** Why the fixture does not meet `need`, or undefined when it does. */
  private unmetReason(need: string): string | undefined {
    const f = this.fixture;
    const records = /^records>=(\d+)$/.exec(need);
    if (records !== null) {
      const n = Number(records[1]);
      return (f.records?.length ?? 0) < n ? `needs a fixture with at least ${n} records (has ${f.records?.length ?? 0})` : undefined;
    }
    switch (need) {
      case "finite":
        return f.finite !== true ? "applies to finite sources (fixture: \"finite\": true)" : undefined;
      case "acks":
        return f.acks === undefined ? "needs a way to read upstream acknowledgements (fixture: \"acks\")" : undefined;
      case "written":
        return f.written === undefined ? "needs a way to read what the sink wrote (fixture: \"written\")" : undefined;
      case "queue":
        return f.replay !== "queue" ? "applies to queue-style sources (fixture: \"replay\": \"queue\")" : undefined;
      case "large-values":
        return f.large_values === false ? "the fixture says the connector cannot take values of several MiB" : undefined;
      case "keys":
        return f.keys === undefined ? "needs the expected keys (fixture: \"keys\")" : undefined;
      default:
        throw new Error(`${this.spec.id}: unknown need "${need}"`);
    }
  }

  /** A failure reason with what the connector printed last, when it has exited. */
  private withContext(reason: string): string {
    const exit = this.process?.exit;
    if (exit === undefined || exit.killed) return reason;
    const tail = this.process!.stderrTail();
    return `${reason} [the connector ${describeExit(exit)}${tail === "" ? "" : `: ${tail.split("\n").slice(-3).join(" | ")}`}]`;
  }

  private async startServers(): Promise<void> {
    const describe = (at: ServedAt) => describeFor(this.role, this.placeholders.target!, DEFAULT_LIMITS, [this.address(at)]);
    const onCall = (at: ServedAt) => (served: ServedCall) => {
      const session = new ScriptedSession(served.role, at, served.call, this.clock, this.notifier);
      this.sessions.push(session);
      session.onIn = (event) => this.onIncoming(session, event);
      this.notifier.changed();
    };
    const primary = await startScriptedServer("primary", describe, onCall("primary"), this.target.tls);
    const secondary = await startScriptedServer("secondary", describe, onCall("secondary"), this.target.tls);
    this.servers = { primary, secondary };
    this.placeholders.engine = primary.address;
    this.placeholders.secondary = secondary.address;
  }

  private async teardown(): Promise<void> {
    for (const p of this.processes) await p.kill();
    for (const s of this.sessions) s.endCall(grpcStatusOf("CANCELLED"), "the conformance case is over");
    if (this.servers !== undefined) await Promise.all([this.servers.primary.close(), this.servers.secondary.close()]);
    await cleanup(this.fixture, this.placeholders);
    this.removeWorkdir();
  }

  private removeWorkdir(): void {
    if (this.target.keepWorkdirs !== true) rmSync(this.workdir, { recursive: true, force: true });
  }

  /** Called for every message a session receives, before any step sees it. */
  private onIncoming(session: ScriptedSession, event: TraceEvent): void {
    if (this.refusing !== undefined && session.number === 0 && !session.refused) {
      session.refused = true;
      session.fail(this.refusing.code, this.refusing.status, "refused by the conformance harness (backoff case)");
      return;
    }
    if (session.role === "sink" && event.kind === "ack" && this.fixture.written !== undefined) {
      this.ackSnapshots.set(event.seq, this.readWritten().catch((err: Error) => `cannot read what the sink wrote: ${err.message}`));
    }
  }

  readWritten(): Promise<string[]> {
    return readProbe(this.fixture.written!, this.placeholders, () => this.process?.stdout() ?? "").then((v) => (typeof v === "number" ? [String(v)] : v));
  }

  // ---- records (source) ----

  records(session?: ScriptedSession): ReceivedRecord[] {
    const out: ReceivedRecord[] = [];
    for (const s of session === undefined ? this.sessions : [session]) {
      for (const e of s.received("batch")) {
        const batch = e.value as RecordBatch;
        for (const r of batch.records) {
          const value = Buffer.from(r.value).toString("utf8");
          out.push({ seq: e.seq, session: s, stream: batch.stream, position: r.position, value, index: this.valueIndex.get(value), idempotencyId: r.idempotencyId });
        }
      }
    }
    return out.sort((a, b) => a.seq - b.seq);
  }

  /** The fixture index a case's record reference names: a number, or "last". */
  recordIndex(ref: unknown, where: string): number {
    const count = this.fixture.records?.length ?? 0;
    if (ref === "last") return count;
    if (typeof ref === "number" && Number.isInteger(ref) && ref >= 1 && ref <= count) return ref;
    throw new Error(`${where}: record reference ${JSON.stringify(ref)} is not 1..${count} or "last"`);
  }

  /** Where record k was first received: its original stream and position. */
  firstSeen(index: number): ReceivedRecord | undefined {
    return this.records().find((r) => r.index === index);
  }

  /** A position reference of a step: 0, or {"record": k} (the position record k was received at). */
  position(ref: unknown, where: string): { stream: string | undefined; position: bigint } {
    if (ref === undefined || ref === 0) return { stream: undefined, position: 0n };
    if (typeof ref === "object" && ref !== null && "record" in ref) {
      const index = this.recordIndex((ref as { record: unknown }).record, where);
      const seen = this.firstSeen(index);
      if (seen === undefined) throw new StepFailure(`record ${index} ("${this.fixture.records![index - 1]}") was never received, so its position is unknown`);
      return { stream: seen.stream, position: seen.position };
    }
    throw new Error(`${where}: position reference ${JSON.stringify(ref)} must be 0 or {"record": k}`);
  }

  // ---- sessions ----

  /** Sessions taken by steps, by their number. */
  numbered(n: number): ScriptedSession | undefined {
    return this.sessions.find((s) => s.number === n);
  }

  private requireCurrent(where: string): ScriptedSession {
    if (this.current === undefined) throw new Error(`${where}: no session taken yet (add a "session" step first)`);
    return this.current;
  }

  /** The wait ends early when the connector process has exited and cannot do what is awaited. */
  private exitedAbort = (): string | undefined => {
    const exit = this.process?.exit;
    if (exit === undefined || exit.killed) return undefined;
    return `the connector ${describeExit(exit)}`;
  };

  private until<T>(what: string, timeoutMs: number, check: () => T | undefined, abortOnExit = true): Promise<T> {
    return this.notifier.until(what, timeoutMs, check, abortOnExit ? this.exitedAbort : undefined);
  }

  // ---- steps ----

  private async perform(step: Step, where: string): Promise<void> {
    const p = new Params(step, where);
    switch (step.op) {
      case "start":
        return this.start();
      case "kill":
        return this.process?.kill();
      case "session":
        return this.takeSession(p, where);
      case "refuse_sessions":
        return this.refuseSessions(p);
      case "stop_server":
        return this.stopServer(p.string("at") as ServedAt);
      case "end_session":
        return this.endSession(p, where);
      case "idle":
        return sleep(p.number("ms"));
      case "await_exit":
        await this.until("the connector to exit", p.number("timeout_ms", WAIT_MS_DEFAULT), () => this.process?.exit, false);
        return;
      case "await_session_end": {
        const session = this.requireCurrent(where);
        await this.until(`the connector to end ${session.describe()}`, p.number("timeout_ms", WAIT_MS_DEFAULT), () => (session.live ? undefined : true), false);
        return;
      }
      // source
      case "open":
        return this.answerOpen(p, where);
      case "grant":
        this.requireCurrent(where).send("credits", { records: p.number("records") });
        return;
      case "receive":
        return this.receive(p, where);
      case "commit": {
        const session = this.requireCurrent(where);
        const { stream, position } = this.position(p.raw("through"), where);
        session.send("committed", { stream: stream ?? this.openedStream(session, where), position });
        return;
      }
      case "await_end_stream": {
        const session = this.requireCurrent(where);
        await this.until(`EndStream on ${session.describe()}`, p.number("timeout_ms", WAIT_MS_DEFAULT), () => (session.received("end").length > 0 ? true : undefined));
        return;
      }
      case "stream_ended":
        return this.streamEnded(where);
      case "probe_acks":
        await sleep(p.number("settle_ms", SETTLE_MS_DEFAULT));
        this.probes.set(p.string("as"), await this.readAcks());
        return;
      case "await_acked": {
        const count = this.recordIndex(p.raw("at_least"), where);
        const timeoutMs = p.number("timeout_ms", WAIT_MS_DEFAULT);
        const deadline = Date.now() + timeoutMs;
        for (;;) {
          const acked = await this.readAcks();
          if (acked >= count) return;
          if (Date.now() > deadline) throw new StepFailure(`timed out after ${timeoutMs} ms waiting for ${count} records acknowledged upstream (${acked} are)`);
          await sleep(50);
        }
      }
      // sink
      case "await_credits":
        return this.awaitCredits(p, where);
      case "send_batch":
        for (let i = 0; i < (p.optionalNumber("repeat") ?? 1); i++) await this.sendSinkBatch(p, where, i);
        return;
      case "await_ack":
        return this.awaitAck(p, where);
      // partitioner
      case "send_request":
        return this.sendRequest(p, where);
      case "await_answer":
        return this.awaitAnswer(p, where);
      default:
        throw new Error(`${where}: unknown op "${step.op}"`);
    }
  }

  private async start(): Promise<void> {
    if (!this.fed) {
      await feed(this.fixture, this.placeholders);
      this.fed = true;
    }
    const env = {
      KEYWAY_ENGINE: this.address("primary"),
      KEYWAY_TOKEN: this.target.token,
      KEYWAY_TARGET: this.placeholders.target!,
      ...Object.fromEntries(Object.entries(this.fixture.env ?? {}).map(([k, v]) => [k, substitute(v, this.placeholders)])),
    };
    this.processes.push(new ConnectorProcess(this.target.command, this.placeholders, env, () => this.notifier.changed()));
    this.startedAt = this.clock.seq;
  }

  private async takeSession(p: Params, where: string): Promise<void> {
    const at = (p.optionalString("at") ?? "primary") as ServedAt;
    const firstAfterStart = !this.sessions.some((s) => s.arrivedSeq > this.startedAt && s.number > 0);
    const timeoutMs = p.optionalNumber("timeout_ms") ?? (firstAfterStart ? (this.fixture.startup_timeout_ms ?? STARTUP_TIMEOUT_MS_DEFAULT) : WAIT_MS_DEFAULT);
    const session = await this.until(`a new session at the ${at} address`, timeoutMs, () =>
      this.sessions.find((s) => s.at === at && s.number === 0 && !s.refused && (s.firstReceived !== undefined || !s.live)),
    );
    session.number = ++this.taken;
    this.current = session;
    const first = session.firstReceived;
    if (first === undefined) throw new StepFailure(`${session.describe()} ended before sending anything`);
    if (first.kind !== "hello") throw new StepFailure(`the first message of ${session.describe()} was "${first.kind}", not Hello`);
    const reject = p.raw("reject") as { code: string | number; status?: string; message?: string } | undefined;
    if (reject !== undefined) {
      const code = errorCodeOf(reject.code);
      const status = reject.status !== undefined ? grpcStatusOf(reject.status) : GRPC_STATUS_OF[code];
      if (status === undefined) throw new Error(`${where}: error code ${reject.code} needs a "status"`);
      session.fail(code, status, reject.message ?? "rejected by the conformance harness");
      return;
    }
    const welcome = (p.raw("welcome") ?? {}) as {
      delay_ms?: number;
      initial_credits?: number;
      max_batch_records?: number;
      max_message_bytes?: number;
      idempotency_window?: number;
      max_replay_records?: number;
      version?: { major: number; minor: number };
      capabilities?: string[];
      unknown_fields?: boolean;
      unknown_kind?: boolean;
      cluster_addresses?: ServedAt[];
    };
    if (welcome.delay_ms !== undefined) await sleep(welcome.delay_ms);
    const initialCredits = this.role === "source" ? (welcome.initial_credits ?? 1000) : 0;
    session.send(
      "welcome",
      {
        sessionId: `conformance-${this.placeholders.run}-${session.number}`,
        version: welcome.version ?? { major: 1, minor: 0 },
        initialCredits,
        limits: {
          maxBatchRecords: welcome.max_batch_records ?? DEFAULT_LIMITS.maxBatchRecords,
          maxMessageBytes: welcome.max_message_bytes ?? DEFAULT_LIMITS.maxMessageBytes,
          idempotencyWindow: welcome.idempotency_window ?? DEFAULT_LIMITS.idempotencyWindow,
          maxReplayRecords: welcome.max_replay_records ?? 0,
        },
        capabilities: welcome.capabilities ?? [],
        // An engine lists at least its own address (R-CLUSTER-ADDRESSES).
        clusterAddresses: (welcome.cluster_addresses ?? [session.at]).map((at) => this.address(at)),
      },
      welcome.unknown_fields === true,
    );
    if (welcome.unknown_kind === true) session.sendRaw(unknownKindMessage(), "unknown-kind");
  }

  private async refuseSessions(p: Params): Promise<void> {
    const code = errorCodeOf((p.raw("code") as string | number | undefined) ?? "SHUTTING_DOWN");
    const statusName = p.optionalString("status");
    const status = statusName !== undefined ? grpcStatusOf(statusName) : GRPC_STATUS_OF[code];
    this.refusing = { code, status };
    // Sessions already waiting are refused too.
    for (const s of this.sessions) {
      if (s.number === 0 && !s.refused && s.firstReceived !== undefined) {
        s.refused = true;
        s.fail(code, status, "refused by the conformance harness (backoff case)");
      }
    }
    await sleep(p.number("ms"));
    this.refusing = undefined;
  }

  /**
   * The engine at an address goes away as a killed worker does: its sessions end with UNAVAILABLE
   * and no Error, and nothing listens there any more.
   */
  private stopServer(at: ServedAt): void {
    for (const s of this.sessions) if (s.at === at) s.endCall(grpcStatusOf("UNAVAILABLE"), "the engine went away");
    this.servers![at].kill();
    this.stopped = { at, seq: ++this.clock.seq };
    this.notifier.changed();
  }

  private endSession(p: Params, where: string): void {
    const session = this.requireCurrent(where);
    const redirect = p.optionalString("redirect");
    if (redirect !== undefined) {
      session.redirect(this.address(redirect as ServedAt), "the conformance harness moves this target");
      return;
    }
    const error = p.raw("error") as string | number | undefined;
    const statusName = p.optionalString("status");
    if (error !== undefined) {
      const code = errorCodeOf(error);
      const status = statusName !== undefined ? grpcStatusOf(statusName) : GRPC_STATUS_OF[code];
      if (status === undefined) throw new Error(`${where}: error code ${error} needs a "status"`);
      session.fail(code, status, p.string("message", "ended by the conformance harness"));
      return;
    }
    session.endCall(grpcStatusOf(statusName ?? "UNAVAILABLE"), "ended by the conformance harness");
  }

  // ---- source steps ----

  private openedStream(session: ScriptedSession, where: string): string {
    const opened = session.sent("opened")[0];
    if (opened === undefined) throw new Error(`${where}: no stream opened on ${session.describe()}`);
    return (opened.value as { stream: string }).stream;
  }

  private async answerOpen(p: Params, where: string): Promise<void> {
    const session = this.requireCurrent(where);
    const answered = session.sent("opened").length;
    const request = await this.until(`OpenStream on ${session.describe()}`, p.number("timeout_ms", WAIT_MS_DEFAULT), () => session.received("open")[answered]);
    const stream = (request.value as { stream: string }).stream;
    const resume = this.position(p.raw("resume_after"), where);
    const committed = this.position(p.raw("committed"), where);
    const delayMs = p.number("delay_ms", 0);
    if (delayMs > 0) await sleep(delayMs);
    session.send("opened", { stream, resumeAfter: resume.position, committed: committed.position }, p.boolean("unknown_fields", false));
  }

  private async receive(p: Params, where: string): Promise<void> {
    const session = this.requireCurrent(where);
    const timeoutMs = p.number("timeout_ms", WAIT_MS_DEFAULT);
    const through = p.raw("through");
    if (through !== undefined) {
      const index = this.recordIndex(through, where);
      await this.until(`record ${index} ("${this.fixture.records![index - 1]}") on ${session.describe()}`, timeoutMs, () =>
        this.records(session).some((r) => r.index === index) ? true : undefined,
      );
      return;
    }
    const count = p.number("count");
    await this.until(`${count} records on ${session.describe()}`, timeoutMs, () => (this.records(session).length >= count ? true : undefined));
  }

  private streamEnded(where: string): void {
    const session = this.requireCurrent(where);
    for (const end of session.received("end")) {
      const stream = (end.value as { stream: string }).stream;
      // Everything the harness received is "applied": the end position is the highest of them.
      let position = 0n;
      for (const r of this.records()) if (r.stream === stream && r.position > position) position = r.position;
      session.send("committed", { stream, position });
      session.send("ended", { stream, position });
    }
  }

  private readAcks(): Promise<number> {
    return readAcked(this.fixture.acks!, this.fixture.records?.length ?? 0, this.placeholders, () => this.process?.stdout() ?? "");
  }

  // ---- sink and partitioner steps ----

  /** Credits the connector granted on a session and the harness has not spent. */
  balance(session: ScriptedSession): number {
    let balance = 0;
    for (const e of session.events) {
      if (e.dir === "in" && e.kind === "credits") balance += (e.value as { records: number }).records;
      if (e.dir === "out" && e.kind === "batch") {
        const v = e.value as { records?: unknown[]; values?: unknown[] };
        balance -= (v.records ?? v.values ?? []).length;
      }
    }
    return balance;
  }

  private async awaitCredits(p: Params, where: string): Promise<void> {
    const session = this.requireCurrent(where);
    const wanted = this.creditsWanted(session, p.raw("at_least"), where);
    await this.until(`${wanted} credits granted on ${session.describe()}`, p.number("timeout_ms", WAIT_MS_DEFAULT), () =>
      this.balance(session) >= wanted ? true : undefined,
    );
  }

  creditsWanted(session: ScriptedSession, ref: unknown, where: string): number {
    if (ref === "max_batch_records") {
      const welcome = session.sent("welcome")[0]?.value as { limits?: { maxBatchRecords: number } } | undefined;
      return welcome?.limits?.maxBatchRecords ?? DEFAULT_LIMITS.maxBatchRecords;
    }
    if (typeof ref === "number" && ref >= 1) return ref;
    throw new Error(`${where}: at_least must be a positive number or "max_batch_records"`);
  }

  private async sendWithin(session: ScriptedSession, count: number, timeoutMs: number, what: string): Promise<void> {
    await this.until(`${count} credits on ${session.describe()} to send ${what}`, timeoutMs, () => (this.balance(session) >= count ? true : undefined));
  }

  /** The step's batch, or with `repeat` its `offset`-th: sequence (and same_as) moved on by the offset. */
  private async sendSinkBatch(p: Params, where: string, offset: number): Promise<void> {
    const session = this.requireCurrent(where);
    const sequence = BigInt(p.number("sequence") + offset);
    let batch = this.sinkBatches.get(sequence);
    const from = p.optionalNumber("same_as");
    const sameAs = from === undefined ? undefined : from + offset;
    if (p.boolean("resend", false)) {
      if (batch === undefined) throw new Error(`${where}: batch ${sequence} was never sent, so it cannot be resent`);
    } else {
      if (batch !== undefined) throw new Error(`${where}: batch ${sequence} was already sent; use "resend": true`);
      if (sameAs !== undefined) {
        // The same outputs again under a new sequence: what an engine replaying its inputs sends.
        const original = this.sinkBatches.get(BigInt(sameAs));
        if (original === undefined) throw new Error(`${where}: batch ${sameAs} was never sent`);
        batch = { sequence, records: original.records, sameAs: original.sequence };
      } else {
        batch = { sequence, records: this.sinkRecords(p, sequence, where) };
      }
      this.sinkBatches.set(sequence, batch);
    }
    await this.sendWithin(session, batch.records.length, p.number("timeout_ms", WAIT_MS_DEFAULT), `batch ${sequence}`);
    const records: Array<Partial<SinkRecord>> = batch.records.map((r) => ({ id: r.id, value: Buffer.from(r.value) }));
    session.send("batch", { sequence, records }, p.boolean("unknown_fields", false));
  }

  private sinkRecords(p: Params, sequence: bigint, where: string): SentBatch["records"] {
    const given = p.raw("records");
    const values = { ...this.placeholders, seq: String(sequence) };
    if (Array.isArray(given)) {
      return given.map((r: { id: string; value?: string }, i) => ({
        id: substitute(r.id, { ...values, i: String(i) }),
        value: substitute(r.value ?? this.fixture.sink_value ?? DEFAULT_SINK_VALUE, { ...values, i: String(i) }),
      }));
    }
    const count = typeof given === "number" ? given : 2;
    if (!(count >= 1)) throw new Error(`${where}: records must be a positive count or a list`);
    const valueBytes = p.optionalNumber("value_bytes");
    const template = this.fixture.sink_value ?? DEFAULT_SINK_VALUE;
    return Array.from({ length: count }, (_, i) => {
      const value = substitute(template, { ...values, i: String(i), pad: "" });
      const large = valueBytes === undefined ? value : padded(this.fixture.sink_large_value ?? template, valueBytes, { ...values, i: String(i) });
      return { id: `conformance:${this.placeholders.case}@${sequence}:${i}`, value: large };
    });
  }

  /** Sequences of batches sent on a session that an Ack there has settled. */
  settled(session: ScriptedSession): Set<bigint> {
    const sent: bigint[] = [];
    const settled = new Set<bigint>();
    for (const e of session.events) {
      if (e.dir === "out" && e.kind === "batch") sent.push((e.value as { sequence: bigint }).sequence);
      if (e.dir === "in" && e.kind === "ack") {
        const s = (e.value as { sequence: bigint }).sequence;
        for (const q of sent) if (q <= s) settled.add(q);
      }
    }
    return settled;
  }

  private async awaitAck(p: Params, where: string): Promise<void> {
    const session = this.requireCurrent(where);
    const sequence = BigInt(p.number("sequence"));
    await this.until(`an Ack settling batch ${sequence} on ${session.describe()}`, p.number("timeout_ms", WAIT_MS_DEFAULT), () =>
      this.settled(session).has(sequence) ? true : undefined,
    );
  }

  /** The written values when an Ack arrived, allowing stdout its lag behind the Ack. */
  async writtenAtAck(event: TraceEvent, needed: readonly string[]): Promise<string[] | string> {
    const snapshot = await this.ackSnapshots.get(event.seq);
    if (snapshot === undefined || typeof snapshot === "string" || !("stdout" in this.fixture.written!)) return snapshot ?? "not read";
    // stdout and the Ack travel on different channels: give stdout a bounded moment to catch up.
    const deadline = Date.now() + STDOUT_LAG_MS_MAX;
    let written = snapshot;
    while (!needed.every((v) => written.includes(v)) && Date.now() < deadline) {
      await sleep(20);
      written = await this.readWritten();
    }
    return written;
  }

  private async sendRequest(p: Params, where: string): Promise<void> {
    const session = this.requireCurrent(where);
    const id = BigInt(p.string("request_id"));
    let values = this.requests.get(id);
    if (p.boolean("resend", false)) {
      if (values === undefined) throw new Error(`${where}: request ${id} was never sent, so it cannot be resent`);
    } else {
      if (values !== undefined) throw new Error(`${where}: request ${id} was already sent; use "resend": true`);
      values = this.partitionValues(p, where);
      this.requests.set(id, values);
    }
    await this.sendWithin(session, values.length, p.number("timeout_ms", WAIT_MS_DEFAULT), `request ${id}`);
    session.send("batch", { requestId: id, values });
  }

  private partitionValues(p: Params, where: string): Uint8Array[] {
    const pool = this.fixture.values ?? DEFAULT_PARTITION_VALUES;
    const given = p.raw("values");
    const valueBytes = p.optionalNumber("value_bytes");
    if (!Array.isArray(given) || given.length === 0) throw new Error(`${where}: values must be a list of indices into the value pool`);
    return given.map((i: unknown) => {
      if (typeof i !== "number" || !Number.isInteger(i) || i < 0 || i >= pool.length) throw new Error(`${where}: value index ${String(i)} is not 0..${pool.length - 1}`);
      const value = pool[i]!;
      return Buffer.from(valueBytes === undefined ? value : value + " ".repeat(Math.max(0, valueBytes - value.length)));
    });
  }

  /** Every PartitionKeys received on a session. */
  answers(session: ScriptedSession): Array<{ seq: number; keys: PartitionKeys }> {
    return session.received("keys").map((e) => ({ seq: e.seq, keys: e.value as PartitionKeys }));
  }

  private async awaitAnswer(p: Params, where: string): Promise<void> {
    const session = this.requireCurrent(where);
    const id = BigInt(p.string("request_id"));
    await this.until(`an answer to request ${id} on ${session.describe()}`, p.number("timeout_ms", WAIT_MS_DEFAULT), () =>
      this.answers(session).some((a) => a.keys.requestId === id) ? true : undefined,
    );
  }

  hellos(): Array<{ session: ScriptedSession; hello: Hello }> {
    return this.sessions.filter((s) => s.hello !== undefined).map((s) => ({ session: s, hello: s.hello! }));
  }
}
