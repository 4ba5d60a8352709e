/**
 * The exchange over gRPC: two long-lived ExchangeService.Link streams per ordered pair of
 * workers, opened by the sender: one for records and sink output, one for replication (whose
 * acks records wait on, so it must never queue behind them). The link state machines (link-state.ts) decide what to send
 * and when a batch is done; this file only moves their frames and reconnects a broken stream,
 * after which the receiver's LinkAccepted says what to send again.
 */
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  ExchangeService,
  LinkResponseSchema,
  type ExchangeBatch,
  type LinkRequest,
  type LinkResponse,
} from "../protocol/gen/keyway/v1/cluster_pb.ts";
import type { Logger } from "../log/logger.ts";
import { clientDefinition, isDecodeFailure, serverDefinition, type DecodeFailure } from "../rpc/grpc-adapter.ts";
import { tokenMatches, tokenMetadata } from "../rpc/cluster-token.ts";
import { clusterChannelCredentials } from "../rpc/tls-credentials.ts";
import type { ClusterTls } from "../rpc/tls.ts";
import { BACKOFF_DEFAULTS, backoffDelayMs, type BackoffOptions } from "../util/backoff.ts";
import { createLinkReceiver, createLinkSender, LINK_WINDOW_DEFAULT, type LinkReceiver, type LinkSender, type LinkWindow } from "./link-state.ts";

export const CLUSTER_VERSION = { major: 4, minor: 0 } as const;
/** Reconnect delays of a broken link: short, since a worker that restarts or a link that blips should cost little. */
const RECONNECT_BACKOFF: BackoffOptions = { ...BACKOFF_DEFAULTS, initialMs: 50, maxMs: 1000 };
/** How long a link to a worker that left may take to finish what it carries before that fails. */
export const LINK_RETIRE_MS = 30_000;
const RETIRE_POLL_MS = 10;
/** Large slot states and record batches travel over these channels. */
export const CLUSTER_MESSAGE_BYTES_MAX = 512 * 1024 * 1024;
export const CHANNEL_OPTIONS = {
  "grpc.max_send_message_length": CLUSTER_MESSAGE_BYTES_MAX,
  "grpc.max_receive_message_length": CLUSTER_MESSAGE_BYTES_MAX,
  "grpc.per_rpc_retry_buffer_size": 0,
  "grpc.enable_retries": 0,
  "grpc.keepalive_time_ms": 10_000,
};

/** A batch as the runtime sends it; the exchange adds the sequence number. */
export interface BatchOut {
  epoch: number;
  pipeline: number;
  stage: number;
  toSink: boolean;
  hops: number;
  records: number;
  payload: Uint8Array;
  /** Records applied at their primary, for a backup copy here; with the pair's sequence and delivery mark. */
  replica?: { seq: bigint; deliveredThrough: bigint };
  /** Replicated: the sender's run these records or this output belong to (per pipeline, in release order). */
  outputSeq?: number;
  /** Slot states for a copy being made here. */
  snapshot?: boolean;
  /** Output sent again to the sinks' new worker: it goes on lane 1, ahead of records waiting on lane 0. */
  resent?: boolean;
  /** Output a backup's copy produced for a primary that died: that primary (outputSeq is its run), and the slots whose part it is. */
  origin?: { worker: string; slots: number[] };
}

/** A batch a dead worker never finished, given back to its sender to route again or settle. */
export interface Abandoned {
  batch: BatchOut;
  resolve: () => void;
  reject: (err: Error) => void;
}

export interface BatchIn extends BatchOut {
  from: string;
}

/** What the runtime does with a batch: `applied` once its local part ran, `done` once it is finished. */
export type ReceiveFn = (batch: BatchIn) => { applied: Promise<void>; done: Promise<void> };

export interface Peer {
  id: string;
  address: string;
}

export interface Exchange {
  /** Queues a batch for worker `to`; resolves once it is done there. */
  send(to: string, batch: BatchOut): Promise<void>;
  /** Resolves once no link holds more unsent records than its window (the sources' backpressure). */
  ready(): Promise<void>;
  /** Resolves once every batch queued so far, on every link, has been applied where it went. */
  drained(lane?: Lane): Promise<void>;
  /**
   * The current members. Links to workers no longer listed take nothing new; the promise settles
   * once what they carry is done (or, past LINK_RETIRE_MS, has failed) and they are closed.
   */
  setPeers(peers: readonly Peer[]): Promise<void>;
  /** Closes the link to a worker declared dead and hands back, in order, every batch it had not finished. */
  abandon(peer: string): Abandoned[];
  backlog(): { out: number; in: number };
  /** The ExchangeService implementation this worker serves. */
  readonly service: grpc.UntypedServiceImplementation;
  readonly definition: grpc.ServiceDefinition;
  close(): void;
}

/** The client end of one Link call: a grpc-js duplex stream, or the simulator's. */
export interface LinkCall {
  write(request: LinkRequest): void;
  end(): void;
  on(event: "data", listener: (response: LinkResponse) => void): void;
  on(event: "error", listener: (err: grpc.ServiceError) => void): void;
  on(event: "end", listener: () => void): void;
}

/** Opens Link calls to one peer address (each connect is a new call) until closed. */
export interface LinkDialer {
  open(): LinkCall;
  close(): void;
}

export type Dial = (address: string, token: string | undefined) => LinkDialer;

const LinkClient = grpc.makeGenericClientConstructor(clientDefinition(ExchangeService), "ExchangeService");

/** Link calls over grpc-js: one channel per peer address; over mutual TLS when given the cluster's certificates. */
export function grpcDialer(tls?: ClusterTls): Dial {
  const credentials = clusterChannelCredentials(tls);
  return (address, token) => {
    const client = new LinkClient(address, credentials, CHANNEL_OPTIONS);
    return {
      open: () => (client as unknown as { Link(meta: grpc.Metadata, opts: grpc.CallOptions): LinkCall }).Link(tokenMetadata(token), {}),
      close: () => client.close(),
    };
  };
}

/** Link calls over plaintext grpc-js. */
export const grpcDial: Dial = grpcDialer();

export interface ExchangeOptions {
  self: () => string;
  token?: string;
  receive: ReceiveFn;
  log: Logger;
  window?: LinkWindow;
  /** Called for each new batch as it arrives, before the batches ahead of it on its link have run. */
  arrived?: (batch: BatchIn) => void;
  /** Whether a worker may open a link here: a fenced (declared dead) worker may not. */
  accepts?: (from: string) => string | undefined;
  /** How links reach peers (grpc-js unless the simulator swaps it). */
  dial?: Dial;
}

/** Lane 0: records and sink output. Lane 1: replicas, snapshots and output sent again. */
export type Lane = 0 | 1;
const LANES: readonly Lane[] = [0, 1];
const laneOf = (batch: BatchOut): Lane => (batch.replica !== undefined || batch.snapshot === true || batch.resent === true ? 1 : 0);
const linkKey = (peer: string, lane: Lane) => `${peer}\u0000${lane}`;
/**
 * The replica lane's window is four times the records lane's: a backup applies a replica at once
 * (no onward sends to wait for), and a source batch's replicas (half its records, on two
 * workers) would otherwise fill one window and hold the source loop to a round trip per batch.
 */
const REPLICA_WINDOW_FACTOR = 4;
const laneWindow = (window: LinkWindow, lane: Lane): LinkWindow =>
  lane === 0 ? window : { records: window.records * REPLICA_WINDOW_FACTOR, bytes: window.bytes * REPLICA_WINDOW_FACTOR };

interface OutLink {
  peer: Peer;
  lane: Lane;
  sender: LinkSender<ExchangeBatch>;
  call: LinkCall | undefined;
  open: boolean;
  closed: boolean;
  dialer: LinkDialer;
  failures: number;
}

export function createExchange(options: ExchangeOptions): Exchange {
  const { log } = options;
  const window = options.window ?? LINK_WINDOW_DEFAULT;
  const links = new Map<string, OutLink>();
  const receivers = new Map<string, LinkReceiver>();
  // Per link, the ack of its latest call: a batch that finishes after its link reconnected is acked on the new call.
  const ackers = new Map<string, () => void>();
  let roomWaiters: Array<() => void> = [];

  const hasRoom = (): boolean => {
    for (const l of links.values()) if (l.sender.queuedRecords() > l.sender.window().records) return false;
    return true;
  };
  const wakeRoom = () => {
    if (roomWaiters.length === 0 || !hasRoom()) return;
    for (const w of roomWaiters.splice(0)) w();
  };

  const flush = (link: OutLink): void => {
    if (!link.open || link.call === undefined) return;
    for (const b of link.sender.takeSendable()) link.call.write({ kind: { case: "batch", value: { ...b.message, seq: b.seq } } } as never);
    wakeRoom();
  };

  const connect = (link: OutLink): void => {
    if (link.closed) return;
    const call = link.dialer.open();
    link.call = call;
    link.open = false;
    call.write({ kind: { case: "open", value: { from: options.self(), version: CLUSTER_VERSION, lane: link.lane } } } as never);
    call.on("data", (response: LinkResponse) => {
      const kind = response.kind;
      if (kind.case === "accepted") {
        link.sender.accepted(kind.value.applied, { records: kind.value.windowRecords, bytes: Number(kind.value.windowBytes) });
        link.open = true;
        link.failures = 0;
        flush(link);
      } else if (kind.case === "ack") {
        link.sender.ack(kind.value.applied, kind.value.done);
        flush(link);
      }
    });
    const broken = (err?: grpc.ServiceError) => {
      if (link.call !== call) return;
      link.call = undefined;
      link.open = false;
      if (link.closed) return;
      link.failures++;
      if (err?.code === grpc.status.UNAUTHENTICATED || err?.code === grpc.status.FAILED_PRECONDITION) {
        log.error({ peer: link.peer.id, err: err.details }, "exchange link refused");
      } else if (link.failures === 1 || link.failures % 20 === 0) {
        log.warn({ peer: link.peer.id, address: link.peer.address, err: err?.details ?? "stream ended", attempt: link.failures }, "exchange link broken; reconnecting");
      }
      const delay = backoffDelayMs(RECONNECT_BACKOFF, link.failures);
      setTimeout(() => connect(link), delay).unref();
    };
    call.on("error", broken);
    call.on("end", () => broken());
  };

  const retire = async (id: string, link: OutLink): Promise<void> => {
    const deadline = Date.now() + LINK_RETIRE_MS;
    while (link.sender.backlogRecords() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, RETIRE_POLL_MS));
    link.closed = true;
    link.sender.fail(new Error(`worker ${id} left the cluster before the records sent to it were done`));
    link.call?.end();
    link.dialer.close();
  };

  const linkTo = (id: string, lane: Lane): OutLink => {
    const link = links.get(linkKey(id, lane));
    if (link === undefined) throw new Error(`no exchange link to worker ${id}: it is not a member`);
    return link;
  };

  const service: grpc.UntypedServiceImplementation = {
    Link(call: grpc.ServerDuplexStream<LinkRequest | DecodeFailure, LinkResponse>) {
      if (!tokenMatches(options.token, call.metadata)) {
        call.emit("error", { code: grpc.status.UNAUTHENTICATED, details: "wrong or missing cluster token" });
        return;
      }
      let receiver: LinkReceiver | undefined;
      let from = "";
      let key = "";
      let ackScheduled = false;
      let chain: Promise<void> = Promise.resolve();
      const ack = () => {
        if (ackScheduled) return;
        ackScheduled = true;
        setImmediate(() => {
          ackScheduled = false;
          if (receiver !== undefined && !call.cancelled) call.write(create(LinkResponseSchema, { kind: { case: "ack", value: { applied: receiver.applied, done: receiver.done } } }));
        });
      };
      const refuse = (code: grpc.status, details: string) => {
        log.error({ from, details }, "exchange link refused");
        call.emit("error", { code, details });
      };
      call.on("data", (request: LinkRequest | DecodeFailure) => {
        if (isDecodeFailure(request)) return refuse(grpc.status.INVALID_ARGUMENT, request.reason);
        const kind = request.kind;
        if (kind.case === "open") {
          if (kind.value.version?.major !== CLUSTER_VERSION.major) return refuse(grpc.status.FAILED_PRECONDITION, `cluster protocol ${kind.value.version?.major ?? 0} is not ${CLUSTER_VERSION.major}`);
          from = kind.value.from;
          const refusal = options.accepts?.(from);
          if (refusal !== undefined) return refuse(grpc.status.FAILED_PRECONDITION, refusal);
          key = linkKey(from, kind.value.lane === 1 ? 1 : 0);
          receiver = receivers.get(key);
          if (receiver === undefined) receivers.set(key, (receiver = createLinkReceiver()));
          const offered = laneWindow(window, kind.value.lane === 1 ? 1 : 0);
          call.write(create(LinkResponseSchema, { kind: { case: "accepted", value: { applied: receiver.applied, windowRecords: offered.records, windowBytes: BigInt(offered.bytes) } } }));
          ackers.set(key, ack);
          // Batches done while the link was down: the sender learns it now, not at the next batch (there may be none).
          ack();
          return;
        }
        if (kind.case !== "batch" || receiver === undefined) return refuse(grpc.status.INVALID_ARGUMENT, "a link starts with LinkOpen, then carries batches");
        // A worker fenced while its link stayed open (paused, cut off) may still deliver what it had queued: none of it counts.
        const fencedNow = options.accepts?.(from);
        if (fencedNow !== undefined) return refuse(grpc.status.FAILED_PRECONDITION, fencedNow);
        const batch = kind.value;
        const r = receiver;
        const verdict = r.classify(batch.seq);
        if (verdict === "duplicate") return;
        if (verdict === "gap") return refuse(grpc.status.FAILED_PRECONDITION, `batch ${batch.seq} from ${from} after ${r.applied}: a batch is missing`);
        r.markApplied(batch.seq);
        r.track(batch.seq, batch.records);
        const seq = batch.seq;
        const acked = key;
        const input: BatchIn = { from, epoch: Number(batch.epoch), pipeline: batch.pipeline, stage: batch.stage, toSink: batch.toSink, hops: batch.hops, records: batch.records, payload: batch.payload };
        if (batch.replica) input.replica = { seq: batch.replicaSeq, deliveredThrough: batch.deliveredThrough };
        if (batch.snapshot) input.snapshot = true;
        if (batch.outputSeq > 0n) input.outputSeq = Number(batch.outputSeq);
        if (batch.origin !== "") input.origin = { worker: batch.origin, slots: batch.originSlots };
        options.arrived?.(input);
        // Batches of one link run in order: a key's records keep their order.
        chain = chain.then(async () => {
          if (options.accepts?.(from) !== undefined) return;
          const { applied, done } = options.receive(input);
          done.then(
            () => {
              r.markDone(seq);
              ackers.get(acked)?.();
            },
            (err: Error) => log.error({ from, seq: String(seq), epoch: input.epoch, stage: input.stage, toSink: input.toSink, records: input.records, err: err.message }, "a batch from another worker failed"),
          );
          await applied;
          ackers.get(acked)?.();
        });
      });
      call.on("end", () => call.end());
      call.on("error", () => undefined);
    },
  };

  return {
    send(to, batch) {
      const link = linkTo(to, laneOf(batch));
      const message = {
        $typeName: "keyway.v1.ExchangeBatch",
        seq: 0n,
        epoch: BigInt(batch.epoch),
        pipeline: batch.pipeline,
        stage: batch.stage,
        toSink: batch.toSink,
        hops: batch.hops,
        records: batch.records,
        payload: batch.payload,
        replica: batch.replica !== undefined,
        replicaSeq: batch.replica?.seq ?? 0n,
        deliveredThrough: batch.replica?.deliveredThrough ?? 0n,
        snapshot: batch.snapshot === true,
        outputSeq: BigInt(batch.outputSeq ?? 0),
        origin: batch.origin?.worker ?? "",
        originSlots: batch.origin?.slots ?? [],
      } as ExchangeBatch;
      const { done } = link.sender.enqueue(message, batch.records, batch.payload.byteLength);
      flush(link);
      return done;
    },
    ready() {
      if (hasRoom()) return Promise.resolve();
      return new Promise((resolve) => roomWaiters.push(resolve));
    },
    drained(lane) {
      const draining = [...links.values()].filter((l) => lane === undefined || l.lane === lane);
      return Promise.all(draining.map((l) => l.sender.whenApplied(l.sender.lastSeq()))).then(() => undefined);
    },
    setPeers(peers) {
      const self = options.self();
      for (const peer of peers) {
        if (peer.id === self) continue;
        for (const lane of LANES) {
          const existing = links.get(linkKey(peer.id, lane));
          if (existing !== undefined && existing.peer.address === peer.address) continue;
          const dialer = (options.dial ?? grpcDial)(peer.address, options.token);
          const link: OutLink = { peer, lane, sender: createLinkSender(laneWindow(window, lane)), call: undefined, open: false, closed: false, dialer, failures: 0 };
          links.set(linkKey(peer.id, lane), link);
          connect(link);
        }
      }
      const retiring = [...links].filter(([, link]) => !peers.some((p) => p.id === link.peer.id));
      for (const [key] of retiring) links.delete(key);
      wakeRoom();
      return Promise.all(retiring.map(([, link]) => retire(link.peer.id, link))).then(() => undefined);
    },
    abandon(peer) {
      const open = LANES.flatMap((lane) => {
        const link = links.get(linkKey(peer, lane));
        if (link === undefined) return [];
        links.delete(linkKey(peer, lane));
        link.closed = true;
        link.call?.end();
        link.dialer.close();
        return link.sender.abandon();
      });
      wakeRoom();
      return open.map(({ message: m, resolve, reject }) => ({
        batch: {
          epoch: Number(m.epoch),
          pipeline: m.pipeline,
          stage: m.stage,
          toSink: m.toSink,
          hops: m.hops,
          records: m.records,
          payload: m.payload,
          ...(m.replica ? { replica: { seq: m.replicaSeq, deliveredThrough: m.deliveredThrough } } : {}),
          ...(m.snapshot ? { snapshot: true } : {}),
          ...(m.outputSeq > 0n ? { outputSeq: Number(m.outputSeq) } : {}),
          ...(m.origin !== "" ? { origin: { worker: m.origin, slots: m.originSlots } } : {}),
        },
        resolve,
        reject,
      }));
    },
    backlog() {
      let out = 0;
      let inbound = 0;
      for (const l of links.values()) out += l.sender.backlogRecords();
      for (const r of receivers.values()) inbound += r.backlogRecords();
      return { out, in: inbound };
    },
    service,
    definition: serverDefinition(ExchangeService, CLUSTER_MESSAGE_BYTES_MAX),
    close() {
      for (const link of links.values()) {
        link.closed = true;
        link.call?.end();
        link.dialer.close();
      }
      links.clear();
      for (const w of roomWaiters.splice(0)) w();
    },
  };
}
