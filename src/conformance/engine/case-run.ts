/**
 * Runs one case against a running engine, the harness playing every connector the case needs:
 * opens sessions (well-behaved or not), sends what the steps say, waits (always bounded) for the
 * engine's answers, and judges. Steps whose name starts with "expect_" judge on the spot; the
 * case's `expect` judges over the whole trace afterwards.
 *
 * The engine's app must carry every record of --source, unchanged, to --sink, through
 * --partitioner when one is given (conformance/engine-app.ts is such an app). Record values are
 * "<run>:<stream>:<position>" with stream names unique per case run, so what earlier cases left
 * queued in the engine never confuses a later one.
 */
import { randomBytes } from "node:crypto";
import { fromBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  DescribeResponseSchema,
  ErrorCode,
  type DescribeResponse,
  type PartitionBatch,
  type SinkBatch,
  type StreamOpened,
} from "../../protocol/gen/keyway/v1/connector_pb.ts";
import { GRPC_STATUS_OF } from "../../protocol/protocol-error.ts";
import { Params, type ConformanceCase, type Step } from "../case.ts";
import type { CaseClock } from "../connector/scripted-session.ts";
import { Notifier, sleep, WaitTimeout } from "../notifier.ts";
import { skipKindOf, verdictOf, type CaseResult, type UnmetNeed } from "../result.ts";
import { errorCodeName, errorCodeOf, grpcStatusName, grpcStatusOf, lengthDelimited, unknownKindMessage, type Role } from "../wire.ts";
import { ENGINE_CHECKS } from "./checks.ts";
import { ClientSession } from "./client-session.ts";
import { channelCredentials } from "../../rpc/tls-credentials.ts";
import type { ClientTls } from "../../rpc/tls.ts";

export interface EngineTarget {
  /** The engine's connector address, HOST:PORT. */
  address: string;
  /** The engine's token, when it has one. */
  token?: string;
  /** A source bound to `connector` whose records reach `sink`. */
  source?: string;
  /** A sink bound to `connector`. */
  sink?: string;
  /** The partitioner on the way from `source` to `sink`, when the app has one. */
  partitioner?: string;
  /** Dial the engine over TLS: the CA to trust, and a client certificate for mutual TLS. */
  tls?: ClientTls;
}

export class StepFailure extends Error {}

const WAIT_MS_DEFAULT = 10_000;
const UNARY_DEADLINE_MS = 5_000;
const UNKNOWN_TARGET_NAME = "keyway-conformance-no-such-target";
/**
 * Pads an unknown target name to a given length: characters gRPC percent-encodes in grpc-message,
 * so a status echoing the name takes three bytes per character in its trailer (the protocol
 * fuzzer's name that wedged a connection was made of these).
 */
const LONG_NAME_PADDING = "{|";
/** Bytes that do not parse as any message: a length-delimited field 1 promising 5 bytes, holding 1. */
const MALFORMED_BYTES = Buffer.from([0x0a, 0x05, 0x01]);

export class EngineCaseRun {
  readonly notifier = new Notifier();
  readonly clock: CaseClock = { seq: 0, startMs: Date.now() };
  readonly sessions = new Map<string, ClientSession>();
  /** Unique to this run of the case: in stream names and record values. */
  readonly runId: string;
  describeResponse: DescribeResponse | undefined;
  readonly health = new Map<string, number | string>();
  /** Request ids remembered by `await_request ... as`. */
  readonly requestIds = new Map<string, bigint>();
  /** The first StreamOpened per session and stream. */
  readonly opened = new Map<string, StreamOpened>();
  private readonly sessionParams = new Map<string, Step>();

  constructor(
    readonly spec: ConformanceCase,
    readonly target: EngineTarget,
  ) {
    this.runId = randomBytes(4).toString("hex");
  }

  /** The stream name a case's short name stands for: unique to this run of the case. */
  stream(name: string): string {
    return `conformance-${this.runId}-${name}`;
  }

  /** The value of a record: recognisable in the output, unique per run, stream and position. */
  value(stream: string, position: number | bigint): string {
    return `${this.runId}:${this.stream(stream)}:${position}`;
  }

  async runCase(): Promise<CaseResult> {
    const result = verdictOf(this.spec, Date.now());
    const unmet = this.unmetNeed();
    if (unmet !== undefined) return { ...result("skip", unmet.reason), skip: skipKindOf(unmet.need) };
    let stepFailure: string | undefined;
    try {
      for (const [i, step] of this.spec.steps.entries()) {
        try {
          await this.perform(step, `${this.spec.id} step ${i + 1} (${step.op})`);
        } catch (err) {
          if (!(err instanceof StepFailure || err instanceof WaitTimeout)) throw err;
          stepFailure = `step ${i + 1} (${step.op}): ${err.message}`;
          break;
        }
      }
      const failures: string[] = [];
      if (stepFailure === undefined) {
        for (const check of this.spec.expect) {
          const judge = ENGINE_CHECKS[check.check];
          if (judge === undefined) throw new Error(`${this.spec.id}: unknown check "${check.check}"`);
          const failure = judge(this, new Params(check, `${this.spec.id} check ${check.check}`));
          if (failure !== undefined) failures.push(failure);
        }
      }
      if (stepFailure !== undefined) failures.push(stepFailure);
      return failures.length > 0 ? result("fail", failures.join("; ")) : result("pass", "");
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

  /** Why the command line does not meet `need`, or undefined when it does. */
  private unmetReason(need: string): string | undefined {
    if (need === "source" || need === "sink" || need === "partitioner") {
      return this.target[need] === undefined ? `needs --${need} NAME (a ${need} of the engine's app)` : undefined;
    }
    if (need === "token") {
      return this.target.token === undefined || this.target.token === "" ? "applies to engines with a token (--token T)" : undefined;
    }
    if (need === "no-partitioner") return this.target.partitioner !== undefined ? "applies to apps without a partitioner" : undefined;
    throw new Error(`${this.spec.id}: unknown need "${need}"`);
  }

  /** Every session still open ends politely, so the engine resends what it had not settled. */
  private async teardown(): Promise<void> {
    const open = [...this.sessions.values()].filter((s) => !s.ended);
    for (const s of open) s.halfClose();
    await this.notifier.until("sessions to end", WAIT_MS_DEFAULT, () => (open.every((s) => s.ended) ? true : undefined)).catch(() => {
      for (const s of open) s.cancel();
    });
  }

  session(name: string, where: string): ClientSession {
    const s = this.sessions.get(name);
    if (s === undefined) throw new Error(`${where}: no session "${name}" (open it with open_session first)`);
    return s;
  }

  /** Sessions of a role, including helpers. */
  ofRole(role: Role): ClientSession[] {
    return [...this.sessions.values()].filter((s) => s.role === role);
  }

  private until<T>(what: string, timeoutMs: number, check: () => T | undefined): Promise<T> {
    return this.notifier.until(what, timeoutMs, check);
  }

  // ---- steps ----

  private async perform(step: Step, where: string): Promise<void> {
    const p = new Params(step, where);
    switch (step.op) {
      case "describe":
        this.describeResponse = await this.describe();
        return;
      case "health":
        for (const service of ["", "keyway.v1.ConnectorService"]) this.health.set(service, await this.healthCheck(service));
        return;
      case "helpers":
        return this.openHelpers(p);
      case "open_session":
        return this.openSession(step, where);
      case "expect_welcome":
        return this.expectWelcome(p, where);
      case "expect_error":
        return this.expectError(p, where);
      case "expect_status": {
        const s = this.session(p.string("session"), where);
        const want = grpcStatusOf(p.string("status"));
        const status = await this.until(`the end of session ${s.name}`, p.number("timeout_ms", WAIT_MS_DEFAULT), () => s.status);
        if (status.code !== want) throw new StepFailure(`session ${s.name} ended with ${grpcStatusName(status.code)} (${status.details}), not ${grpcStatusName(want)}`);
        const after = s.received().find((e) => e.kind === "error" || e.kind === "redirect");
        if (want === grpc.status.OK && after !== undefined) throw new StepFailure(`session ${s.name} got ${after.kind} before ending with OK`);
        return;
      }
      case "open":
        return this.open(p, where);
      case "send":
        return this.send(p, where);
      case "send_records":
        return this.sendRecords(p, where);
      case "send_until_error":
        return this.sendUntilError(p, where);
      case "await_committed": {
        const s = this.session(p.string("session"), where);
        const stream = this.stream(p.string("stream"));
        const position = BigInt(p.number("position"));
        await this.until(`Committed ${stream}@${position} on ${s.name}`, p.number("timeout_ms", WAIT_MS_DEFAULT), () =>
          s.received("committed").some((e) => (e.value as { stream: string; position: bigint }).stream === stream && (e.value as { position: bigint }).position >= position) ? true : undefined,
        );
        return;
      }
      case "await_stream_ended": {
        const s = this.session(p.string("session"), where);
        const stream = this.stream(p.string("stream"));
        const ended = await this.until(`StreamEnded for ${stream} on ${s.name}`, p.number("timeout_ms", WAIT_MS_DEFAULT), () =>
          s.received("ended").find((e) => (e.value as { stream: string }).stream === stream),
        );
        const position = (ended.value as { position: bigint }).position;
        const want = BigInt(p.number("position"));
        if (position !== want) throw new StepFailure(`StreamEnded for ${stream} says position ${position}; the last applied position is ${want}`);
        return;
      }
      case "await_credits": {
        const s = this.session(p.string("session"), where);
        const want = p.number("total_at_least");
        await this.until(`${want} credits granted in total on ${s.name}`, p.number("timeout_ms", WAIT_MS_DEFAULT), () => (this.granted(s) >= want ? true : undefined));
        return;
      }
      case "await_outputs": {
        const values = this.values(p, where);
        const on = p.optionalString("session");
        await this.until(`the outputs of ${describeValues(values)}${on === undefined ? "" : ` on ${on}`}`, p.number("timeout_ms", WAIT_MS_DEFAULT), () => {
          const seen = new Set(this.outputs().filter((o) => on === undefined || o.session.name === on).map((o) => o.value));
          return values.every((v) => seen.has(v)) ? true : undefined;
        });
        return;
      }
      case "await_request": {
        const s = this.session(p.string("session"), where);
        const values = this.values(p, where);
        const request = await this.until(`a PartitionBatch holding ${describeValues(values)} on ${s.name}`, p.number("timeout_ms", WAIT_MS_DEFAULT), () =>
          s.received("batch").find((e) => {
            const have = (e.value as PartitionBatch).values.map((v) => Buffer.from(v).toString("utf8"));
            return values.some((v) => have.includes(v));
          }),
        );
        const as = p.optionalString("as");
        if (as !== undefined) this.requestIds.set(as, (request.value as PartitionBatch).requestId);
        return;
      }
      case "grant":
        this.session(p.string("session"), where).send("credits", { records: p.number("records") });
        return;
      case "ack": {
        const s = this.session(p.string("session"), where);
        const ref = p.raw("sequence");
        let sequence: bigint;
        if (ref === "highest_received") {
          const seqs = s.received("batch").map((e) => (e.value as SinkBatch).sequence);
          if (seqs.length === 0) throw new StepFailure(`session ${s.name} received no batch to ack`);
          sequence = seqs.reduce((a, b) => (a > b ? a : b));
        } else sequence = BigInt(p.number("sequence"));
        s.send("ack", { sequence });
        return;
      }
      case "keys":
        return this.sendKeys(p, where);
      case "half_close":
        this.session(p.string("session"), where).halfClose();
        return;
      case "cancel":
        this.session(p.string("session"), where).cancel();
        return;
      case "idle":
        return sleep(p.number("ms"));
      default:
        throw new Error(`${where}: unknown op "${step.op}"`);
    }
  }

  private describe(): Promise<DescribeResponse> {
    return this.unary("/keyway.v1.ConnectorService/Describe", Buffer.alloc(0)).then((bytes) => fromBinary(DescribeResponseSchema, bytes));
  }

  private async healthCheck(service: string): Promise<number | string> {
    try {
      const bytes = await this.unary("/grpc.health.v1.Health/Check", service === "" ? Buffer.alloc(0) : lengthDelimited(1, Buffer.from(service)));
      // HealthCheckResponse{status = 1 (enum)}: tag 0x08 then a one-byte varint; absent means UNKNOWN (0).
      return bytes.length >= 2 && bytes[0] === 0x08 ? bytes[1]! : 0;
    } catch (err) {
      return (err as Error).message;
    }
  }

  private unary(path: string, request: Buffer): Promise<Buffer> {
    const client = new grpc.Client(this.target.address, channelCredentials(this.target.tls));
    return new Promise<Buffer>((resolve, reject) => {
      client.makeUnaryRequest(path, (b: Buffer) => b, (b: Buffer) => b, request, { deadline: Date.now() + UNARY_DEADLINE_MS }, (err, value) => {
        client.close();
        if (err !== null) reject(new StepFailure(`${path}: ${grpcStatusName(err.code)} ${err.details}`));
        else resolve(value!);
      });
    });
  }

  private async openHelpers(p: Params): Promise<void> {
    if (p.boolean("sink", false) && this.target.sink !== undefined) {
      await this.openSession({ op: "open_session", as: "helper-sink", role: "sink", credits: 1000, ack: "auto", regrant: true }, "helpers");
    }
    if (p.boolean("partitioner", false) && this.target.partitioner !== undefined) {
      await this.openSession({ op: "open_session", as: "helper-partitioner", role: "partitioner", credits: 1000, answer: "auto", regrant: true }, "helpers");
    }
  }

  private targetName(role: Role): string {
    const name = this.target[role];
    if (name === undefined) throw new Error(`no --${role} given (the case should declare "needs": ["${role}"])`);
    return name;
  }

  private async openSession(step: Step, where: string): Promise<void> {
    const p = new Params(step, where);
    const name = p.string("as");
    const role = p.string("role") as Role;
    if (this.sessions.has(name) && !this.sessions.get(name)!.ended) throw new Error(`${where}: session "${name}" is already open`);
    this.sessionParams.set(name, step);
    const s = new ClientSession(name, role, this.target.address, this.clock, this.notifier, this.target.tls);
    this.sessions.set(name, s);
    s.autopilot = { ack: p.string("ack", "none") === "auto", answer: p.string("answer", "none") === "auto", regrant: p.boolean("regrant", false) };
    const first = p.string("first", "hello");
    if (first === "garbage") s.sendRaw(MALFORMED_BYTES, "garbage");
    else if (first === "empty") s.sendRaw(Buffer.alloc(0), "empty");
    else if (first === "open") s.send("open", { stream: this.stream("a") });
    else s.send("hello", this.hello(role, (p.raw("hello") ?? {}) as HelloSpec, name), p.boolean("unknown_fields", false));
    if (p.string("expect", "welcome") !== "welcome") return;
    await this.until(`Welcome on session ${name}`, p.number("timeout_ms", WAIT_MS_DEFAULT), () => {
      if (s.welcome !== undefined) return true;
      if (s.ended) throw new StepFailure(`session ${name} ended before its Welcome: ${this.ending(s)}`);
      return undefined;
    });
    const credits = p.optionalNumber("credits");
    if (credits !== undefined && credits > 0) s.send("credits", { records: credits });
  }

  private hello(role: Role, spec: HelloSpec, session: string): object {
    let target: string;
    if (spec.target === "unknown") target = UNKNOWN_TARGET_NAME;
    else if (typeof spec.target === "object" && spec.target !== null) {
      target = "role" in spec.target ? this.targetName(spec.target.role) : UNKNOWN_TARGET_NAME.padEnd(spec.target.unknown_length, LONG_NAME_PADDING);
    } else target = this.targetName(role);
    const token = spec.token === "wrong" ? `wrong-${this.target.token ?? ""}x` : spec.token === "none" ? "" : (this.target.token ?? "");
    const version = spec.version === null ? undefined : (spec.version ?? { major: 1, minor: 0 });
    return {
      ...(version === undefined ? {} : { version }),
      connectorName: spec.connector_name ?? "keyway-conformance",
      // Each session its own instance unless the case names one: an instance's sessions take each other's streams.
      instanceId: `conformance-${this.runId}-${spec.instance_id ?? session}`,
      target,
      token,
      capabilities: spec.capabilities ?? [],
    };
  }

  /** How a session ended, for reasons. */
  ending(s: ClientSession): string {
    const error = s.received("error")[0]?.value as { code: number; message: string } | undefined;
    const status = s.status === undefined ? "still open" : `status ${grpcStatusName(s.status.code)}`;
    return error === undefined ? status : `Error ${errorCodeName(error.code)} (${error.message}), ${status}`;
  }

  private expectWelcome(p: Params, where: string): void {
    const s = this.session(p.string("session"), where);
    const welcome = s.welcome;
    if (welcome === undefined) throw new StepFailure(`session ${s.name} has no Welcome`);
    const first = s.received()[0];
    if (first?.kind !== "welcome") throw new StepFailure(`the engine's first message on ${s.name} was "${first?.kind}", not Welcome`);
    const version = p.raw("version") as { major: number; minor: number } | undefined;
    if (version !== undefined && (welcome.version?.major !== version.major || welcome.version?.minor !== version.minor)) {
      throw new StepFailure(`Welcome.version is ${welcome.version?.major}.${welcome.version?.minor}, expected ${version.major}.${version.minor}`);
    }
    if (welcome.limits === undefined || welcome.limits.maxBatchRecords === 0 || welcome.limits.maxMessageBytes === 0) {
      throw new StepFailure("Welcome.limits is absent or holds a zero limit");
    }
    const credits = p.optionalString("initial_credits");
    if (credits === "zero" && welcome.initialCredits !== 0) throw new StepFailure(`Welcome.initial_credits is ${welcome.initialCredits}; a ${s.role} gets 0 (it grants credits instead)`);
    for (const capability of (p.raw("capabilities_exclude") as string[] | undefined) ?? []) {
      if (welcome.capabilities.includes(capability)) throw new StepFailure(`Welcome.capabilities lists "${capability}", which only the connector named`);
    }
  }

  private async expectError(p: Params, where: string): Promise<void> {
    const s = this.session(p.string("session"), where);
    const code = errorCodeOf(p.string("code"));
    const status = await this.until(`the end of session ${s.name} with Error ${errorCodeName(code)}`, p.number("timeout_ms", WAIT_MS_DEFAULT), () => s.status);
    const responses = s.received();
    const endings = responses.filter((e) => e.kind === "error" || e.kind === "redirect");
    const last = responses.at(-1);
    if (endings.length === 0) throw new StepFailure(`session ${s.name} ended with status ${grpcStatusName(status.code)} (${status.details}) and no Error; expected Error ${errorCodeName(code)}`);
    if (endings.length > 1) throw new StepFailure(`session ${s.name} got ${endings.length} Error/Redirect messages; exactly one ends a session`);
    if (last !== endings[0]) throw new StepFailure(`session ${s.name} got "${last!.kind}" after its ${endings[0]!.kind}; nothing may follow it`);
    const error = last!.value as { code: number; message: string };
    if (last!.kind !== "error" || error.code !== code) {
      throw new StepFailure(`session ${s.name} ended with ${last!.kind === "error" ? `Error ${errorCodeName(error.code)} (${error.message})` : "Redirect"}; expected Error ${errorCodeName(code)}`);
    }
    const wantStatus = GRPC_STATUS_OF[code as ErrorCode];
    if (status.code !== wantStatus) throw new StepFailure(`Error ${errorCodeName(code)} was followed by status ${grpcStatusName(status.code)}; it maps to ${grpcStatusName(wantStatus)}`);
    const detailsMax = p.optionalNumber("status_details_max");
    if (detailsMax !== undefined && status.details.length > detailsMax) {
      throw new StepFailure(`session ${s.name}'s status details hold ${status.details.length} characters; at most ${detailsMax} (R-ERROR-TYPED)`);
    }
  }

  private async open(p: Params, where: string): Promise<void> {
    const name = p.string("session");
    const stream = this.stream(p.string("stream"));
    const retryBusyMs = p.number("retry_busy_ms", 0);
    const deadline = Date.now() + retryBusyMs;
    for (;;) {
      const s = this.session(name, where);
      const before = s.received("opened").length;
      s.send("open", { stream }, p.boolean("unknown_fields", false));
      const opened = await this.until(`StreamOpened for ${stream} on ${name}`, p.number("timeout_ms", WAIT_MS_DEFAULT), () => {
        const answer = s.received("opened")[before];
        if (answer !== undefined) return answer.value as StreamOpened;
        if (s.ended) return null;
        return undefined;
      });
      if (opened !== null) {
        this.opened.set(`${name}/${stream}`, opened);
        return this.judgeOpened(opened, p);
      }
      const busy = (s.received("error")[0]?.value as { code: number } | undefined)?.code === ErrorCode.STREAM_BUSY;
      if (!busy || Date.now() > deadline) throw new StepFailure(`OpenStream ${stream} on ${name}: ${this.ending(s)}`);
      // The engine has not yet seen the stream's previous session end (protocol §7.1): retry.
      await sleep(100);
      await this.openSession(this.sessionParams.get(name)!, where);
    }
  }

  private judgeOpened(opened: StreamOpened, p: Params): void {
    if (opened.committed > opened.resumeAfter) throw new StepFailure(`StreamOpened.committed ${opened.committed} is above resume_after ${opened.resumeAfter}`);
    const exact = p.optionalNumber("resume_after");
    if (exact !== undefined && opened.resumeAfter !== BigInt(exact)) throw new StepFailure(`StreamOpened.resume_after is ${opened.resumeAfter}, expected ${exact}`);
    const atLeast = p.optionalNumber("resume_after_at_least");
    if (atLeast !== undefined && opened.resumeAfter < BigInt(atLeast)) throw new StepFailure(`StreamOpened.resume_after is ${opened.resumeAfter}; records up to ${atLeast} were accepted on an earlier session`);
    const committedAtLeast = p.optionalNumber("committed_at_least");
    if (committedAtLeast !== undefined && opened.committed < BigInt(committedAtLeast)) throw new StepFailure(`StreamOpened.committed is ${opened.committed}; ${committedAtLeast} was reported committed before`);
  }

  private async send(p: Params, where: string): Promise<void> {
    const s = this.session(p.string("session"), where);
    const kind = p.string("kind");
    switch (kind) {
      case "hello":
        s.send("hello", this.hello(s.role, {}, p.string("session")));
        return;
      case "open":
        s.send("open", { stream: p.string("stream") === "" ? "" : this.stream(p.string("stream")) });
        return;
      case "end":
        s.send("end", { stream: this.stream(p.string("stream")) });
        return;
      case "batch": {
        const stream = p.string("stream");
        const positions = p.raw("positions") as number[];
        const records = positions.map((position) => ({ position: BigInt(position), value: Buffer.from(this.value(stream, position)) }));
        s.send("batch", { stream: this.stream(stream), records });
        return;
      }
      case "oversized": {
        // One record whose value alone is over max_message_bytes.
        const limit = s.welcome?.limits?.maxMessageBytes ?? 16 * 1024 * 1024;
        const stream = p.string("stream");
        s.send("batch", { stream: this.stream(stream), records: [{ position: 1n, value: Buffer.alloc(limit + 1, 0x78) }] });
        return;
      }
      case "too_many": {
        const max = s.welcome?.limits?.maxBatchRecords ?? 10_000;
        const stream = p.string("stream");
        const records = Array.from({ length: max + 1 }, (_, i) => ({ position: BigInt(i + 1), value: Buffer.from(this.value(stream, i + 1)) }));
        s.send("batch", { stream: this.stream(stream), records });
        return;
      }
      case "long_name": {
        // A stream name one byte over the advertised limit.
        const limit = s.welcome?.limits?.maxStreamNameBytes ?? 0;
        if (limit === 0) throw new StepFailure("Welcome.limits.max_stream_name_bytes is 0: the engine advertises no stream name limit (R-SRC-STREAM-LIMITS)");
        const prefix = this.stream(p.string("stream"));
        s.send("open", { stream: prefix + "x".repeat(Math.max(0, limit + 1 - Buffer.byteLength(prefix))) });
        return;
      }
      case "many_streams": {
        // One stream more than a session may open, without waiting for the answers.
        const limit = s.welcome?.limits?.maxStreamsPerSession ?? 0;
        if (limit === 0) throw new StepFailure("Welcome.limits.max_streams_per_session is 0: the engine advertises no limit on streams per session (R-SRC-STREAM-LIMITS)");
        const stream = p.string("stream");
        for (let i = 0; i <= limit; i++) s.send("open", { stream: this.stream(`${stream}-${i}`) });
        return;
      }
      case "empty":
        s.sendRaw(Buffer.alloc(0), "empty");
        return;
      case "unknown_kind":
        s.sendRaw(unknownKindMessage(), "unknown-kind");
        return;
      case "garbage":
        s.sendRaw(MALFORMED_BYTES, "garbage");
        return;
      default:
        throw new Error(`${where}: unknown send kind "${kind}"`);
    }
  }

  /** The values of records `from`..`through` (or `positions`) of `stream`. */
  values(p: Params, where: string): string[] {
    const stream = p.string("stream");
    const positions = p.raw("positions") as number[] | undefined;
    if (positions !== undefined) return positions.map((pos) => this.value(stream, pos));
    const from = p.number("from");
    const through = p.number("through");
    if (through < from) throw new Error(`${where}: through must not be below from`);
    return Array.from({ length: through - from + 1 }, (_, i) => this.value(stream, from + i));
  }

  /** Sends records from..through in batches, within the credits and the batch limit (a well-behaved source). */
  private async sendRecords(p: Params, where: string): Promise<void> {
    const s = this.session(p.string("session"), where);
    const stream = p.string("stream");
    const from = p.number("from");
    // {"initial_credits_plus": n}: more records than the Welcome's credits cover, so the engine must grant more.
    const plus = (p.raw("through") as { initial_credits_plus?: number } | undefined)?.initial_credits_plus;
    const through = plus === undefined ? p.number("through") : (s.welcome?.initialCredits ?? 0) + plus;
    const batchMax = Math.min(p.number("batch", 100), s.welcome?.limits?.maxBatchRecords ?? 100);
    const ids = p.raw("ids") as string[] | undefined;
    const timeoutMs = p.number("timeout_ms", WAIT_MS_DEFAULT);
    for (let position = from; position <= through; ) {
      const balance = await this.until(`credits on ${s.name} to send ${stream}@${position}`, timeoutMs, () => {
        if (s.ended) throw new StepFailure(`session ${s.name} ended while sending: ${this.ending(s)}`);
        const b = s.sourceBalance();
        return b > 0 ? b : undefined;
      });
      const count = Math.min(balance, batchMax, through - position + 1);
      const records = Array.from({ length: count }, (_, i) => {
        const pos = position + i;
        const id = ids?.[pos - from];
        return { position: BigInt(pos), value: Buffer.from(this.value(stream, pos)), idempotencyId: id === undefined ? "" : `${this.runId}-${id}` };
      });
      s.send("batch", { stream: this.stream(stream), records });
      position += count;
    }
  }

  /**
   * Sends more records than the credits granted so far. Credits the engine grants meanwhile can
   * make a batch legal after all, so it tries again until the engine answers with an Error.
   */
  private async sendUntilError(p: Params, where: string): Promise<void> {
    const s = this.session(p.string("session"), where);
    const stream = p.string("stream");
    const batchMax = s.welcome?.limits?.maxBatchRecords ?? 10_000;
    const deadline = Date.now() + p.number("timeout_ms", WAIT_MS_DEFAULT);
    let position = p.number("from", 1);
    while (!s.ended && Date.now() < deadline) {
      const balance = s.sourceBalance();
      const count = Math.min(balance + 1, batchMax);
      const records = Array.from({ length: count }, (_, i) => ({ position: BigInt(position + i), value: Buffer.from(this.value(stream, position + i)) }));
      s.send("batch", { stream: this.stream(stream), records });
      position += count;
      await this.until(`an answer on ${s.name}`, 200, () => (s.ended ? true : undefined)).catch(() => undefined);
    }
  }

  private sendKeys(p: Params, where: string): void {
    const s = this.session(p.string("session"), where);
    const ref = p.string("request");
    const requestId = this.requestIds.get(ref) ?? BigInt(ref);
    const batch = s.received("batch").map((e) => e.value as PartitionBatch).find((b) => b.requestId === requestId);
    const shape = p.string("keys", "auto");
    let keys: object[];
    if (shape === "zero") keys = [];
    else if (shape === "empty-key") keys = (batch?.values ?? [new Uint8Array()]).map(() => ({}));
    else keys = (batch?.values ?? []).map((v) => ({ kind: { case: "text", value: Buffer.from(v).toString("utf8") } }));
    if (shape !== "zero" && keys.length === 0) keys = [{ kind: { case: "text", value: "k" } }];
    s.send("keys", { requestId, keys });
  }

  /** Source: credits granted in total (Welcome plus Credits). */
  granted(s: ClientSession): number {
    let total = 0;
    for (const e of s.received()) {
      if (e.kind === "welcome") total += (e.value as { initialCredits: number }).initialCredits;
      if (e.kind === "credits") total += (e.value as { records: number }).records;
    }
    return total;
  }

  /** Every output record the case's sink sessions received, with the batch it came in. */
  outputs(): Array<{ session: ClientSession; seq: number; sequence: bigint; id: string; value: string }> {
    const out: Array<{ session: ClientSession; seq: number; sequence: bigint; id: string; value: string }> = [];
    for (const s of this.ofRole("sink")) {
      for (const e of s.received("batch")) {
        const batch = e.value as SinkBatch;
        for (const r of batch.records) out.push({ session: s, seq: e.seq, sequence: batch.sequence, id: r.id, value: Buffer.from(r.value).toString("utf8") });
      }
    }
    return out.sort((a, b) => a.seq - b.seq);
  }
}

interface HelloSpec {
  token?: "valid" | "wrong" | "none";
  version?: { major: number; minor: number } | null;
  /** unknown_length: an unknown name of that many characters. */
  target?: "configured" | "unknown" | { role: Role } | { unknown_length: number };
  capabilities?: string[];
  /** Another connector: its streams are not the harness's (R-SRC-OPEN-OWNER). */
  connector_name?: string;
  /** Another instance of the harness's connector. */
  instance_id?: string;
}

function describeValues(values: readonly string[]): string {
  return values.length === 1 ? `record ${values[0]}` : `${values.length} records (${values[0]} ...)`;
}

