/**
 * One source session: checks each request against the session's own state (its open streams,
 * the last position sent on each, its unspent credits) before anything reaches the shared
 * ConnectorSource, so a rejected batch changes nothing: a batch is accepted whole or not at all.
 */
import { create } from "@bufbuild/protobuf";
import {
  ErrorCode,
  StreamEndedSchema,
  StreamOpenedSchema,
  type RecordBatch,
  type SourceRequest,
  type SourceResponse,
} from "../gen/keyway/v1/connector_pb.ts";
import type { HandshakePolicy } from "../handshake.ts";
import { SOURCE_GRANT_LINGER_MS, sourceCreditWindow, sourceGrantMin, type ProtocolLimits } from "../limits.ts";
import { ProtocolError } from "../protocol-error.ts";
import type { RoleBinding, RoleHandler, SessionChannel } from "../session.ts";
import type { ConnectorSource, OpenedAt, SourceSessionPort } from "./connector-source.ts";

type SourceKind = SourceResponse["kind"];

interface OpenStream {
  /** The last position sent on the stream in this session; positions must increase past it. */
  lastPosition: bigint;
  /** EndStream came: no more records on it in this session. */
  ended: boolean;
}

const violation = (message: string) => new ProtocolError(ErrorCode.PROTOCOL_VIOLATION, message);

/** Characters of a stream name an error quotes: a name not yet checked may be megabytes long. */
const QUOTED_NAME_MAX = 200;
const quoted = (name: string) => JSON.stringify(name.length <= QUOTED_NAME_MAX ? name : `${name.slice(0, QUOTED_NAME_MAX)}...`);

export class SourceSession implements RoleHandler<SourceRequest>, SourceSessionPort {
  private readonly channel: SessionChannel<SourceKind>;
  private readonly source: ConnectorSource;
  private readonly limits: ProtocolLimits;
  /** Credits granted and not yet spent. */
  private creditsAvailable: number;
  /** Credits for records the pipeline has taken, not granted back yet: they go in lumps of grantMin. */
  private owed = 0;
  private readonly grantMin: number;
  /** Set while owed credits wait for more to make a lump, or for the linger to pass. */
  private lingering: NodeJS.Timeout | undefined;
  /**
   * Committed positions not sent yet, by stream: one Committed per stream goes at the end of the
   * event loop's turn, with the highest, however many batches the pipeline finished in it.
   */
  private readonly commits = new Map<string, bigint>();
  private commitsQueued = false;
  private readonly open = new Map<string, OpenStream>();
  private readonly opening = new Set<string>();

  constructor(channel: SessionChannel<SourceKind>, source: ConnectorSource, limits: ProtocolLimits) {
    this.channel = channel;
    this.source = source;
    this.limits = limits;
    this.creditsAvailable = sourceCreditWindow(limits);
    this.grantMin = sourceGrantMin(limits);
  }

  get ended(): boolean {
    return this.channel.ended;
  }

  get credits(): number {
    return this.creditsAvailable;
  }

  onMessage(request: SourceRequest): void {
    const { kind } = request;
    switch (kind.case) {
      case "open":
        return this.openStream(kind.value.stream);
      case "batch":
        return this.batch(kind.value);
      case "end":
        return this.endStream(kind.value.stream);
      case "hello":
        throw violation("a second Hello on one session");
      case undefined:
        throw violation("a SourceRequest with no message in it");
    }
  }

  onEnd(): void {
    clearTimeout(this.lingering);
    this.source.detach(this, this.open.keys());
  }

  grant(records: number): void {
    this.owed += records;
    if (this.owed >= this.grantMin) this.grantOwed();
    else this.lingering ??= setTimeout(() => this.grantOwed(), SOURCE_GRANT_LINGER_MS);
  }

  private grantOwed(): void {
    clearTimeout(this.lingering);
    this.lingering = undefined;
    const records = this.owed;
    this.owed = 0;
    this.creditsAvailable += records;
    // Plain objects of the messages' shape: create() costs more than their fast encoding.
    this.channel.send({ case: "credits", value: { $typeName: "keyway.v1.Credits", records } });
  }

  committed(stream: string, position: bigint): void {
    this.commits.set(stream, position);
    if (this.commitsQueued) return;
    this.commitsQueued = true;
    setImmediate(() => this.flush());
  }

  flush(): void {
    this.commitsQueued = false;
    for (const [stream, position] of this.commits) this.channel.send({ case: "committed", value: { $typeName: "keyway.v1.Committed", stream, position } });
    this.commits.clear();
  }

  streamEnded(stream: string, position: bigint): void {
    // The stream's last Committed goes before its StreamEnded.
    this.flush();
    this.channel.send({ case: "ended", value: create(StreamEndedSchema, { stream, position }) });
  }

  get connectorName(): string {
    return this.channel.connectorName;
  }

  get instanceId(): string {
    return this.channel.instanceId;
  }

  replace(by: SourceSessionPort, stream: string): void {
    this.channel.fail(
      new ProtocolError(
        ErrorCode.SESSION_REPLACED,
        `a newer session of connector "${by.connectorName}" instance "${by.instanceId}" opened stream ${quoted(stream)}, which this session had open: it takes this session's place (two running instances must not share an instance_id)`,
      ),
    );
  }

  private openStream(name: string): void {
    if (name === "") throw violation("OpenStream needs a stream name");
    const bytes = Buffer.byteLength(name, "utf8");
    // The name is not echoed: it may be megabytes long.
    if (bytes > this.limits.maxStreamNameBytes) throw violation(`a stream name of ${bytes} bytes; the most is ${this.limits.maxStreamNameBytes} (Limits.max_stream_name_bytes)`);
    if (this.open.has(name) || this.opening.has(name)) throw violation(`stream "${name}" is already open on this session`);
    // Every stream opened counts, ended ones too: a stream is opened at most once per session.
    if (this.open.size + this.opening.size >= this.limits.maxStreamsPerSession) {
      throw new ProtocolError(
        ErrorCode.TOO_MANY_STREAMS,
        `this session has opened ${this.open.size + this.opening.size} streams, the most one session may (Limits.max_streams_per_session); open more on other sessions`,
      );
    }
    const opened = this.source.openStream(name, this);
    if (!(opened instanceof Promise)) return this.opened(name, opened);
    // In a cluster the stream may have stood on another worker: it opens once the cluster grants it.
    // With checkpoints, a stream being retired opens (as a new one) once its retirement is durable.
    this.opening.add(name);
    opened.then(
      (at) => {
        this.opening.delete(name);
        if (!this.channel.ended) this.opened(name, at);
      },
      (err: unknown) => {
        this.opening.delete(name);
        this.channel.fail(err instanceof ProtocolError ? err : new ProtocolError(ErrorCode.INTERNAL, `opening stream "${name}": ${(err as Error).message}`));
      },
    );
  }

  private opened(name: string, { resumeAfter, committed }: OpenedAt): void {
    this.open.set(name, { lastPosition: 0n, ended: false });
    this.channel.send({ case: "opened", value: create(StreamOpenedSchema, { stream: name, resumeAfter, committed }) });
  }

  private batch(batch: RecordBatch): void {
    const { stream: name, records } = batch;
    const stream = this.open.get(name);
    if (stream === undefined) throw violation(`records for stream ${quoted(name)}, which is not open on this session`);
    if (stream.ended) throw violation(`records for stream "${name}" after its EndStream`);
    if (records.length > this.limits.maxBatchRecords) {
      throw new ProtocolError(
        ErrorCode.BATCH_TOO_LARGE,
        `a batch of ${records.length} records; the most is ${this.limits.maxBatchRecords}`,
      );
    }
    if (records.length > this.creditsAvailable) {
      throw new ProtocolError(
        ErrorCode.CREDITS_EXCEEDED,
        `a batch of ${records.length} records with ${this.creditsAvailable} credits left`,
      );
    }
    // Position 0 means "none" in StreamOpened, so the first record of a stream is at 1 or above.
    let previous = stream.lastPosition;
    for (const record of records) {
      if (record.position <= previous) {
        throw new ProtocolError(
          ErrorCode.POSITION_REGRESSED,
          `stream "${name}": position ${record.position} after ${previous}; positions must increase`,
        );
      }
      previous = record.position;
    }
    stream.lastPosition = previous;
    this.creditsAvailable -= records.length;
    const replays = this.source.accept(this, name, records);
    // Replays' credits come back at once, right after their batch (protocol §7.2).
    if (replays > 0) {
      this.owed += replays;
      this.grantOwed();
    }
  }

  private endStream(name: string): void {
    const stream = this.open.get(name);
    if (stream === undefined) throw violation(`EndStream for stream ${quoted(name)}, which is not open on this session`);
    if (stream.ended) throw violation(`a second EndStream for stream "${name}"`);
    stream.ended = true;
    this.source.endStream(name);
  }
}

/** How source sessions bind to the connector sources of the app. */
export function sourceRole(
  sources: ReadonlyMap<string, ConnectorSource>,
  policy: HandshakePolicy,
  limits: ProtocolLimits,
): RoleBinding<SourceRequest, SourceKind> {
  return {
    role: "source",
    policy,
    limits,
    initialCredits: sourceCreditWindow(limits),
    helloOf: (request) => (request.kind.case === "hello" ? request.kind.value : undefined),
    respond: (kind): SourceResponse => ({ $typeName: "keyway.v1.SourceResponse", kind }),
    // A session waits for the engine to open (restore) the source, so resume positions are right.
    ready: (target) => sources.get(target)!.opened,
    attach: (channel) => new SourceSession(channel, sources.get(channel.target)!, limits),
  };
}
