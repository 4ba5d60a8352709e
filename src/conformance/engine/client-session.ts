/**
 * One session with the engine under test, the harness playing the connector: a raw bidirectional
 * call that sends whatever the case says (well-formed or not), records every message both ways in
 * order, and keeps the call's final status. Sinks and partitioners can run on autopilot (ack and
 * answer what arrives, granting credits back) so a case only scripts the part it examines.
 */
import * as grpc from "@grpc/grpc-js";
import type { PartitionBatch, SinkBatch, Welcome } from "../../protocol/gen/keyway/v1/connector_pb.ts";
import type { Notifier } from "../notifier.ts";
import type { CaseClock, TraceEvent } from "../connector/scripted-session.ts";
import { channelCredentials } from "../../rpc/tls-credentials.ts";
import type { ClientTls } from "../../rpc/tls.ts";
import { decode, encodeRequest, METHOD_OF, RESPONSE_SCHEMA, type Decoded, type Kinded, type Role } from "../wire.ts";

/** Responses of any size the engine may send (it announces max_message_bytes in Welcome). */
const RECEIVE_BYTES_MAX = 256 * 1024 * 1024;

export interface Autopilot {
  /** Sink: ack every batch as it arrives. */
  ack: boolean;
  /** Partitioner: answer every request with key = the value's text. */
  answer: boolean;
  /** Grant each batch's records back as credits once handled. */
  regrant: boolean;
}

export class ClientSession {
  readonly events: TraceEvent[] = [];
  status: grpc.StatusObject | undefined;
  statusSeq: number | undefined;
  welcome: Welcome | undefined;
  private readonly client: grpc.Client;
  private readonly call: grpc.ClientDuplexStream<Buffer, Decoded<Kinded>>;
  autopilot: Autopilot = { ack: false, answer: false, regrant: false };

  constructor(
    readonly name: string,
    readonly role: Role,
    address: string,
    private readonly clock: CaseClock,
    private readonly notifier: Notifier,
    tls?: ClientTls,
  ) {
    this.client = new grpc.Client(address, channelCredentials(tls), {
      "grpc.max_receive_message_length": RECEIVE_BYTES_MAX,
      "grpc.max_send_message_length": RECEIVE_BYTES_MAX,
      "grpc.enable_retries": 0,
      "grpc.per_rpc_retry_buffer_size": 0,
    });
    const path = `/keyway.v1.ConnectorService/${METHOD_OF[role]}`;
    this.call = this.client.makeBidiStreamRequest(path, (b: Buffer) => b, (b: Buffer) => decode<Kinded>(RESPONSE_SCHEMA[role], b));
    this.call.on("data", (d: Decoded<Kinded>) => {
      if (!d.ok) return this.record("in", "malformed", d.reason);
      const kind = d.message.kind.case ?? "unknown";
      if (kind === "welcome" && this.welcome === undefined) this.welcome = d.message.kind.value as Welcome;
      this.record("in", kind, d.message.kind.value);
      this.steer(kind, d.message.kind.value);
    });
    this.call.on("error", () => undefined);
    this.call.on("status", (s: grpc.StatusObject) => {
      this.status = s;
      this.statusSeq = ++clock.seq;
      this.client.close();
      notifier.changed();
    });
  }

  get ended(): boolean {
    return this.status !== undefined;
  }

  send(kind: string, value: object, unknownFields = false): void {
    this.write(encodeRequest(this.role, kind, value, unknownFields), kind, value);
  }

  /** Bytes as they are (malformed or unknown messages), recorded under `label`. */
  sendRaw(bytes: Buffer, label: string): void {
    this.write(bytes, label, undefined);
  }

  halfClose(): void {
    if (!this.ended) this.call.end();
    this.record("out", "half-close", undefined);
  }

  cancel(): void {
    if (!this.ended) this.call.cancel();
    this.record("out", "cancel", undefined);
  }

  received(kind?: string): TraceEvent[] {
    return this.events.filter((e) => e.dir === "in" && (kind === undefined || e.kind === kind));
  }

  sent(kind?: string): TraceEvent[] {
    return this.events.filter((e) => e.dir === "out" && (kind === undefined || e.kind === kind));
  }

  /** Source: credits granted (Welcome and Credits) minus records sent. */
  sourceBalance(): number {
    let balance = 0;
    for (const e of this.events) {
      if (e.dir === "in" && e.kind === "welcome") balance += (e.value as Welcome).initialCredits;
      if (e.dir === "in" && e.kind === "credits") balance += (e.value as { records: number }).records;
      if (e.dir === "out" && e.kind === "batch") balance -= (e.value as { records: unknown[] }).records.length;
    }
    return balance;
  }

  private write(bytes: Buffer, kind: string, value: unknown): void {
    if (this.ended) return;
    this.call.write(bytes);
    this.record("out", kind, value);
  }

  private steer(kind: string, value: unknown): void {
    if (kind !== "batch") return;
    if (this.role === "sink") {
      const batch = value as SinkBatch;
      if (this.autopilot.ack) this.send("ack", { sequence: batch.sequence });
      if (this.autopilot.regrant) this.send("credits", { records: batch.records.length });
    }
    if (this.role === "partitioner") {
      const batch = value as PartitionBatch;
      if (this.autopilot.answer) {
        const keys = batch.values.map((v) => ({ kind: { case: "text", value: Buffer.from(v).toString("utf8") } }));
        this.send("keys", { requestId: batch.requestId, keys });
        if (this.autopilot.regrant) this.send("credits", { records: batch.values.length });
      }
    }
  }

  private record(dir: "in" | "out", kind: string, value: unknown): void {
    this.events.push({ seq: ++this.clock.seq, t: Date.now() - this.clock.startMs, dir, kind, value });
    this.notifier.changed();
  }
}
