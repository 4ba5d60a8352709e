/**
 * The partitioner role (protocol §9): grant the engine a window of credits, answer each
 * PartitionBatch with one key per value, and grant the batch's worth of credits again. The
 * function runs synchronously per value, so every request is answered as soon as it arrives and
 * in order (the lowest latency, §9.1).
 */
import { create } from "@bufbuild/protobuf";
import {
  CreditsSchema,
  PartitionKeysSchema,
  PartitionKeySchema,
  PartitionRequestSchema,
  type Hello,
  type PartitionKey,
  type PartitionRequest,
  type PartitionResponse,
  type Welcome,
} from "../protocol/gen/keyway/v1/connector_pb.ts";
import { positiveInteger, resolveConnectOptions, SessionLoop, type ConnectOptions, type RoleHandler, type Session } from "./session.ts";

export interface PartitionerOptions extends ConnectOptions {
  /** Values the engine may send ahead of the answers; raised to max_batch_records when lower. */
  creditWindowRecords?: number;
}

export const PARTITIONER_CREDIT_WINDOW_RECORDS_DEFAULT = 1000;

/**
 * The key of one value: text routes like the same string returned by an in-app keyBy. It must be
 * deterministic (R-PART-DETERMINISTIC): the same value gets the same key on every instance.
 */
export type PartitionFunction = (value: Uint8Array) => string | Uint8Array;

/**
 * Runs until options.signal aborts (then it half-closes; every request received was answered) or
 * a configuration error (rejects with a ConnectorError). A function that throws rejects too: the
 * engine re-sends the unanswered request to another instance.
 */
export async function runPartitioner(options: PartitionerOptions, fn: PartitionFunction): Promise<void> {
  const resolved = resolveConnectOptions(options);
  const window = positiveInteger("creditWindowRecords", options.creditWindowRecords ?? PARTITIONER_CREDIT_WINDOW_RECORDS_DEFAULT);
  const loop = new SessionLoop<PartitionRequest, PartitionResponse>(resolved, "Partition", new PartitionHandler(window, fn));
  const signal = resolved.signal;
  const stop = (): void => loop.stop("half-close");
  if (signal?.aborted) stop();
  signal?.addEventListener("abort", stop, { once: true });
  try {
    await loop.done;
  } finally {
    signal?.removeEventListener("abort", stop);
  }
}

class PartitionHandler implements RoleHandler<PartitionRequest, PartitionResponse> {
  constructor(
    private readonly creditWindowRecords: number,
    private readonly fn: PartitionFunction,
  ) {}

  hello(hello: Hello): PartitionRequest {
    return create(PartitionRequestSchema, { kind: { case: "hello", value: hello } });
  }

  welcomed(session: Session<PartitionRequest>, welcome: Welcome): void {
    grant(session, Math.max(this.creditWindowRecords, welcome.limits?.maxBatchRecords ?? 0));
  }

  message(session: Session<PartitionRequest>, response: PartitionResponse): void {
    if (response.kind.case !== "batch") return;
    const { requestId, values } = response.kind.value;
    const keys: PartitionKey[] = values.map((value) => keyOf(this.fn(value)));
    session.write(create(PartitionRequestSchema, { kind: { case: "keys", value: create(PartitionKeysSchema, { requestId, keys }) } }));
    grant(session, values.length);
  }

  ended(): void {}
}

function keyOf(key: string | Uint8Array): PartitionKey {
  if (typeof key === "string") return create(PartitionKeySchema, { kind: { case: "text", value: key } });
  if (key instanceof Uint8Array) return create(PartitionKeySchema, { kind: { case: "raw", value: key } });
  throw new TypeError(`a partition function must return a string or a Uint8Array, got ${typeof key}`);
}

function grant(session: Session<PartitionRequest>, records: number): void {
  session.write(create(PartitionRequestSchema, { kind: { case: "credits", value: create(CreditsSchema, { records }) } }));
}
