/**
 * One partitioner session: the connector grants credits and answers each PartitionBatch with
 * one key per value, in order.
 */
import { create } from "@bufbuild/protobuf";
import type { Key } from "../../app/spec.ts";
import {
  ErrorCode,
  PartitionBatchSchema,
  PartitionResponseSchema,
  type PartitionKeys,
  type PartitionRequest,
  type PartitionResponse,
} from "../gen/keyway/v1/connector_pb.ts";
import type { HandshakePolicy } from "../handshake.ts";
import type { ProtocolLimits } from "../limits.ts";
import { ProtocolError } from "../protocol-error.ts";
import type { RoleBinding, RoleHandler, SessionChannel } from "../session.ts";
import type { JobRange, PartitionerPool, PartitionSessionPort } from "./partitioner-pool.ts";

type PartitionKind = PartitionResponse["kind"];

export class PartitionSession implements RoleHandler<PartitionRequest>, PartitionSessionPort {
  private readonly channel: SessionChannel<PartitionKind>;
  private readonly pool: PartitionerPool;
  creditsAvailable = 0;
  /** Requests sent on this session and not answered yet, by request id. */
  private readonly unanswered = new Map<bigint, JobRange>();
  /** When each unanswered request was sent (Date.now()), oldest first. */
  private readonly sentAt = new Map<bigint, number>();
  private overdueCheck: NodeJS.Timeout | undefined;

  constructor(channel: SessionChannel<PartitionKind>, pool: PartitionerPool) {
    this.channel = channel;
    this.pool = pool;
    pool.attach(this);
  }

  get ended(): boolean {
    return this.channel.ended;
  }

  send(requestId: bigint, range: JobRange): void {
    this.creditsAvailable -= range.end - range.start;
    this.unanswered.set(requestId, range);
    this.sentAt.set(requestId, Date.now());
    this.watchAnswers();
    const values = range.job.values.slice(range.start, range.end);
    this.channel.send({ case: "batch", value: create(PartitionBatchSchema, { requestId, values }) });
  }

  onMessage(request: PartitionRequest): void {
    const { kind } = request;
    switch (kind.case) {
      case "credits":
        this.creditsAvailable += kind.value.records;
        this.pool.dispatch();
        return;
      case "keys":
        return this.answer(kind.value);
      case "hello":
        throw new ProtocolError(ErrorCode.PROTOCOL_VIOLATION, "a second Hello on one session");
      case undefined:
        throw new ProtocolError(ErrorCode.PROTOCOL_VIOLATION, "a PartitionRequest with no message in it");
    }
  }

  onEnd(): void {
    clearInterval(this.overdueCheck);
    const unanswered = [...this.unanswered.values()];
    this.unanswered.clear();
    this.sentAt.clear();
    this.pool.detach(this, unanswered);
  }

  private answer(answer: PartitionKeys): void {
    const range = this.unanswered.get(answer.requestId);
    if (range === undefined) {
      throw new ProtocolError(
        ErrorCode.UNKNOWN_SEQUENCE,
        `keys for request ${answer.requestId}, which is not an unanswered request of this session`,
      );
    }
    const expected = range.end - range.start;
    if (answer.keys.length !== expected) {
      throw new ProtocolError(ErrorCode.MALFORMED, `request ${answer.requestId} had ${expected} values, the answer ${answer.keys.length} keys`);
    }
    const keys: Key[] = answer.keys.map((key, i) => {
      if (key.kind.case === "text") return key.kind.value;
      // A copy: the bytes would otherwise pin the whole received message for as long as state keeps the key.
      if (key.kind.case === "raw") return key.kind.value.slice();
      throw new ProtocolError(ErrorCode.MALFORMED, `request ${answer.requestId}: key ${i} is neither text nor raw`);
    });
    this.unanswered.delete(answer.requestId);
    this.sentAt.delete(answer.requestId);
    this.pool.answered(range, keys);
  }

  /** A request unanswered past the answer timeout ends the session: a live connector that stopped answering holds no pipeline. */
  private watchAnswers(): void {
    if (this.overdueCheck !== undefined) return;
    const timeoutMs = this.pool.watch.answerTimeoutMs;
    this.overdueCheck = setInterval(() => {
      const [oldest, at] = this.sentAt.entries().next().value ?? [];
      if (oldest === undefined || at === undefined || Date.now() - at <= timeoutMs) return;
      this.channel.fail(
        new ProtocolError(
          ErrorCode.PROTOCOL_VIOLATION,
          `request ${oldest} unanswered for ${Date.now() - at} ms, past the engine's session timeout of ${timeoutMs} ms: its values go to another session (R-PART-ANSWER)`,
        ),
      );
    }, Math.max(10, Math.floor(timeoutMs / 4)));
    this.overdueCheck.unref();
  }
}

/** How partitioner sessions bind to the partitioner names the app uses. */
export function partitionerRole(
  pools: ReadonlyMap<string, PartitionerPool>,
  policy: HandshakePolicy,
  limits: ProtocolLimits,
): RoleBinding<PartitionRequest, PartitionKind> {
  return {
    role: "partitioner",
    policy,
    limits,
    // A partitioner grants the engine credits, not the other way round.
    initialCredits: 0,
    helloOf: (request) => (request.kind.case === "hello" ? request.kind.value : undefined),
    respond: (kind) => create(PartitionResponseSchema, { kind }),
    attach: (channel) => new PartitionSession(channel, pools.get(channel.target)!),
  };
}
