/**
 * One session of the connector under test, seen from the scripted engine: every message in either
 * direction is recorded in order (one sequence shared by all sessions of a case, so checks can
 * order events across sessions), and the harness can answer, end the call with any status, or
 * redirect, as the case says.
 */
import { status as GrpcStatus, type ServerDuplexStream } from "@grpc/grpc-js";
import type { Hello } from "../../protocol/gen/keyway/v1/connector_pb.ts";
import type { Notifier } from "../notifier.ts";
import { encodeResponse, errorCodeName, grpcStatusName, type Decoded, type Kinded, type Role } from "../wire.ts";
import type { ServedAt } from "./scripted-server.ts";

export interface TraceEvent {
  /** Order among every event of the case. */
  seq: number;
  /** Milliseconds since the case started. */
  t: number;
  dir: "in" | "out";
  /** The oneof case ("hello", "batch", ...); "unknown" for an unset kind; "malformed" for bytes that did not parse. */
  kind: string;
  value: unknown;
}

export type EndedHow = "half-close" | "cancelled" | "harness";

/** Shared by a case's sessions: the event sequence and the case's start time. */
export interface CaseClock {
  seq: number;
  readonly startMs: number;
}

export class ScriptedSession {
  readonly events: TraceEvent[] = [];
  /** 1, 2, ... in the order the case's steps took sessions; 0 while no step has taken it. */
  number = 0;
  hello: Hello | undefined;
  endedHow: EndedHow | undefined;
  endedSeq: number | undefined;
  /** Refused during a refuse_sessions window. */
  refused = false;
  readonly arrivedSeq: number;
  /** The deadline the connector set on the call (Infinity: none). */
  readonly deadline: number;
  /** Called with every received message once it is recorded. */
  onIn: ((event: TraceEvent) => void) | undefined;

  constructor(
    readonly role: Role,
    readonly at: ServedAt,
    private readonly call: ServerDuplexStream<Decoded<Kinded>, Buffer>,
    private readonly clock: CaseClock,
    private readonly notifier: Notifier,
  ) {
    this.arrivedSeq = ++clock.seq;
    const deadline = call.getDeadline();
    this.deadline = deadline instanceof Date ? deadline.getTime() : deadline;
    call.on("data", (decoded: Decoded<Kinded>) => {
      if (decoded.ok) {
        const kind = decoded.message.kind.case ?? "unknown";
        if (kind === "hello" && this.hello === undefined) this.hello = decoded.message.kind.value as Hello;
        this.record("in", kind, decoded.message.kind.value);
      } else {
        this.record("in", "malformed", decoded.reason);
      }
    });
    call.on("end", () => {
      // The connector half-closed; an engine answers with status OK.
      this.ended("half-close");
      call.end();
    });
    call.on("cancelled", () => this.ended("cancelled"));
    call.on("error", () => this.ended("cancelled"));
    call.on("close", () => this.ended("cancelled"));
  }

  get live(): boolean {
    return this.endedHow === undefined;
  }

  /** Kinds received so far, in order. */
  received(kind?: string): TraceEvent[] {
    return this.events.filter((e) => e.dir === "in" && (kind === undefined || e.kind === kind));
  }

  sent(kind?: string): TraceEvent[] {
    return this.events.filter((e) => e.dir === "out" && (kind === undefined || e.kind === kind));
  }

  get firstReceived(): TraceEvent | undefined {
    return this.events.find((e) => e.dir === "in");
  }

  /** Sends one response of the session's role. */
  send(kind: string, value: object, unknownFields = false): void {
    if (!this.live) return;
    this.call.write(encodeResponse(this.role, kind, value, unknownFields));
    this.record("out", kind, value);
  }

  /** Sends bytes as they are, recorded under `label`. */
  sendRaw(bytes: Buffer, label: string): void {
    if (!this.live) return;
    this.call.write(bytes);
    this.record("out", label, undefined);
  }

  /** Error{code} then the call ends with `status`, as an engine ends a session (R-SESSION-END). */
  fail(code: number, status: GrpcStatus, message: string): void {
    if (!this.live) return;
    this.send("error", { code, message });
    this.endCall(status, `${errorCodeName(code)}: ${message}`);
  }

  redirect(address: string, reason: string): void {
    if (!this.live) return;
    this.send("redirect", { address, reason });
    this.endCall(GrpcStatus.UNAVAILABLE, `redirected to ${address}: ${reason}`);
  }

  /** Ends the call with a status and no Error message (a transport failure, as the connector sees it). */
  endCall(status: GrpcStatus, details: string): void {
    if (!this.live) return;
    this.record("out", "status", grpcStatusName(status));
    this.ended("harness");
    if (status === GrpcStatus.OK) this.call.end();
    else this.call.emit("error", { code: status, details });
  }

  private ended(how: EndedHow): void {
    if (this.endedHow !== undefined) return;
    this.endedHow = how;
    this.endedSeq = ++this.clock.seq;
    this.notifier.changed();
  }

  private record(dir: "in" | "out", kind: string, value: unknown): void {
    const event: TraceEvent = { seq: ++this.clock.seq, t: Date.now() - this.clock.startMs, dir, kind, value };
    this.events.push(event);
    if (dir === "in") this.onIn?.(event);
    this.notifier.changed();
  }

  describe(): string {
    return `session ${this.number || `(untaken, at ${this.at})`}`;
  }
}
