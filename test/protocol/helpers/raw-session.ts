/**
 * A raw connector session for tests: a real grpc-js bidirectional call built from the adapter's
 * client definition, that sends whatever the test says (messages, or arbitrary bytes) and
 * collects every response and the call's final status, so a test can misbehave on purpose.
 */
import { create, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  ConnectorService,
  HelloSchema,
  PartitionRequestSchema,
  ProtocolVersionSchema,
  SinkRequestSchema,
  SourceRequestSchema,
  type Hello,
  type PartitionResponse,
  type SinkResponse,
  type SourceResponse,
} from "../../../src/protocol/gen/keyway/v1/connector_pb.ts";
import { clientDefinition } from "../../../src/rpc/grpc-adapter.ts";

const definition = clientDefinition(ConnectorService);
const clients = new Set<grpc.Client>();

/** Closes every client the tests opened (call in afterEach). */
export function closeClients(): void {
  for (const client of clients) client.close();
  clients.clear();
}

export function client(address: string): grpc.Client {
  const c = new grpc.Client(address, grpc.credentials.createInsecure());
  clients.add(c);
  return c;
}

type Kinded = { kind: { case: string | undefined; value?: unknown } };
type KindCase<R extends Kinded> = Exclude<R["kind"]["case"], undefined>;
type KindValue<R extends Kinded, C> = Extract<R["kind"], { case: C }>["value"];

export interface RawSession<Req extends DescMessage, Res extends Kinded> {
  /** A message to send (built with create), or bytes sent as they are. */
  send(request: MessageInitShape<Req> | Buffer): void;
  /** Every response so far, in order. */
  readonly responses: Res[];
  /** The next response of this kind that next() has not returned yet; rejects if the call ends first. */
  next<C extends KindCase<Res>>(kind: C): Promise<KindValue<Res, C>>;
  /** Resolves once check() holds, re-checked after every response; rejects if the call ends first. */
  until(what: string, check: () => boolean): Promise<void>;
  /** Calls back for every response, including those already received. */
  onResponse(listener: (response: Res) => void): void;
  /** The call's final status. */
  readonly status: Promise<grpc.StatusObject>;
  /** Half-closes: the connector sends nothing more. */
  end(): void;
  cancel(): void;
}

function open<Req extends DescMessage, Res extends Kinded>(
  address: string,
  method: "Source" | "Sink" | "Partition",
  schema: Req,
): RawSession<Req, Res> {
  const m = definition[method]!;
  const serialize = (value: MessageShape<Req> | Buffer): Buffer => (Buffer.isBuffer(value) ? value : m.requestSerialize(value));
  const call = client(address).makeBidiStreamRequest<MessageShape<Req> | Buffer, Res>(m.path, serialize, m.responseDeserialize as (b: Buffer) => Res);
  const responses: Res[] = [];
  const taken = new Map<string, number>();
  const listeners: Array<(r: Res) => void> = [];
  let ended: grpc.StatusObject | undefined;
  let waiters: Array<() => void> = [];
  const wake = () => {
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  };
  call.on("data", (response: Res) => {
    responses.push(response);
    for (const l of listeners) l(response);
    wake();
  });
  // Errors surface as the status; the listener keeps grpc-js from throwing them.
  call.on("error", () => undefined);
  const status = new Promise<grpc.StatusObject>((resolve) =>
    call.on("status", (s: grpc.StatusObject) => {
      ended = s;
      resolve(s);
      wake();
    }),
  );
  return {
    send(request) {
      call.write(Buffer.isBuffer(request) ? request : create(schema, request));
    },
    responses,
    async next(kind) {
      for (;;) {
        const seen = taken.get(kind) ?? 0;
        const matching = responses.filter((r) => r.kind.case === kind);
        if (matching.length > seen) {
          taken.set(kind, seen + 1);
          return matching[seen]!.kind.value as never;
        }
        if (ended !== undefined) throw new Error(`call ended (${grpc.status[ended.code]}: ${ended.details}) before a "${kind}" response`);
        await new Promise<void>((r) => waiters.push(r));
      }
    },
    async until(what, check) {
      for (;;) {
        if (check()) return;
        if (ended !== undefined) throw new Error(`call ended (${grpc.status[ended.code]}: ${ended.details}) before ${what}`);
        await new Promise<void>((r) => waiters.push(r));
      }
    },
    onResponse(listener) {
      for (const r of responses) listener(r);
      listeners.push(listener);
    },
    status,
    end() {
      call.end();
    },
    cancel() {
      call.cancel();
    },
  };
}

export type SourceSession = RawSession<typeof SourceRequestSchema, SourceResponse>;
export type SinkSession = RawSession<typeof SinkRequestSchema, SinkResponse>;
export type PartitionSession = RawSession<typeof PartitionRequestSchema, PartitionResponse>;

export const openSource = (address: string): SourceSession => open(address, "Source", SourceRequestSchema);
export const openSink = (address: string): SinkSession => open(address, "Sink", SinkRequestSchema);
export const openPartition = (address: string): PartitionSession => open(address, "Partition", PartitionRequestSchema);

export interface HelloFields {
  token?: string;
  instanceId?: string;
  /** Default "test-connector": a source's streams belong to it. */
  connectorName?: string;
  /** null: a Hello without a version. */
  version?: { major: number; minor: number } | null;
}

/** Each raw session is its own instance unless told otherwise: one instance's sessions take each other's streams. */
let instances = 0;

export function hello(target: string, fields: HelloFields = {}): { kind: { case: "hello"; value: Hello } } {
  const version = fields.version === null ? undefined : (fields.version ?? { major: 1, minor: 0 });
  const value = create(HelloSchema, { connectorName: fields.connectorName ?? "test-connector", instanceId: fields.instanceId ?? `test-${++instances}`, target, token: fields.token ?? "" });
  if (version !== undefined) value.version = create(ProtocolVersionSchema, version);
  return { kind: { case: "hello", value } };
}

export interface Failure {
  /** The Error message the engine sent before ending the call. */
  error: { code: number; message: string };
  status: grpc.StatusObject;
}

/** What failure() reads of any session: its responses and its status. */
export interface Ended {
  readonly responses: readonly Kinded[];
  readonly status: Promise<grpc.StatusObject>;
}

/** Waits for the call to end; the last response must be the typed Error. */
export async function failure(session: Ended): Promise<Failure> {
  const status = await session.status;
  const last = session.responses.at(-1);
  if (last?.kind.case !== "error") throw new Error(`call ended (${grpc.status[status.code]}: ${status.details}) without an Error message`);
  return { error: last.kind.value as Failure["error"], status };
}
