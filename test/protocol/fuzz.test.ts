/**
 * A seeded, time-bounded fuzzer of the connector protocol server. Mutated protobuf frames (bit
 * flips, truncation, unknown and duplicated fields, huge varints, wrong wire types, lying lengths,
 * deep groups, oversized frames, random bytes; see helpers/fuzz-frames.ts) go to every method
 * (Describe, Source, Sink, Partition) at every point of a session: as the Hello, right after the
 * Welcome, and mid-stream between good messages. Beside them a healthy source and sink keep
 * flowing, and their output must stay exact; a keyed feeder (source, partitioner, sink) gives the
 * bad sink and partitioner sessions real batches and requests, so their acks and answers (good,
 * then mutated) are built from what they received.
 *
 * Every bad session must end, within a bound, with one typed Error as its last response and the
 * gRPC status mapped from its code, or (when the mutation happened to be valid) with OK once the
 * fuzzer half-closes; never INTERNAL or UNKNOWN, never a hang. Where the outcome follows from the
 * frame alone (it does not parse, it is too large, it holds no message, it is a bad Hello), the
 * exact code is checked too.
 *
 * Cases are numbered; each one's frames and mutations depend only on the seed and its number (an
 * ack or answer also on what the session received; the report shows every frame as sent), so a
 * failure replays with the line it prints:
 *   KEYWAY_FUZZ_SEED=<seed> [KEYWAY_FUZZ_CASE=<n>[,<n>...]] npx vitest run test/protocol/fuzz.test.ts
 * KEYWAY_FUZZ_MS sets the time budget (default 20 s); without KEYWAY_FUZZ_SEED each run draws a
 * new seed and prints it.
 */
import { create, fromBinary, toBinary, type DescMessage } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ConnectorService,
  DescribeRequestSchema,
  DescribeResponseSchema,
  ErrorCode,
  PartitionRequestSchema,
  PartitionResponseSchema,
  SinkRequestSchema,
  SinkResponseSchema,
  SourceRequestSchema,
  SourceResponseSchema,
  type PartitionBatch,
  type SinkBatch,
} from "../../src/protocol/gen/keyway/v1/connector_pb.ts";
import { TestPartitioner, TestSink, TestSource } from "./helpers/connectors.ts";
import { caseRng, chance, hex, int, mutate, pick, type Rng } from "./helpers/fuzz-frames.ts";
import { startHarness, type Harness } from "./helpers/harness.ts";
import { client, closeClients } from "./helpers/raw-session.ts";

// ---- configuration ----

function envInteger(name: string, value: string): number {
  const n = Number(value.trim());
  if (value.trim() === "" || !Number.isSafeInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, got ${JSON.stringify(value)}`);
  return n;
}
const env = process.env;
const SEED = env.KEYWAY_FUZZ_SEED !== undefined ? envInteger("KEYWAY_FUZZ_SEED", env.KEYWAY_FUZZ_SEED) >>> 0 : Math.floor(Math.random() * 2 ** 32);
const BUDGET_MS = env.KEYWAY_FUZZ_MS !== undefined ? envInteger("KEYWAY_FUZZ_MS", env.KEYWAY_FUZZ_MS) : 20_000;
const ONLY_CASES = env.KEYWAY_FUZZ_CASE?.split(",").map((n) => envInteger("KEYWAY_FUZZ_CASE", n));
/** Bad sessions in flight at once. */
const CONCURRENCY = 6;
/** A bad session that has not ended this long after the fuzzer half-closed it hangs. */
const CASE_TIMEOUT_MS = 10_000;
/** One round of the healthy pair (send, commit, deliver) must finish within this. */
const HEALTHY_ROUND_TIMEOUT_MS = 20_000;
/** How long a bad sink or partitioner session waits for a batch or request to answer before it skips the answer. */
const ANSWER_WAIT_MS = 300;
const TOKEN = "fuzz-token";
const LIMITS = { maxMessageBytes: 64 * 1024, maxBatchRecords: 64 };
/** What the engine tells grpc-js to receive at most (src/protocol/server.ts): over it grpc-js refuses the message. */
const GRPC_RECEIVE_LIMIT = LIMITS.maxMessageBytes * 2 + 1024 * 1024;
const MUTATION_CONTEXT = { maxMessageBytes: LIMITS.maxMessageBytes, grpcReceiveLimit: GRPC_RECEIVE_LIMIT };
/**
 * The gRPC status each code ends a session with (docs/protocol.md, the error table), by code name,
 * so a code added to the protocol later compiles here and fails the fuzzer until it is listed.
 */
const STATUS_OF: Readonly<Record<string, grpc.status>> = {
  MALFORMED: grpc.status.INVALID_ARGUMENT,
  UNSUPPORTED_VERSION: grpc.status.FAILED_PRECONDITION,
  UNAUTHENTICATED: grpc.status.UNAUTHENTICATED,
  UNKNOWN_TARGET: grpc.status.NOT_FOUND,
  PROTOCOL_VIOLATION: grpc.status.FAILED_PRECONDITION,
  STREAM_BUSY: grpc.status.ALREADY_EXISTS,
  CREDITS_EXCEEDED: grpc.status.RESOURCE_EXHAUSTED,
  POSITION_REGRESSED: grpc.status.INVALID_ARGUMENT,
  BATCH_TOO_LARGE: grpc.status.RESOURCE_EXHAUSTED,
  UNKNOWN_SEQUENCE: grpc.status.INVALID_ARGUMENT,
  SHUTTING_DOWN: grpc.status.UNAVAILABLE,
  STREAM_OWNED: grpc.status.FAILED_PRECONDITION,
  TOO_MANY_STREAMS: grpc.status.RESOURCE_EXHAUSTED,
  SESSION_REPLACED: grpc.status.ABORTED,
  PERMISSION_DENIED: grpc.status.PERMISSION_DENIED,
};

// ---- cases ----

type SessionMethod = "Source" | "Sink" | "Partition";
type Method = SessionMethod | "Describe";
type Point = "hello" | "after-welcome" | "mid-stream" | "request" | "two-requests" | "no-request";

/**
 * A good frame: fixed bytes, or built when it is sent from what the session received, as a real
 * connector would: "ack" acknowledges the sink batches received so far, "keys" answers the oldest
 * partition request received.
 */
type Frame = { name: string; bytes: Uint8Array; answer?: undefined } | { name: string; answer: "ack" | "keys"; bytes?: undefined };

interface FuzzCase {
  index: number;
  method: Method;
  point: Point;
  /** Good frames sent before the mutated one (for a session point other than hello: the Hello first). */
  before: Frame[];
  /** The good frame the mutations start from. */
  base: Frame;
  /** Good frames sent after the mutated one. */
  after: Frame[];
  /** Draws the mutations (kept apart from the draws that built the case). */
  mutationRng: Rng;
}

/** The mutated frame as sent. */
interface Sent {
  base: string;
  mutations: string[];
  frame: Uint8Array;
}

const ROLES: Record<SessionMethod, { target: string; request: DescMessage; response: DescMessage; targets: readonly string[] }> = {
  // Bad source sessions share the healthy pair's source (their streams are their own); their
  // output reaches the healthy sink under their own record ids.
  Source: { target: "in", request: SourceRequestSchema, response: SourceResponseSchema, targets: ["in", "kin"] },
  // Not "out": a bad sink session could take and ack the healthy pair's output. "kout" gets the
  // keyed feeder's output, so bad sink sessions receive real batches to ack.
  Sink: { target: "kout", request: SinkRequestSchema, response: SinkResponseSchema, targets: ["out", "kout"] },
  // Beside the feeder's partitioner: bad partitioner sessions get real requests to answer.
  Partition: { target: "pk", request: PartitionRequestSchema, response: PartitionResponseSchema, targets: ["pk"] },
};

const frame = (name: string, schema: DescMessage, init: object): Frame => ({ name, bytes: toBinary(schema, create(schema, init as never)) });

function helloFrame(method: SessionMethod, index: number): Frame {
  return frame("hello", ROLES[method].request, {
    kind: {
      case: "hello",
      value: {
        version: { major: 1, minor: 0 },
        connectorName: `fuzz-${method.toLowerCase()}`,
        instanceId: `fuzz-${index}`,
        target: ROLES[method].target,
        token: TOKEN,
        capabilities: ["fuzz"],
      },
    },
  });
}

/** A session's good frames in order (the Hello first), and further frames a mutation may start from. */
function goodFrames(method: SessionMethod, index: number, rng: Rng): { sequence: Frame[]; extra: Frame[] } {
  const hello = helloFrame(method, index);
  const credits = (n: number) => frame(`credits(${n})`, ROLES[method].request, { kind: { case: "credits", value: { records: n } } });
  if (method === "Source") {
    const stream = `fuzz-${index}`;
    let position = 0;
    const batch = () => {
      const n = int(rng, 1, 4);
      const records = Array.from({ length: n }, () => {
        position++;
        return {
          position: BigInt(position),
          value: Buffer.from(`fz${index}.${position}`),
          ...(chance(rng, 0.5) ? { key: Buffer.from(`k${position}`) } : {}),
          eventTimeMs: BigInt(1_700_000_000_000 + position),
          headers: chance(rng, 0.5) ? { h: `v${position}` } : {},
          idempotencyId: chance(rng, 0.3) ? `fuzz-${index}-${position}` : "",
        };
      });
      return frame(`batch(${stream}, ${n} records)`, SourceRequestSchema, { kind: { case: "batch", value: { stream, records } } });
    };
    const open = (name: string) => frame(`open(${name})`, SourceRequestSchema, { kind: { case: "open", value: { stream: name } } });
    const end = frame(`end(${stream})`, SourceRequestSchema, { kind: { case: "end", value: { stream } } });
    // Opening the healthy pair's stream: STREAM_BUSY, mutated or not.
    return { sequence: [hello, open(stream), batch(), batch(), end], extra: [open(HEALTHY_STREAM)] };
  }
  if (method === "Sink") {
    const ack: Frame = { name: "ack(received)", answer: "ack" };
    return {
      sequence: [hello, credits(int(rng, 1, 100)), ack, credits(int(rng, 1, 100)), ack],
      extra: [SOME_ACK],
    };
  }
  const keys: Frame = { name: "keys(received)", answer: "keys" };
  return { sequence: [hello, credits(int(rng, 1, 100)), keys, credits(int(rng, 1, 100)), keys], extra: [SOME_KEYS] };
}

/** An ack and an answer made up, not built from what the session received. */
const SOME_ACK = frame("ack(1)", SinkRequestSchema, { kind: { case: "ack", value: { sequence: 1n } } }) as { name: string; bytes: Uint8Array };
const SOME_KEYS = frame("keys(1, [text, raw])", PartitionRequestSchema, {
  kind: { case: "keys", value: { requestId: 1n, keys: [{ kind: { case: "text", value: "a" } }, { kind: { case: "raw", value: Buffer.from([0, 255]) } }] } },
}) as { name: string; bytes: Uint8Array };

function buildCase(seed: number, index: number): FuzzCase {
  const rng = caseRng(seed, index);
  const mutationRng = caseRng(seed ^ 0x5bd1e995, index);
  const method = pick<Method>(rng, ["Source", "Source", "Sink", "Sink", "Partition", "Partition", "Describe"]);
  if (method === "Describe") {
    const point = pick<Point>(rng, ["request", "request", "request", "request", "request", "two-requests", "no-request"]);
    // The empty DescribeRequest gives little to mutate: often start from another method's frame.
    const base = chance(rng, 0.5)
      ? frame("DescribeRequest", DescribeRequestSchema, {})
      : pick(rng, goodFrames(pick<SessionMethod>(rng, ["Source", "Sink", "Partition"]), index, rng).sequence.filter((f) => f.bytes !== undefined));
    const before = point === "two-requests" ? [frame("DescribeRequest", DescribeRequestSchema, {})] : [];
    return { index, method, point, before, base, after: [], mutationRng };
  }
  const point = pick<Point>(rng, ["hello", "after-welcome", "mid-stream"]);
  const { sequence, extra } = goodFrames(method, index, rng);
  // Where the mutated frame goes: instead of the Hello, right after it, or after more good frames.
  const at = point === "hello" ? 0 : point === "after-welcome" ? 1 : int(rng, 2, sequence.length - 1);
  // Mostly the frame that belongs there, mutated; sometimes any frame of the role.
  const base = chance(rng, 0.7) ? sequence[at]! : pick(rng, [...sequence, ...extra]);
  const replaced = base === sequence[at];
  return { index, method, point, before: sequence.slice(0, at), base, after: sequence.slice(replaced ? at + 1 : at), mutationRng };
}

// ---- what the engine must answer ----

type Expected =
  | { kind: "error"; code: ErrorCode; why: string }
  /** The Hello passes: a Welcome first, then anything a session may end with. */
  | { kind: "welcome"; why: string }
  | { kind: "status"; codes: grpc.status[]; why: string }
  | { kind: "any"; why: string };

function expected(c: FuzzCase, sent: Sent): Expected {
  const size = sent.frame.length;
  if (c.method === "Describe") {
    if (c.point === "two-requests" && size > GRPC_RECEIVE_LIMIT) {
      return { kind: "status", codes: [grpc.status.UNIMPLEMENTED, grpc.status.RESOURCE_EXHAUSTED], why: "a second request, over the gRPC receive limit" };
    }
    if (c.point !== "request") return { kind: "status", codes: [grpc.status.UNIMPLEMENTED], why: "a unary call with no request or two (grpc-js refuses it)" };
    if (size > GRPC_RECEIVE_LIMIT) return { kind: "status", codes: [grpc.status.RESOURCE_EXHAUSTED], why: "over the gRPC receive limit" };
    // As sessions answer it (BATCH_TOO_LARGE), by status: protocol §6.5.
    if (size > LIMITS.maxMessageBytes) return { kind: "status", codes: [grpc.status.RESOURCE_EXHAUSTED], why: "over max_message_bytes" };
    if (decode(DescribeRequestSchema, sent.frame) === undefined) return { kind: "status", codes: [grpc.status.INVALID_ARGUMENT], why: "does not parse as a DescribeRequest" };
    return { kind: "status", codes: [grpc.status.OK], why: "parses as a DescribeRequest" };
  }
  if (size > GRPC_RECEIVE_LIMIT) return { kind: "status", codes: [grpc.status.RESOURCE_EXHAUSTED], why: "over the gRPC receive limit" };
  if (size > LIMITS.maxMessageBytes) return { kind: "error", code: ErrorCode.BATCH_TOO_LARGE, why: "over max_message_bytes" };
  const role = ROLES[c.method];
  const message = decode(role.request, sent.frame) as { kind: { case: string | undefined; value?: unknown } } | undefined;
  if (message === undefined) return { kind: "error", code: ErrorCode.MALFORMED, why: `does not parse as a ${role.request.typeName}` };
  const kind = message.kind.case;
  if (kind === undefined) return { kind: "error", code: ErrorCode.PROTOCOL_VIOLATION, why: "holds no message" };
  if (c.point !== "hello") {
    return kind === "hello" ? { kind: "error", code: ErrorCode.PROTOCOL_VIOLATION, why: "a second Hello" } : { kind: "any", why: `a ${kind} that parses` };
  }
  if (kind !== "hello") return { kind: "error", code: ErrorCode.PROTOCOL_VIOLATION, why: `a ${kind} before Hello` };
  const hello = message.kind.value as { version?: { major: number }; token: string; target: string };
  if (hello.version?.major !== 1) return { kind: "error", code: ErrorCode.UNSUPPORTED_VERSION, why: `a Hello with version major ${hello.version?.major ?? "none"}` };
  if (hello.token !== TOKEN) return { kind: "error", code: ErrorCode.UNAUTHENTICATED, why: "a Hello with a wrong token" };
  if (!role.targets.includes(hello.target)) return { kind: "error", code: ErrorCode.UNKNOWN_TARGET, why: `a Hello for target ${JSON.stringify(hello.target)}` };
  return { kind: "welcome", why: "a good Hello" };
}

function decode(schema: DescMessage, bytes: Uint8Array): unknown {
  try {
    return fromBinary(schema, bytes);
  } catch {
    return undefined;
  }
}

// ---- running a case ----

type Kinded = { kind: { case: string | undefined; value?: unknown } };

interface Observed {
  sent: Sent;
  responses: Kinded[];
  status: grpc.StatusObject | undefined;
  /** Set when the case did not get as far as it should (no Welcome to a good Hello, a hang). */
  stuck?: string;
}

const identity = (b: Buffer): Buffer => b;
const methodPath = (method: Method) => `/${ConnectorService.typeName}/${method}`;

/** A small pool of channels for the bad sessions (the healthy connectors have their own). */
let channels: grpc.Client[] = [];

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | "timeout"> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([promise, new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), ms)))]).finally(() => clearTimeout(timer));
}

function mutated(c: FuzzCase, base: { name: string; bytes: Uint8Array }): Sent {
  if (c.point === "no-request") return { base: "none", mutations: [], frame: new Uint8Array(0) };
  const { frame: bytes, mutations } = mutate(c.mutationRng, base.bytes, MUTATION_CONTEXT);
  return { base: base.name, mutations, frame: bytes };
}

async function runDescribe(c: FuzzCase): Promise<Observed> {
  const channel = channels[c.index % channels.length]!;
  const deadline = Date.now() + CASE_TIMEOUT_MS;
  const sent = mutated(c, c.base as { name: string; bytes: Uint8Array });
  const responses: Kinded[] = [];
  const status = await new Promise<grpc.StatusObject>((resolve) => {
    const done = (err: grpc.ServiceError | null, response?: Buffer) => {
      if (response !== undefined) responses.push({ kind: { case: "describe", value: fromBinary(DescribeResponseSchema, response) } });
      resolve(err === null ? { code: grpc.status.OK, details: "", metadata: new grpc.Metadata() } : err);
    };
    if (c.point === "request") {
      channel.makeUnaryRequest(methodPath("Describe"), identity, identity, Buffer.from(sent.frame), { deadline }, done);
      return;
    }
    const call = channel.makeClientStreamRequest(methodPath("Describe"), identity, identity, { deadline }, done);
    for (const f of c.before) call.write(Buffer.from(f.bytes!));
    if (c.point === "two-requests") call.write(Buffer.from(sent.frame));
    call.end();
  });
  return { sent, responses, status, stuck: status.code === grpc.status.DEADLINE_EXCEEDED ? `no answer within ${CASE_TIMEOUT_MS} ms` : undefined };
}

async function runSession(c: FuzzCase & { method: SessionMethod }): Promise<Observed> {
  const role = ROLES[c.method];
  const channel = channels[c.index % channels.length]!;
  const deserialize = (b: Buffer) => fromBinary(role.response, b) as unknown as Kinded;
  const call = channel.makeBidiStreamRequest(methodPath(c.method), identity, deserialize);
  const responses: Kinded[] = [];
  /** Sink batches not acked yet, partition requests not answered yet: what "ack" and "keys" frames settle. */
  const sequences: bigint[] = [];
  const requests: PartitionBatch[] = [];
  let waiters: Array<() => void> = [];
  call.on("data", (r: Kinded) => {
    responses.push(r);
    if (r.kind.case === "batch" && c.method === "Sink") sequences.push((r.kind.value as SinkBatch).sequence);
    if (r.kind.case === "batch" && c.method === "Partition") requests.push(r.kind.value as PartitionBatch);
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  });
  call.on("error", () => undefined);
  let ended = false;
  const status = new Promise<grpc.StatusObject>((resolve) => call.on("status", resolve));
  void status.then(() => {
    ended = true;
    for (const f of waiters) f();
  });
  /** Waits (within ms) until check() holds or the call ends; says whether it holds. */
  const until = async (check: () => boolean, ms: number): Promise<boolean> => {
    const deadline = Date.now() + ms;
    while (!check() && !ended && Date.now() < deadline) {
      await withTimeout(new Promise<void>((r) => waiters.push(r)), deadline - Date.now());
    }
    return check();
  };
  /** The bytes of a good frame; undefined for an answer with nothing to answer. */
  const materialize = async (f: Frame): Promise<{ name: string; bytes: Uint8Array } | undefined> => {
    if (f.answer === undefined) return f;
    if (f.answer === "ack") {
      if (!(await until(() => sequences.length > 0, ANSWER_WAIT_MS))) return undefined;
      const sequence = sequences.at(-1)!;
      sequences.length = 0;
      return frame(`ack(${sequence})`, SinkRequestSchema, { kind: { case: "ack", value: { sequence } } }) as { name: string; bytes: Uint8Array };
    }
    if (!(await until(() => requests.length > 0, ANSWER_WAIT_MS))) return undefined;
    const request = requests.shift()!;
    const keys = request.values.map((v) => ({ kind: { case: "text", value: Buffer.from(v).toString() } }));
    const name = `keys(${request.requestId}, ${keys.length} keys)`;
    return frame(name, PartitionRequestSchema, { kind: { case: "keys", value: { requestId: request.requestId, keys } } }) as { name: string; bytes: Uint8Array };
  };
  const sendGood = async (f: Frame) => {
    const good = await materialize(f);
    if (good !== undefined) call.write(Buffer.from(good.bytes));
  };

  const [hello, ...rest] = c.before;
  if (hello !== undefined) {
    call.write(Buffer.from(hello.bytes!));
    // The rest goes after the Welcome, as a connector would send it.
    if (!(await until(() => responses.length > 0, CASE_TIMEOUT_MS))) {
      call.cancel();
      return { sent: { base: c.base.name, mutations: [], frame: new Uint8Array(0) }, responses, status: undefined, stuck: `no Welcome to a good Hello within ${CASE_TIMEOUT_MS} ms` };
    }
    if (responses[0]?.kind.case !== "welcome") {
      return { sent: { base: c.base.name, mutations: [], frame: new Uint8Array(0) }, responses, status: await status, stuck: "a good Hello was not welcomed" };
    }
    for (const f of rest) await sendGood(f);
  }
  // An answer with nothing to answer mutates a made-up one.
  const base = (await materialize(c.base)) ?? (c.method === "Sink" ? SOME_ACK : SOME_KEYS);
  const sent = mutated(c, base as { name: string; bytes: Uint8Array });
  call.write(Buffer.from(sent.frame));
  for (const f of c.after) await sendGood(f);
  call.end();
  const final = await withTimeout(status, CASE_TIMEOUT_MS);
  if (final === "timeout") {
    call.cancel();
    return { sent, responses, status: undefined, stuck: `the session did not end within ${CASE_TIMEOUT_MS} ms of the half-close` };
  }
  return { sent, responses, status: final };
}

const runCase = (c: FuzzCase): Promise<Observed> => (c.method === "Describe" ? runDescribe(c) : runSession(c as FuzzCase & { method: SessionMethod }));

/** What is wrong with the engine's answer to c, or undefined. */
function judge(c: FuzzCase, want: Expected, got: Observed): string | undefined {
  if (got.stuck !== undefined) return got.stuck;
  const status = got.status!;
  const bad = [grpc.status.INTERNAL, grpc.status.UNKNOWN];
  if (bad.includes(status.code)) return `status ${grpc.status[status.code]}`;
  if (c.method === "Describe") {
    if (want.kind === "status" && !want.codes.includes(status.code)) return `status ${grpc.status[status.code]}, expected ${want.codes.map((s) => grpc.status[s]).join(" or ")}`;
    return undefined;
  }
  const errors = got.responses.filter((r) => r.kind.case === "error");
  if (got.responses.some((r) => r.kind.case === "redirect")) return "a Redirect from a single engine";
  if (errors.length > 1) return `${errors.length} Error responses`;
  if (errors.length === 1 && got.responses.at(-1)!.kind.case !== "error") return "responses after the Error";
  const error = errors[0]?.kind.value as { code: ErrorCode; message: string } | undefined;
  if (error !== undefined) {
    if (error.code === ErrorCode.INTERNAL || error.code === ErrorCode.UNSPECIFIED) return `Error ${ErrorCode[error.code]}`;
    const mapped = STATUS_OF[ErrorCode[error.code] ?? ""];
    if (mapped === undefined) return `Error code ${error.code} (${ErrorCode[error.code] ?? "unnamed"}), which the fuzzer does not know: add it to STATUS_OF`;
    if (mapped !== status.code) return `Error ${ErrorCode[error.code]} ended with status ${grpc.status[status.code]}, not ${grpc.status[mapped]}`;
  } else if (status.code !== grpc.status.OK && !(want.kind === "status" && want.codes.includes(status.code))) {
    return `status ${grpc.status[status.code]} without an Error`;
  }
  switch (want.kind) {
    case "error":
      if (error?.code !== want.code) return `expected Error ${ErrorCode[want.code]}`;
      return undefined;
    case "status":
      if (!want.codes.includes(status.code)) return `expected status ${want.codes.map((s) => grpc.status[s]).join(" or ")}`;
      return undefined;
    case "welcome":
      if (got.responses[0]?.kind.case !== "welcome") return "expected a Welcome first";
      return undefined;
    case "any":
      return undefined;
  }
}

function outcome(got: Observed): string {
  if (got.stuck !== undefined) return "STUCK";
  const error = got.responses.find((r) => r.kind.case === "error")?.kind.value as { code: ErrorCode } | undefined;
  return error !== undefined ? ErrorCode[error.code]! : `status ${grpc.status[got.status!.code]}`;
}

function report(c: FuzzCase, want: Expected | undefined, got: Observed, problem: string): string {
  const responses = got.responses.map((r) => {
    if (r.kind.case !== "error") return r.kind.case ?? "(empty)";
    const e = r.kind.value as { code: ErrorCode; message: string };
    return `error ${ErrorCode[e.code]} ${JSON.stringify(e.message)}`;
  });
  const expectation =
    want === undefined
      ? "(not reached)"
      : `${want.kind === "error" ? `Error ${ErrorCode[want.code]}` : want.kind === "status" ? `status ${want.codes.map((s) => grpc.status[s]).join(" or ")}` : want.kind} (${want.why})`;
  return [
    `fuzz case ${c.index} failed: ${problem}`,
    `  replay: KEYWAY_FUZZ_SEED=${SEED} KEYWAY_FUZZ_CASE=${c.index} npx vitest run test/protocol/fuzz.test.ts`,
    `  ${c.method}, mutated frame at point "${c.point}"; before it: [${c.before.map((f) => f.name).join(", ")}]; after it: [${c.after.map((f) => f.name).join(", ")}]`,
    `  base frame: ${got.sent.base}`,
    ...got.sent.mutations.map((m) => `  mutation: ${m}`),
    `  frame (${got.sent.frame.length} bytes): ${hex(got.sent.frame)}`,
    `  expected: ${expectation}`,
    `  observed: responses [${responses.join(", ")}], status ${got.status === undefined ? "none" : `${grpc.status[got.status.code]} ${JSON.stringify(got.status.details)}`}`,
  ].join("\n");
}

// ---- the healthy pair ----

const HEALTHY_STREAM = "healthy";
const KEYED_STREAM = "keyed";
const HEALTHY_PER_ROUND = 5;
/** Output record ids are "<pipeline>:<stream>@<position>:<output index>" (R-SINK-IDS). */
const HEALTHY_ID_PREFIX = `upper:${HEALTHY_STREAM}@`;

interface Healthy {
  source: TestSource;
  sink: TestSink;
  sent: number;
  /** The healthy stream's output records the healthy sink received, in order: [id, value]. */
  output: Array<[string, string]>;
  /** Sink batches already scanned into output. */
  scanned: number;
}

async function healthyRound(h: Healthy): Promise<void> {
  const from = h.sent + 1;
  h.sent += HEALTHY_PER_ROUND;
  const records = Array.from({ length: HEALTHY_PER_ROUND }, (_, i) => ({ position: from + i, value: `h${from + i}` }));
  const round = (async () => {
    await h.source.send(HEALTHY_STREAM, records);
    await h.source.untilCommitted(HEALTHY_STREAM, h.sent);
    await h.sink.session.until(`healthy output up to ${h.sent}`, () => healthyOutput(h).length >= h.sent);
  })();
  if ((await withTimeout(round, HEALTHY_ROUND_TIMEOUT_MS)) === "timeout") {
    throw new Error(`the healthy pair stalled: round up to position ${h.sent} not done within ${HEALTHY_ROUND_TIMEOUT_MS} ms (seed ${SEED})`);
  }
}

/** h.output, brought up to date with the batches received since the last call. */
function healthyOutput(h: Healthy): Array<[string, string]> {
  for (; h.scanned < h.sink.batches.length; h.scanned++) {
    for (const r of h.sink.batches[h.scanned]!.records) if (r.id.startsWith(HEALTHY_ID_PREFIX)) h.output.push([r.id, Buffer.from(r.value).toString()]);
  }
  return h.output;
}

// ---- the test ----

let harness: Harness | undefined;
let engineFailure: unknown;

beforeAll(async () => {
  harness = await startHarness({ token: TOKEN, limits: LIMITS });
  harness.engine!.done.catch((err: unknown) => (engineFailure = err));
  channels = Array.from({ length: 3 }, () => client(harness!.address));
});

afterAll(async () => {
  for (const c of channels) c.close();
  closeClients();
  await harness?.stop();
});

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

describe("protocol fuzzing", () => {
  it("answers mutated frames on every method with typed errors while a healthy pair flows exactly", async () => {
    const h = harness!;
    console.log(`protocol fuzz: seed ${SEED} (replay with KEYWAY_FUZZ_SEED=${SEED}), budget ${BUDGET_MS} ms`);
    // The healthy pair, whose output is checked exactly.
    const sink = await TestSink.connect(h.address, "out", { token: TOKEN });
    const source = await TestSource.connect(h.address, "in", { token: TOKEN, instanceId: "healthy" });
    await source.open(HEALTHY_STREAM);
    const healthy: Healthy = { source, sink, sent: 0, output: [], scanned: 0 };
    await healthyRound(healthy);
    // The keyed feeder: traffic through a partitioner to "kout", so the bad sink and partitioner
    // sessions get real batches and requests. Its output is not checked exactly (a bad sink session
    // may ack what it received, a bad partitioner may answer other keys: both are within the
    // protocol), only that it keeps being committed.
    await TestSink.connect(h.address, "kout", { token: TOKEN });
    await TestPartitioner.connect(h.address, { keyOf: (v) => v.slice(0, 2), token: TOKEN });
    const feeder = await TestSource.connect(h.address, "kin", { token: TOKEN, instanceId: "keyed-feeder" });
    await feeder.open(KEYED_STREAM);
    let fed = 0;

    const failures: string[] = [];
    const outcomes = new Map<string, number>();
    const started = Date.now();
    let stopped = false;
    let next = 0;
    let run = 0;
    const more = () => !stopped && failures.length === 0 && (ONLY_CASES !== undefined ? next < ONLY_CASES.length : Date.now() - started < BUDGET_MS);

    const fuzzing = Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (more()) {
          const index = ONLY_CASES !== undefined ? ONLY_CASES[next++]! : next++;
          const c = buildCase(SEED, index);
          const got = await runCase(c);
          const want = expected(c, got.sent);
          run++;
          const key = `${c.method} ${c.point}: ${outcome(got)}`;
          outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
          const problem = judge(c, want, got);
          if (problem !== undefined) failures.push(report(c, want, got, problem));
        }
      }),
    ).finally(() => (stopped = true));
    // The healthy pair and the feeder flow all along, between and during the bad sessions.
    const feeding = (async () => {
      while (!stopped) {
        const from = fed + 1;
        fed += 10;
        await feeder.send(KEYED_STREAM, Array.from({ length: 10 }, (_, i) => ({ position: from + i, value: `k${(from + i) % 7}-${from + i}` })));
        await sleep(20);
      }
    })();
    let rounds = 1;
    try {
      while (!stopped) {
        await healthyRound(healthy);
        rounds++;
        await sleep(5);
      }
      await fuzzing;
      await healthyRound(healthy);
      rounds++;
      if ((await withTimeout(feeding.then(() => feeder.untilCommitted(KEYED_STREAM, fed)), HEALTHY_ROUND_TIMEOUT_MS)) === "timeout") {
        throw new Error(`the keyed feeder stalled: ${fed} records not committed within ${HEALTHY_ROUND_TIMEOUT_MS} ms (seed ${SEED})`);
      }
    } finally {
      stopped = true;
      console.log(
        `protocol fuzz: seed ${SEED}, ${run} cases in ${Date.now() - started} ms, ${rounds} healthy rounds, ${fed} keyed records; outcomes:\n` +
          [...outcomes].sort(([a], [b]) => a.localeCompare(b)).map(([k, n]) => `  ${k}: ${n}`).join("\n"),
      );
    }
    if (failures.length > 0) expect.fail(`${failures.length} fuzz case(s) failed (seed ${SEED}):\n${failures.slice(0, 5).join("\n")}`);

    // The healthy output is exact: every record once, in order, with its value.
    const want = Array.from({ length: healthy.sent }, (_, i): [string, string] => [`${HEALTHY_ID_PREFIX}${i + 1}:0`, `H${i + 1}`]);
    expect(healthyOutput(healthy), `healthy output (seed ${SEED})`).toEqual(want);
    expect(healthy.source.committed.get(HEALTHY_STREAM), `healthy commits (seed ${SEED})`).toBe(BigInt(healthy.sent));
    // No bad session outlived its call, and the engine never failed.
    expect(h.server.sessionCounts(), `live sessions after fuzzing (seed ${SEED})`).toEqual({ source: 2, sink: 2, partitioner: 1 });
    expect(engineFailure, `engine failure (seed ${SEED})`).toBeUndefined();
  }, BUDGET_MS + 90_000);
});
