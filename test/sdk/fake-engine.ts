/**
 * A scripted engine for the SDK's unit tests: a real grpc-js server serving the connector
 * service on a loopback port, where each session is driven step by step by the test (what to
 * answer, when to fail, when to drop). It checks nothing by itself; tests assert on what the
 * SDK sent.
 */
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { isDecodeFailure, serverDefinition } from "../../src/rpc/grpc-adapter.ts";
import {
  ConnectorService,
  ErrorCode,
  type Hello,
  type PartitionRequest,
  PartitionResponseSchema,
  type PartitionResponse,
  type SinkRequest,
  SinkResponseSchema,
  type SinkResponse,
  type SourceRequest,
  SourceResponseSchema,
  type SourceResponse,
} from "../../src/protocol/gen/keyway/v1/connector_pb.ts";

export type Role = "Source" | "Sink" | "Partition";
type RequestOf = { Source: SourceRequest; Sink: SinkRequest; Partition: PartitionRequest };
type ResponseOf = { Source: SourceResponse; Sink: SinkResponse; Partition: PartitionResponse };
type KindOf<R extends Role> = ResponseOf[R]["kind"];

/** The status the engine ends a call with after each protocol code (docs/protocol.md §11). */
const STATUS_OF_CODE: Record<ErrorCode, grpc.status> = {
  [ErrorCode.UNSPECIFIED]: grpc.status.UNKNOWN,
  [ErrorCode.MALFORMED]: grpc.status.INVALID_ARGUMENT,
  [ErrorCode.UNSUPPORTED_VERSION]: grpc.status.FAILED_PRECONDITION,
  [ErrorCode.UNAUTHENTICATED]: grpc.status.UNAUTHENTICATED,
  [ErrorCode.UNKNOWN_TARGET]: grpc.status.NOT_FOUND,
  [ErrorCode.PROTOCOL_VIOLATION]: grpc.status.FAILED_PRECONDITION,
  [ErrorCode.STREAM_BUSY]: grpc.status.ALREADY_EXISTS,
  [ErrorCode.CREDITS_EXCEEDED]: grpc.status.RESOURCE_EXHAUSTED,
  [ErrorCode.POSITION_REGRESSED]: grpc.status.INVALID_ARGUMENT,
  [ErrorCode.BATCH_TOO_LARGE]: grpc.status.RESOURCE_EXHAUSTED,
  [ErrorCode.UNKNOWN_SEQUENCE]: grpc.status.INVALID_ARGUMENT,
  [ErrorCode.SHUTTING_DOWN]: grpc.status.UNAVAILABLE,
  [ErrorCode.INTERNAL]: grpc.status.INTERNAL,
  [ErrorCode.STREAM_OWNED]: grpc.status.FAILED_PRECONDITION,
  [ErrorCode.TOO_MANY_STREAMS]: grpc.status.RESOURCE_EXHAUSTED,
  [ErrorCode.SESSION_REPLACED]: grpc.status.ABORTED,
  [ErrorCode.PERMISSION_DENIED]: grpc.status.PERMISSION_DENIED,
};

const RESPONSE_SCHEMAS = { Source: SourceResponseSchema, Sink: SinkResponseSchema, Partition: PartitionResponseSchema };
export const LIMITS = { maxBatchRecords: 10_000, maxMessageBytes: 16 * 1024 * 1024, idempotencyWindow: 100_000 };

export class FakeSession<R extends Role> {
  readonly hello: Hello;
  /** Every request after the Hello, in arrival order. */
  readonly requests: RequestOf[R][] = [];
  private readonly unread: RequestOf[R][] = [];
  private waiter: (() => void) | null = null;
  private isEnded = false;
  readonly ended: Promise<void>;

  constructor(
    readonly role: R,
    private readonly call: grpc.ServerDuplexStream<RequestOf[R], ResponseOf[R]>,
    hello: Hello,
  ) {
    this.hello = hello;
    this.ended = new Promise((resolve) => {
      const done = (): void => {
        this.isEnded = true;
        this.waiter?.();
        resolve();
      };
      call.on("end", () => {
        // The connector half-closed: answer with status OK, as the engine does.
        if (!this.isEnded) call.end();
        done();
      });
      call.on("cancelled", done);
      call.on("error", done);
      call.on("close", done);
    });
  }

  get isOpen(): boolean {
    return !this.isEnded;
  }

  push(request: RequestOf[R]): void {
    this.requests.push(request);
    this.unread.push(request);
    this.waiter?.();
  }

  /** The next request not yet taken, waiting for it; undefined if the session ends first. */
  async next(): Promise<RequestOf[R] | undefined> {
    while (this.unread.length === 0 && !this.isEnded) {
      await new Promise<void>((resolve) => (this.waiter = resolve));
      this.waiter = null;
    }
    return this.unread.shift();
  }

  /** Takes requests until one of the given kind arrives, and returns its value. */
  async nextOf<C extends RequestOf[R]["kind"]["case"]>(kind: C): Promise<Extract<RequestOf[R]["kind"], { case: C }>["value"]> {
    for (;;) {
      const request = await this.next();
      if (request === undefined) throw new Error(`session ended while waiting for "${String(kind)}"`);
      if (request.kind.case === kind) return request.kind.value as never;
    }
  }

  send(kind: KindOf<R>): void {
    if (this.isEnded) return;
    this.call.write(create(RESPONSE_SCHEMAS[this.role] as never, { kind } as never) as ResponseOf[R]);
  }

  welcome(initialCredits = 0, limits: typeof LIMITS & { maxReplayRecords?: number } = LIMITS, clusterAddresses: string[] = []): void {
    this.send({ case: "welcome", value: { sessionId: `s-${Math.random()}`, version: { major: 1, minor: 0 }, initialCredits, limits, clusterAddresses } } as never);
  }

  /** Sends Error{code} and ends the call with the mapped status, as the engine does. */
  fail(code: ErrorCode, message = ErrorCode[code]!): void {
    this.send({ case: "error", value: { code, message } } as never);
    this.endWithStatus(STATUS_OF_CODE[code], message);
  }

  /** Ends the call with a status and no Error: what a transport failure looks like. */
  drop(): void {
    this.endWithStatus(grpc.status.UNAVAILABLE, "dropped by the fake engine");
  }

  endWithStatus(code: grpc.status, details: string): void {
    if (this.isEnded) return;
    this.isEnded = true;
    this.call.emit("error", { code, details, metadata: new grpc.Metadata() });
    this.waiter?.();
  }
}

export interface FakeEngine {
  readonly address: string;
  /** Every session opened so far, in order. */
  readonly sessions: FakeSession<Role>[];
  /** The next session of a role (an earlier one not yet taken, or one still to come). */
  nextSession<R extends Role>(role: R): Promise<FakeSession<R>>;
  /** Called for each new session before the test sees it (to answer Hellos automatically). */
  onSession: ((session: FakeSession<Role>) => void) | null;
  close(): Promise<void>;
}

export async function startFakeEngine(): Promise<FakeEngine> {
  const server = new grpc.Server();
  const sessions: FakeSession<Role>[] = [];
  const untaken: FakeSession<Role>[] = [];
  const waiters: Array<() => void> = [];
  const engine: FakeEngine = {
    address: "",
    sessions,
    onSession: null,
    async nextSession<R extends Role>(role: R): Promise<FakeSession<R>> {
      for (;;) {
        const index = untaken.findIndex((s) => s.role === role);
        if (index >= 0) return untaken.splice(index, 1)[0] as FakeSession<R>;
        await new Promise<void>((resolve) => waiters.push(resolve));
      }
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.forceShutdown();
        resolve();
      }),
  };

  const handler = (role: Role): grpc.handleBidiStreamingCall<unknown, unknown> => (call) => {
    let session: FakeSession<Role> | null = null;
    call.on("data", (request: unknown) => {
      if (isDecodeFailure(request)) throw new Error(`the SDK sent bytes that do not parse: ${request.reason}`);
      const typed = request as { kind: { case: string; value: unknown } };
      if (session === null) {
        if (typed.kind.case !== "hello") throw new Error(`the SDK's first message was "${typed.kind.case}", not hello`);
        session = new FakeSession(role, call, typed.kind.value as Hello);
        sessions.push(session);
        untaken.push(session);
        engine.onSession?.(session);
        for (const wake of waiters.splice(0)) wake();
        return;
      }
      session.push(request as never);
    });
    call.on("error", () => {});
  };
  server.addService(serverDefinition(ConnectorService, LIMITS.maxMessageBytes), {
    Describe: (_call: unknown, callback: grpc.sendUnaryData<unknown>) => callback({ code: grpc.status.UNIMPLEMENTED }),
    Source: handler("Source"),
    Sink: handler("Sink"),
    Partition: handler("Partition"),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))),
  );
  return Object.assign(engine, { address: `127.0.0.1:${port}` });
}
