/**
 * The simulated network: the cluster's transport (control calls and exchange links) between
 * workers of one process, with latency drawn from the seed, links that break, partitions that
 * cut and heal, processes that crash or pause. Messages go through the protobuf wire format, as
 * over gRPC; a link delivers in order (it is one TCP stream), different links race each other.
 */
import { create, fromBinary, isMessage, toBinary, type DescMessage } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { grpcError, guarded, type ClusterServer, type ClusterTransport, type ControlClients, type Handlers, type UnaryHandler } from "../src/cluster/control-rpc.ts";
import type { Exchange, LinkCall, LinkDialer } from "../src/exchange/grpc-exchange.ts";
import { ControlService, LinkRequestSchema, LinkResponseSchema, type LinkRequest, type LinkResponse } from "../src/protocol/gen/keyway/v1/cluster_pb.ts";
import { tokenMetadata } from "../src/rpc/cluster-token.ts";
import type { ProcessTable } from "./processes.ts";
import type { Random } from "./random.ts";

/** A connection to a cut-off address fails after this long (a TCP connect that gets no answer). */
const CONNECT_TIMEOUT_MS = 500;

interface Node {
  address: string;
  handlers?: Handlers;
  exchange?: Exchange;
  dead: boolean;
  /** A paused process sends and receives nothing before this time. */
  pausedUntil: number;
}

interface Stream {
  from: Node;
  to: Node;
  broken: boolean;
  /** Latest arrival time per direction: a stream keeps its order. */
  lastIn: number;
  lastOut: number;
  breakNow(): void;
}

export interface NetworkStats {
  messages: number;
  linksBroken: number;
}

export interface SimNetwork {
  /** The transport of the worker that will serve at `address`. */
  transport(address: string): ClusterTransport;
  crash(address: string): void;
  pause(address: string, untilMs: number): void;
  /**
   * Cuts every path between the two groups until `untilMs`: open links break (as a keepalive
   * would find), new connections time out, and a call's messages wait for the heal (TCP retransmits).
   */
  cut(a: readonly string[], b: readonly string[], untilMs: number): void;
  /** Breaks one random open link (a lost packet that reset its TCP stream). */
  breakRandomLink(): boolean;
  /** Extra latency on every message until `untilMs` (congestion). */
  slow(extraMs: number, untilMs: number): void;
  /** A node's exchange, for the invariants' memory bound. */
  exchangeOf(address: string): Exchange | undefined;
  readonly stats: NetworkStats;
}

const wire = <S extends DescMessage>(schema: S, message: object): object => fromBinary(schema, toBinary(schema, isMessage(message, schema) ? message : create(schema, message as never)));

const methodsByName = new Map(ControlService.methods.map((m) => [m.name, m]));

export function createSimNetwork(random: Random, procs: ProcessTable): SimNetwork {
  const nodes = new Map<string, Node>();
  const streams = new Set<Stream>();
  const cuts = new Map<string, number>();
  const stats: NetworkStats = { messages: 0, linksBroken: 0 };
  let slowUntil = 0;
  let slowMs = 0;
  // Calls a node is answering, failed when it crashes.
  const answering = new Map<Node, Set<{ caller: Node; fail: (err: grpc.ServiceError) => void }>>();

  const nodeOf = (address: string): Node => {
    let node = nodes.get(address);
    if (node === undefined) nodes.set(address, (node = { address, dead: false, pausedUntil: 0 }));
    return node;
  };
  const pair = (a: string, b: string) => (a < b ? `${a}|${b}` : `${b}|${a}`);
  const cutUntil = (a: Node, b: Node) => cuts.get(pair(a.address, b.address)) ?? 0;
  const reachable = (a: Node, b: Node) => cutUntil(a, b) <= Date.now();
  const latency = (): number => {
    const base = random.chance(0.05) ? random.int(2, 20) : random.next() * 1.5 + 0.1;
    return base + (Date.now() < slowUntil ? random.next() * slowMs : 0);
  };
  /** Runs `fn` when a message from `from` reaches `to`, after `notBefore` (a stream's order). */
  /** Runs `fn` in `node`'s process after `ms` (the network's timer, not the sender's). */
  const later = (node: Node, ms: number, fn: () => void): void => {
    procs.detached(() => setTimeout(() => procs.run(procs.of(node.address), fn), ms));
  };
  const deliver = (from: Node, to: Node, notBefore: number, fn: () => void): number => {
    stats.messages++;
    // A paused receiver runs its due timers first as it wakes (see processes.ts), then reads this.
    const at = Math.max(Date.now() + latency(), notBefore, from.pausedUntil, to.pausedUntil + 1, cutUntil(from, to));
    later(to, at - Date.now(), fn);
    return at;
  };
  const refused = (details: string) => grpcError(grpc.status.UNAVAILABLE, details);

  const clientsOf = (self: Node, token: string | undefined): ControlClients => ({
    call(address, method, request, _output, deadlineMs = 60_000) {
      // A dead process waits for ever: nothing it started comes back.
      if (self.dead) return new Promise(() => undefined);
      return new Promise((resolve, reject) => {
        let settled = false;
        const finish = (err: grpc.ServiceError | null, response?: unknown) => {
          if (settled) return;
          settled = true;
          clearTimeout(deadline);
          if (err !== null) reject(err);
          else resolve(response as never);
        };
        const deadline = setTimeout(() => finish(grpcError(grpc.status.DEADLINE_EXCEEDED, `${method} to ${address}: deadline exceeded`)), deadlineMs);
        const target = nodes.get(address);
        const spec = methodsByName.get(method)!;
        if (target === undefined || target.dead || target.handlers === undefined) {
          later(self, latency(), () => finish(refused(`${address}: connection refused`)));
          return;
        }
        const req = wire(spec.input, request);
        deliver(self, target, 0, () => {
          if (self.dead) return;
          if (target.dead) return finish(refused(`${address}: connection reset`));
          const onCrash = { caller: self, fail: (err: grpc.ServiceError) => finish(err) };
          let pending = answering.get(target);
          if (pending === undefined) answering.set(target, (pending = new Set()));
          pending.add(onCrash);
          const handler = target.handlers![method] as unknown as UnaryHandler;
          handler({ request: req, metadata: tokenMetadata(token) } as never, (err, response) => {
            pending.delete(onCrash);
            if (target.dead) return;
            const reply = err === null || err === undefined ? wire(spec.output, response as object) : undefined;
            deliver(target, self, 0, () => {
              if (self.dead) return;
              finish(err === null || err === undefined ? null : (err as grpc.ServiceError), reply);
            });
          });
        });
      });
    },
    close: () => undefined,
  });

  /** A client end and a server end joined by the network; the server end is what grpc-js would give the exchange's Link handler. */
  const openLink = (self: Node, address: string, token: string | undefined): LinkCall => {
    const clientListeners = listeners();
    const serverListeners = listeners();
    const client: LinkCall = {
      write: (request: LinkRequest) => {
        if (stream.broken || self.dead) return;
        const bytes = wire(LinkRequestSchema, request);
        stream.lastIn = deliver(self, target, stream.lastIn, () => !stream.broken && serverListeners.emit("data", bytes));
      },
      end: () => {
        if (stream.broken || self.dead) return;
        stream.lastIn = deliver(self, target, stream.lastIn, () => !stream.broken && serverListeners.emit("end"));
      },
      on: clientListeners.on as LinkCall["on"],
    };
    const target = nodes.get(address) ?? nodeOf(address);
    const stream: Stream = {
      from: self,
      to: target,
      broken: false,
      lastIn: 0,
      lastOut: 0,
      breakNow() {
        if (stream.broken) return;
        stream.broken = true;
        streams.delete(stream);
        stats.linksBroken++;
        server.cancelled = true;
        if (!self.dead) later(self, latency(), () => clientListeners.emit("error", refused(`link to ${address} reset`)));
      },
    };
    const server = {
      metadata: tokenMetadata(token),
      cancelled: false,
      write(response: LinkResponse) {
        if (stream.broken || target.dead) return;
        const bytes = wire(LinkResponseSchema, response);
        stream.lastOut = deliver(target, self, stream.lastOut, () => !stream.broken && clientListeners.emit("data", bytes));
      },
      end() {
        if (stream.broken || target.dead) return;
        stream.lastOut = deliver(target, self, stream.lastOut, () => {
          if (stream.broken) return;
          stream.broken = true;
          streams.delete(stream);
          clientListeners.emit("end");
        });
      },
      on: serverListeners.on,
      // The exchange refuses a link by emitting its status: it ends the call at the client.
      emit(event: string, err: { code: grpc.status; details: string }) {
        if (event !== "error" || stream.broken) return;
        stream.lastOut = deliver(target, self, stream.lastOut, () => {
          if (stream.broken) return;
          stream.broken = true;
          streams.delete(stream);
          clientListeners.emit("error", grpcError(err.code, err.details));
        });
      },
    };
    if (self.dead) return client;
    if (target.dead || target.exchange === undefined) {
      stream.broken = true;
      later(self, latency(), () => clientListeners.emit("error", refused(`${address}: connection refused`)));
      return client;
    }
    if (!reachable(self, target)) {
      stream.broken = true;
      later(self, CONNECT_TIMEOUT_MS, () => clientListeners.emit("error", refused(`${address}: connect timed out`)));
      return client;
    }
    streams.add(stream);
    const exchange = target.exchange;
    stream.lastIn = deliver(self, target, 0, () => !stream.broken && (exchange.service.Link as (call: unknown) => void)(server));
    return client;
  };

  const breakWhere = (test: (s: Stream) => boolean) => {
    for (const s of [...streams]) if (test(s)) s.breakNow();
  };

  return {
    stats,
    transport(address) {
      const self = nodeOf(address);
      return {
        clients: (token) => clientsOf(self, token),
        dial: (peer, token): LinkDialer => ({ open: () => openLink(self, peer, token), close: () => undefined }),
        async serve(_listen, token, resolve, exchange): Promise<ClusterServer> {
          self.handlers = guarded(token, resolve);
          self.exchange = exchange;
          return {
            address,
            shutdown: async () => {
              self.handlers = undefined;
              self.exchange = undefined;
            },
            forceShutdown: () => {
              self.handlers = undefined;
              self.exchange = undefined;
            },
          };
        },
      };
    },
    crash(address) {
      const node = nodeOf(address);
      node.dead = true;
      breakWhere((s) => s.from === node || s.to === node);
      for (const { caller, fail } of answering.get(node) ?? []) later(caller, latency(), () => fail(refused(`${address}: connection reset`)));
      answering.delete(node);
    },
    pause(address, untilMs) {
      nodeOf(address).pausedUntil = untilMs;
    },
    cut(a, b, untilMs) {
      for (const x of a) for (const y of b) cuts.set(pair(x, y), untilMs);
      breakWhere((s) => !reachable(s.from, s.to));
    },
    breakRandomLink() {
      const open = [...streams];
      if (open.length === 0) return false;
      random.pick(open).breakNow();
      return true;
    },
    slow(extraMs, untilMs) {
      slowMs = extraMs;
      slowUntil = untilMs;
    },
    exchangeOf: (address) => nodes.get(address)?.exchange,
  };
}

/** A minimal event emitter: listeners run synchronously, in the order they were added. */
function listeners() {
  const byEvent = new Map<string, Array<(...args: unknown[]) => void>>();
  return {
    on(event: string, listener: (...args: unknown[]) => void) {
      const list = byEvent.get(event) ?? [];
      list.push(listener);
      byEvent.set(event, list);
    },
    emit(event: string, ...args: unknown[]) {
      for (const l of byEvent.get(event) ?? []) l(...args);
      return true;
    },
  };
}
