/**
 * Well-behaved connectors on raw sessions: the healthy neighbours whose traffic must keep
 * flowing while another session misbehaves, and the building blocks of the positive tests.
 */
import type { PartitionBatch, SinkBatch, StreamOpened, Welcome } from "../../../src/protocol/gen/keyway/v1/connector_pb.ts";
import { hello, openPartition, openSink, openSource, type HelloFields, type PartitionSession, type SinkSession, type SourceSession } from "./raw-session.ts";

export interface TestRecord {
  position: number;
  value: string;
  idempotencyId?: string;
}

export class TestSource {
  readonly session: SourceSession;
  readonly welcome: Welcome;
  /** Credits granted and not spent. */
  credits: number;
  /** The highest Committed position per stream. */
  readonly committed = new Map<string, bigint>();
  /** Every Committed in arrival order. */
  readonly commits: Array<{ stream: string; position: bigint }> = [];

  private constructor(session: SourceSession, welcome: Welcome) {
    this.session = session;
    this.welcome = welcome;
    this.credits = welcome.initialCredits;
    session.onResponse((r) => {
      if (r.kind.case === "credits") this.credits += r.kind.value.records;
      if (r.kind.case === "committed") {
        const { stream, position } = r.kind.value;
        this.commits.push({ stream, position });
        if (position > (this.committed.get(stream) ?? 0n)) this.committed.set(stream, position);
      }
    });
  }

  static async connect(address: string, target = "in", fields: HelloFields = {}): Promise<TestSource> {
    const session = openSource(address);
    session.send(hello(target, fields));
    return new TestSource(session, await session.next("welcome"));
  }

  async open(stream: string): Promise<StreamOpened> {
    this.session.send({ kind: { case: "open", value: { stream } } });
    return this.session.next("opened");
  }

  /** Sends the records in batches within the credits and the batch limit, waiting for credits. */
  async send(stream: string, records: readonly TestRecord[]): Promise<void> {
    const batchMax = this.welcome.limits!.maxBatchRecords;
    for (let i = 0; i < records.length; ) {
      await this.session.until("credits", () => this.credits > 0);
      const n = Math.min(this.credits, batchMax, records.length - i);
      const batch = records.slice(i, i + n).map((r) => ({
        position: BigInt(r.position),
        value: Buffer.from(r.value),
        idempotencyId: r.idempotencyId ?? "",
      }));
      this.credits -= n;
      this.session.send({ kind: { case: "batch", value: { stream, records: batch } } });
      i += n;
    }
  }

  end(stream: string): void {
    this.session.send({ kind: { case: "end", value: { stream } } });
  }

  /** Waits for Committed of this stream at or past position. */
  untilCommitted(stream: string, position: number): Promise<void> {
    return this.session.until(`Committed ${stream}@${position}`, () => (this.committed.get(stream) ?? 0n) >= BigInt(position));
  }
}

export interface SinkOptions {
  /** Credits granted at the start; 0 grants none. */
  credits?: number;
  /** Ack each batch as it arrives and grant its records back as credits. */
  autoAck?: boolean;
  token?: string;
}

export class TestSink {
  readonly session: SinkSession;
  readonly welcome: Welcome;
  readonly batches: SinkBatch[] = [];

  private constructor(session: SinkSession, welcome: Welcome, autoAck: boolean) {
    this.session = session;
    this.welcome = welcome;
    session.onResponse((r) => {
      if (r.kind.case !== "batch") return;
      const batch = r.kind.value;
      this.batches.push(batch);
      if (autoAck) {
        this.ack(batch.sequence);
        this.grant(batch.records.length);
      }
    });
  }

  static async connect(address: string, target = "out", options: SinkOptions = {}): Promise<TestSink> {
    const session = openSink(address);
    session.send(hello(target, { token: options.token }));
    const sink = new TestSink(session, await session.next("welcome"), options.autoAck ?? true);
    const credits = options.credits ?? 1000;
    if (credits > 0) sink.grant(credits);
    return sink;
  }

  grant(records: number): void {
    this.session.send({ kind: { case: "credits", value: { records } } });
  }

  ack(sequence: bigint): void {
    this.session.send({ kind: { case: "ack", value: { sequence } } });
  }

  /** Every record value received, in arrival order (a resent batch appears again). */
  values(): string[] {
    return this.batches.flatMap((b) => b.records.map((r) => Buffer.from(r.value).toString()));
  }

  ids(): string[] {
    return this.batches.flatMap((b) => b.records.map((r) => r.id));
  }

  untilValues(count: number): Promise<void> {
    return this.session.until(`${count} sink records`, () => this.values().length >= count);
  }
}

export interface PartitionerOptions {
  target?: string;
  /** Answers every request with these keys and grants its credits back; absent, answers nothing. */
  keyOf?: (value: string) => string;
  /** Credits granted at the start (default 100). */
  credits?: number;
  /** Answer keys as raw bytes (the UTF-8 of keyOf's text) instead of text. */
  raw?: boolean;
  token?: string;
}

export class TestPartitioner {
  readonly session: PartitionSession;
  readonly welcome: Welcome;
  readonly requests: PartitionBatch[] = [];

  private constructor(session: PartitionSession, welcome: Welcome, options: PartitionerOptions) {
    this.session = session;
    this.welcome = welcome;
    session.onResponse((r) => {
      if (r.kind.case !== "batch") return;
      const request = r.kind.value;
      this.requests.push(request);
      const { keyOf } = options;
      if (keyOf === undefined) return;
      const keys = request.values.map((v) => {
        const key = keyOf(Buffer.from(v).toString());
        return options.raw === true ? { kind: { case: "raw" as const, value: Buffer.from(key) } } : { kind: { case: "text" as const, value: key } };
      });
      session.send({ kind: { case: "keys", value: { requestId: request.requestId, keys } } });
      this.grant(request.values.length);
    });
  }

  static async connect(address: string, options: PartitionerOptions = {}): Promise<TestPartitioner> {
    const session = openPartition(address);
    session.send(hello(options.target ?? "pk", { token: options.token }));
    const partitioner = new TestPartitioner(session, await session.next("welcome"), options);
    const credits = options.credits ?? 100;
    if (credits > 0) partitioner.grant(credits);
    return partitioner;
  }

  grant(records: number): void {
    this.session.send({ kind: { case: "credits", value: { records } } });
  }

  valuesSeen(): number {
    return this.requests.reduce((n, r) => n + r.values.length, 0);
  }
}

/** Records at positions from..to (inclusive) with values `${prefix}${position}`. */
export function records(from: number, to: number, prefix = "r"): TestRecord[] {
  const out: TestRecord[] = [];
  for (let p = from; p <= to; p++) out.push({ position: p, value: `${prefix}${p}` });
  return out;
}
