/**
 * One sink session: the connector grants credits and acks batches; the engine sends batches
 * within the credits. Acks are cumulative over the batches sent on this session.
 */
import { ErrorCode, type SinkRequest, type SinkResponse } from "../gen/keyway/v1/connector_pb.ts";
import { ErrorCode as KeywayCode, KeywayError } from "../../errors.ts";
import type { HandshakePolicy } from "../handshake.ts";
import type { ProtocolLimits } from "../limits.ts";
import { ProtocolError } from "../protocol-error.ts";
import type { RoleBinding, RoleHandler, SessionChannel } from "../session.ts";
import type { ConnectorSink, SinkBatchOut, SinkSessionPort } from "./connector-sink.ts";

type SinkKind = SinkResponse["kind"];

export class SinkSession implements RoleHandler<SinkRequest>, SinkSessionPort {
  private readonly channel: SessionChannel<SinkKind>;
  private readonly sink: ConnectorSink;
  creditsAvailable = 0;
  /** Batches sent on this session and not acked, in send order (sequences increase along it). */
  private unacked: SinkBatchOut[] = [];

  constructor(channel: SessionChannel<SinkKind>, sink: ConnectorSink) {
    this.channel = channel;
    this.sink = sink;
    sink.attach(this);
  }

  get ended(): boolean {
    return this.channel.ended;
  }

  get lastUnackedSequence(): bigint {
    return this.unacked.at(-1)?.sequence ?? 0n;
  }

  send(batch: SinkBatchOut): void {
    if (batch.records > this.creditsAvailable) throw new KeywayError(KeywayCode.INTERNAL, "a sink batch over the session's credits");
    this.creditsAvailable -= batch.records;
    this.unacked.push(batch);
    this.channel.sendEncoded(batch.message);
  }

  onMessage(request: SinkRequest): void {
    const { kind } = request;
    switch (kind.case) {
      case "credits":
        this.creditsAvailable += kind.value.records;
        this.sink.dispatch();
        return;
      case "ack":
        return this.ack(kind.value.sequence);
      case "hello":
        throw new ProtocolError(ErrorCode.PROTOCOL_VIOLATION, "a second Hello on one session");
      case undefined:
        throw new ProtocolError(ErrorCode.PROTOCOL_VIOLATION, "a SinkRequest with no message in it");
    }
  }

  onEnd(): void {
    const unacked = this.unacked;
    this.unacked = [];
    this.sink.detach(this, unacked);
  }

  private ack(sequence: bigint): void {
    const index = this.unacked.findIndex((b) => b.sequence === sequence);
    if (index < 0) {
      throw new ProtocolError(
        ErrorCode.UNKNOWN_SEQUENCE,
        `ack for sequence ${sequence}, which is not an unacked batch of this session`,
      );
    }
    const acked = this.unacked.splice(0, index + 1);
    this.sink.acked(acked);
  }
}

/** How sink sessions bind to the connector sinks of the app. */
export function sinkRole(
  sinks: ReadonlyMap<string, ConnectorSink>,
  policy: HandshakePolicy,
  limits: ProtocolLimits,
  maxReplayRecords?: (target: string) => number,
): RoleBinding<SinkRequest, SinkKind> {
  return {
    role: "sink",
    policy,
    limits,
    // A sink grants the engine credits, not the other way round.
    initialCredits: 0,
    ...(maxReplayRecords === undefined ? {} : { maxReplayRecords }),
    helloOf: (request) => (request.kind.case === "hello" ? request.kind.value : undefined),
    respond: (kind): SinkResponse => ({ $typeName: "keyway.v1.SinkResponse", kind }),
    attach: (channel) => new SinkSession(channel, sinks.get(channel.target)!),
  };
}
