/**
 * etcd for the simulator: one in-memory store (keys with revisions, leases that expire on timers,
 * watches, transactions) and, per simulated worker, a client implementing `EtcdControl` with the
 * semantics of `connectEtcd` (src/cluster/etcd-control.ts): the same keys under /keyway/APP/, the
 * same keepalive loop and fence, the same election, compare-and-swap and errors.
 *
 * Every message between a worker and etcd takes a latency drawn from the seed. A worker cut off
 * from etcd (`cut`) sends and receives nothing until the heal: a request whose message would
 * arrive after its deadline is dropped (the client cancelled it) and the client sees the deadline
 * pass, so its renewals fail and its fence fires; a request that arrived but whose answer did not
 * is applied all the same (as with a real partition). Watch events wait for the heal and then
 * come in order (the client reconnects and resumes from its revision). A crashed worker
 * (`crash`) sends nothing again and hears nothing; its lease expires TTL after etcd last received
 * a renewal. etcd being down (`outage`) refuses every request at once; its leases do not expire
 * meanwhile and are renewed for a full TTL when it is back, as etcd does when a leader takes over.
 *
 * Only global setTimeout / setInterval / Date.now are used (faked by the simulator's clock), and
 * randomness comes from the caller.
 */
import type { ClusterConfig, EtcdControl, LeaderInfo } from "../src/cluster/etcd-control.ts";
import { createLeaseKeeper } from "../src/cluster/lease-keeper.ts";
import { ErrorCode, KeywayError } from "../src/errors.ts";
import type { Logger } from "../src/log/logger.ts";

// As in src/cluster/etcd-control.ts (not exported there). Its CONNECT_DEADLINE_MS (5 s) never
// comes into play: the gRPC deadline of every unary call, REQUEST_DEADLINE_MS, is shorter.
/** One etcd request (the client's gRPC deadline); the control plane retries beyond it. */
const REQUEST_DEADLINE_MS = 2000;
const RETRY_MS = 200;
/** etcd grants no lease shorter than this (ceil of 1.5 election timeouts with the default settings). */
const MIN_TTL_SECONDS = 2;
/** Lease ids are int64s in decimal, as etcd3 gives them. */
const LEASE_ID_BASE = 7_587_868_000_000_000;

export const SIM_ETCD_ENDPOINTS = "etcd-0:2379";

export interface SimEtcdOptions {
  /** A float in [0, 1), drawn from the seed (e.g. `createRandom(seed).fork().next`). */
  random: () => number;
  /** The app whose keys (/keyway/APP/) a client uses unless it names one; "app" by default. */
  app?: string;
  /** One-way latency between a worker and etcd, whole ms, drawn uniformly; 1 to 3 by default. */
  latencyMs?: { min: number; max: number };
  /**
   * The simulator's process table: etcd's own timers run in no worker's process, and what reaches
   * a worker runs in its (so a worker that crashed or is paused gets nothing, or gets it later).
   */
  processes?: { run<T>(address: string, fn: () => T): T; detached<T>(fn: () => T): T };
}

export interface SimEtcdClientOptions {
  /** The app of this client's keys; the store's default otherwise. */
  app?: string;
  /** Where the client logs what connectEtcd logs (lease lost, etcd unreachable and back). */
  log?: Logger;
}

export interface SimEtcdKey {
  key: string;
  value: string;
  lease: string | undefined;
  createRevision: number;
  modRevision: number;
}

export interface SimEtcdLease {
  id: string;
  ttlSeconds: number;
  /** When etcd expires it if no renewal arrives before. */
  expiresAt: number;
  keys: string[];
}

export interface SimEtcdStats {
  requests: number;
  leasesExpired: number;
  leasesRevoked: number;
}

export interface SimEtcd {
  /** What `EtcdControl.endpoints` says, and the `etcd://` URI of the simulated cluster. */
  readonly endpoints: string;
  readonly uri: string;
  /** A client for the worker at `address`, as connectEtcd returns it but without its first read. */
  client(address: string, options?: SimEtcdClientOptions): EtcdControl;
  /** As connectEtcd: a first read of the config, and UNAVAILABLE when etcd does not answer it. */
  connect(address: string, options?: SimEtcdClientOptions): Promise<EtcdControl>;
  /** `address` cannot reach etcd (nor etcd it) until `untilMs`; a later call replaces the time. */
  cut(address: string, untilMs: number): void;
  /** The process at `address` is gone: nothing more in or out, its lease runs out at its TTL. */
  crash(address: string): void;
  /** etcd itself is down until `untilMs`: requests are refused at once, leases are kept. */
  outage(untilMs: number): void;
  reachable(address: string): boolean;
  /** The store's keys (full paths, sorted) under `prefix`, for tests and invariants. */
  keys(prefix?: string): SimEtcdKey[];
  leases(): SimEtcdLease[];
  /** The store's current revision. */
  revision(): number;
  readonly stats: SimEtcdStats;
}

type Timer = ReturnType<typeof setTimeout>;

interface Kv {
  value: string;
  lease: string | undefined;
  createRevision: number;
  modRevision: number;
}

interface StoredLease {
  id: string;
  ttlMs: number;
  expiresAt: number;
  timer: Timer | undefined;
  keys: Set<string>;
}

type Change = { type: "put"; key: string; value: string } | { type: "delete"; key: string };
type Op = { type: "put"; key: string; value: string; lease: string | undefined } | { type: "delete"; key: string };

/** A watch as the store holds it: it matches keys and hands their changes to its client's stream. */
interface Watch {
  matches(key: string): boolean;
  onChange(change: Change): void;
}

/** The path between one worker and etcd. */
interface Conn {
  address: string;
  cutUntil: number;
  crashed: boolean;
  /** Watch events (and watch acks) on their way to the worker, in order. */
  watchQueue: Array<() => void>;
  pump: Timer | undefined;
  /** The clients' keepalive loops, stopped when the process crashes. */
  onCrash: Set<() => void>;
}

/** etcd3's EtcdLeaseInvalidError: a lease etcd does not know (expired or revoked). */
class LeaseInvalidError extends Error {
  constructor(id: string) {
    super(`Lease ${id} is expired or revoked`);
    this.name = "EtcdLeaseInvalidError";
  }
}

const deadlineExceeded = () => new Error("4 DEADLINE_EXCEEDED: Deadline exceeded");
const unavailable = () => new Error("14 UNAVAILABLE: No connection established");

/** As etcd-control.ts: grpc-js's account of a failed connection, as one short reason. */
const reasonOf = (err: Error): string => {
  const refused = /ECONNREFUSED/.exec(err.message);
  if (refused !== null) return "connection refused";
  return err.message.replace(/^\d+ [A-Z_]+: /, "").split(". ")[0]!;
};

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const silent: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined, child: () => silent };

export function createSimEtcd(options: SimEtcdOptions): SimEtcd {
  const random = options.random;
  const runAs = <T>(address: string, fn: () => T): T => (options.processes === undefined ? fn() : options.processes.run(address, fn));
  const detached = <T>(fn: () => T): T => (options.processes === undefined ? fn() : options.processes.detached(fn));
  const defaultApp = options.app ?? "app";
  const latMin = Math.max(0, Math.floor(options.latencyMs?.min ?? 1));
  const latMax = Math.max(latMin, Math.floor(options.latencyMs?.max ?? 3));
  const latency = (): number => latMin + Math.floor(random() * (latMax - latMin + 1));
  const endpoints = SIM_ETCD_ENDPOINTS;
  const uri = `etcd://${endpoints}`;
  const stats: SimEtcdStats = { requests: 0, leasesExpired: 0, leasesRevoked: 0 };

  // ---- The store -------------------------------------------------------------------------------

  let revision = 1;
  const kvs = new Map<string, Kv>();
  const leaseTable = new Map<string, StoredLease>();
  const watches = new Set<Watch>();
  /** Per key, the revision it was last deleted at: a watch from an older revision replays it. */
  const lastDeleted = new Map<string, number>();
  let leaseSeq = 0;
  let outageUntil = 0;

  const requireLease = (lease: string | undefined): void => {
    // etcd3 sends lease "" as 0: no lease.
    if (lease !== undefined && lease !== "" && !leaseTable.has(lease)) throw new LeaseInvalidError(lease);
  };

  /** One write (a revision), its changes then told to the watches in order. */
  const write = (ops: readonly Op[]): number => {
    const effective = ops.filter((op) => op.type === "put" || kvs.has(op.key));
    if (effective.length === 0) return revision;
    for (const op of effective) if (op.type === "put") requireLease(op.lease);
    revision++;
    const changes: Change[] = [];
    for (const op of effective) {
      const before = kvs.get(op.key);
      if (before?.lease !== undefined) leaseTable.get(before.lease)?.keys.delete(op.key);
      if (op.type === "put") {
        const lease = op.lease === "" ? undefined : op.lease;
        kvs.set(op.key, { value: op.value, lease, createRevision: before?.createRevision ?? revision, modRevision: revision });
        if (lease !== undefined) leaseTable.get(lease)!.keys.add(op.key);
        changes.push({ type: "put", key: op.key, value: op.value });
      } else if (before !== undefined) {
        kvs.delete(op.key);
        lastDeleted.set(op.key, revision);
        changes.push({ type: "delete", key: op.key });
      }
    }
    const listening = [...watches];
    for (const change of changes) for (const w of listening) if (w.matches(change.key)) w.onChange(change);
    return revision;
  };

  const rangeOf = (prefix: string): Array<[string, Kv]> => [...kvs].filter(([key]) => key.startsWith(prefix)).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));

  const armExpiry = (lease: StoredLease): void => {
    clearTimeout(lease.timer);
    lease.timer = detached(() => setTimeout(() => expire(lease), Math.max(0, lease.expiresAt - Date.now())));
  };
  const refresh = (lease: StoredLease): void => {
    lease.expiresAt = Date.now() + lease.ttlMs;
    armExpiry(lease);
  };
  /** A lease's keys go in one revision, in key order, as etcd revokes them. */
  const endLease = (lease: StoredLease): void => {
    clearTimeout(lease.timer);
    lease.timer = undefined;
    leaseTable.delete(lease.id);
    write([...lease.keys].sort().map((key) => ({ type: "delete", key })));
  };
  const expire = (lease: StoredLease): void => {
    lease.timer = undefined;
    if (leaseTable.get(lease.id) !== lease) return;
    // etcd is down: nothing expires; its leases are renewed when it is back (promote).
    if (Date.now() < outageUntil) return;
    if (Date.now() < lease.expiresAt) return armExpiry(lease);
    stats.leasesExpired++;
    endLease(lease);
  };
  const grant = (ttlSeconds: number): string => {
    const id = String(LEASE_ID_BASE + ++leaseSeq);
    const lease: StoredLease = { id, ttlMs: Math.max(ttlSeconds, MIN_TTL_SECONDS) * 1000, expiresAt: 0, timer: undefined, keys: new Set() };
    leaseTable.set(id, lease);
    refresh(lease);
    return id;
  };
  /** A keepalive: the lease's TTL in seconds, 0 for one etcd does not know. */
  const keepAlive = (id: string): number => {
    const lease = leaseTable.get(id);
    if (lease === undefined) return 0;
    refresh(lease);
    return lease.ttlMs / 1000;
  };
  const revokeLease = (id: string): void => {
    const lease = leaseTable.get(id);
    if (lease === undefined) throw new LeaseInvalidError(id);
    stats.leasesRevoked++;
    endLease(lease);
  };

  // ---- The network between the workers and etcd --------------------------------------------------

  const conns = new Map<string, Conn>();
  const connOf = (address: string): Conn => {
    let conn = conns.get(address);
    if (conn === undefined) conns.set(address, (conn = { address, cutUntil: 0, crashed: false, watchQueue: [], pump: undefined, onCrash: new Set() }));
    return conn;
  };
  const cutOff = (conn: Conn): boolean => conn.cutUntil > Date.now();
  const down = (): boolean => outageUntil > Date.now();

  /**
   * One message either way between a worker and etcd: `arrive` once it gets there. While the path
   * is cut it waits for the heal, and is dropped if that is past `deadlineAt` (the call is over);
   * while etcd is down the connection is refused.
   */
  const transmit = (conn: Conn, deadlineAt: number, refused: () => void, arrive: () => void): void => {
    const at = (when: number): void => {
      detached(() => setTimeout(
        () => {
          if (conn.crashed) return;
          if (down()) return refused();
          if (cutOff(conn)) {
            const next = conn.cutUntil + latency();
            if (next <= deadlineAt) at(next);
            return;
          }
          arrive();
        },
        Math.max(0, when - Date.now()),
      ));
    };
    at(Date.now() + latency());
  };

  /**
   * A unary request (or one keepalive) applied by the store when it arrives: its answer, or the
   * error etcd gives, comes back; the caller gives up at the deadline (`timeout` is its error).
   * A crashed process's requests never settle.
   */
  const request = <T>(conn: Conn, apply: () => T, timeout: () => Error = deadlineExceeded): Promise<T> => {
    stats.requests++;
    if (conn.crashed) return new Promise<T>(() => undefined);
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const finish = (err: Error | undefined, value?: T): void => {
        if (settled) return;
        settled = true;
        clearTimeout(deadline);
        if (err !== undefined) reject(err);
        else resolve(value as T);
      };
      const deadline = setTimeout(() => finish(timeout()), REQUEST_DEADLINE_MS);
      const deadlineAt = Date.now() + REQUEST_DEADLINE_MS;
      const refused = () => finish(unavailable());
      transmit(conn, deadlineAt, refused, () => {
        let outcome: { ok: true; value: T } | { ok: false; err: Error };
        try {
          outcome = { ok: true, value: apply() };
        } catch (err) {
          outcome = { ok: false, err: err as Error };
        }
        transmit(conn, deadlineAt, refused, () => (outcome.ok ? finish(undefined, outcome.value) : finish(outcome.err)));
      });
    });
  };

  /** Delivers what is queued on a worker's watch stream, in order, once the path is open. */
  const schedulePump = (conn: Conn, when: number): void => {
    if (conn.pump !== undefined) return;
    conn.pump = runAs(conn.address, () => setTimeout(
      () => {
        conn.pump = undefined;
        if (conn.crashed) {
          conn.watchQueue = [];
          return;
        }
        // The stream broke: the client reconnects after the heal and resumes where it was.
        if (cutOff(conn) || down()) return schedulePump(conn, Math.max(conn.cutUntil, outageUntil) + RETRY_MS);
        const batch = conn.watchQueue;
        conn.watchQueue = [];
        for (const deliver of batch) deliver();
      },
      Math.max(0, when - Date.now()),
    ));
  };
  const pushWatch = (conn: Conn, deliver: () => void): void => {
    if (conn.crashed) return;
    conn.watchQueue.push(deliver);
    schedulePump(conn, Date.now() + latency());
  };
  /**
   * Opens a watch stream (no deadline: etcd3 reconnects every RETRY_MS until etcd answers):
   * `register` runs in the store when the request arrives; resolves once the ack is back.
   */
  const openWatch = (conn: Conn, register: () => boolean): Promise<void> =>
    new Promise<void>((resolve) => {
      const attempt = (): void =>
        transmit(
          conn,
          Infinity,
          () => void runAs(conn.address, () => setTimeout(attempt, RETRY_MS)),
          () => {
            if (register()) pushWatch(conn, resolve);
          },
        );
      if (!conn.crashed) attempt();
    });

  // ---- One worker's client: connectEtcd's EtcdControl --------------------------------------------

  const makeClient = (address: string, clientOptions: SimEtcdClientOptions = {}) => {
    const conn = connOf(address);
    const app = clientOptions.app ?? defaultApp;
    const log = clientOptions.log ?? silent;
    const ns = `/keyway/${app}/`;
    /** client.close() done: every call fails. */
    let shut = false;
    const call = <T>(apply: () => T, timeout?: () => Error): Promise<T> =>
      shut ? Promise.reject(new Error("Tried to call a KV method on etcd3, but the client was already closed")) : request(conn, apply, timeout);

    let leaseId = "";
    let closed = false;
    const keeper = createLeaseKeeper({
      endpoints,
      log,
      renewOnce: () =>
        call(
          () => keepAlive(leaseId),
          () => new Error(`renewing the lease: no answer within ${REQUEST_DEADLINE_MS} ms`),
        ).then(
          (ttl) => (ttl === 0 ? ("expired" as const) : ("renewed" as const)),
          (err: Error) => {
            if (err instanceof LeaseInvalidError) return "expired" as const;
            throw err;
          },
        ),
    });
    const stopKeepalive = () => keeper.stop();
    conn.onCrash.add(stopKeepalive);

    const leaderFrom = (value: string | undefined): LeaderInfo | undefined => (value === undefined ? undefined : (JSON.parse(value) as LeaderInfo));
    let stateRevision = 0;
    /** This client's watches, cancelled by close. */
    const mine = new Set<Watch>();
    const addWatch = (watch: Watch): boolean => {
      if (shut || closed) return false;
      watches.add(watch);
      mine.add(watch);
      return true;
    };
    const cancel = (watch: Watch): void => {
      watches.delete(watch);
      mine.delete(watch);
    };
    /** A watch on `key` from `fromRevision`: resolves at its first delete (etcd replays one since then). */
    const deleted = (key: string, fromRevision: number): Promise<void> =>
      new Promise<void>((resolve) => {
        void openWatch(conn, () => {
          if ((lastDeleted.get(key) ?? 0) >= fromRevision) {
            if (shut || closed) return false;
            pushWatch(conn, resolve);
            return true;
          }
          const watch: Watch = {
            matches: (k) => k === key,
            onChange: (change) => {
              if (change.type !== "delete") return;
              cancel(watch);
              pushWatch(conn, resolve);
            },
          };
          return addWatch(watch);
        });
      });
    /** A watch whose events reach `handler` through this worker's stream, unless cancelled meanwhile. */
    const streamed = (matches: (key: string) => boolean, handler: (change: Change) => void): Watch => {
      const watch: Watch = {
        matches,
        onChange: (change) =>
          pushWatch(conn, () => {
            if (mine.has(watch)) handler(change);
          }),
      };
      return watch;
    };

    const control: EtcdControl = {
      endpoints,
      async begin(ttl) {
        // etcd3's Lease refuses this before sending anything.
        if (!ttl || ttl < 1) throw new RangeError(`The TTL in an etcd lease must be at least 1 second. Got: ${ttl}`);
        const sentAt = Date.now();
        try {
          leaseId = await call(() => grant(ttl));
        } catch (err) {
          throw new KeywayError(ErrorCode.UNAVAILABLE, `cannot take a lease from etcd at ${endpoints}: ${reasonOf(err as Error)}`);
        }
        keeper.start(ttl, sentAt);
      },
      async createCluster(config) {
        const leader = await control.leader();
        if (leader !== undefined) throw new KeywayError(ErrorCode.USAGE, `a cluster of app "${app}" already runs on etcd at ${endpoints} (coordinator ${leader.id} at ${leader.address}); join it with \`keyway worker\``);
        // What a previous run left (its state, members whose leases have not expired yet) is not this run's.
        await call(() => write(rangeOf(ns).map(([key]) => ({ type: "delete", key }))));
        await call(() => write([{ type: "put", key: `${ns}config`, value: JSON.stringify(config), lease: undefined }]));
      },
      async config() {
        const value = await call(() => kvs.get(`${ns}config`)?.value ?? null);
        if (value === null) throw new KeywayError(ErrorCode.USAGE, `no cluster of app "${app}" on etcd at ${endpoints}: start one with \`keyway run ... --coordinator ${uri}\``);
        return JSON.parse(value) as ClusterConfig;
      },
      async register(id, workerAddress) {
        const value = JSON.stringify({ address: workerAddress, lease: leaseId });
        await call(() => write([{ type: "put", key: `${ns}members/${id}`, value, lease: leaseId }]));
      },
      async liveMembers() {
        const prefix = `${ns}members/`;
        const keys = await call(() => rangeOf(prefix).map(([key]) => key));
        return new Set(keys.map((k) => k.slice(prefix.length)));
      },
      async watchMembers(onGone) {
        const prefix = `${ns}members/`;
        const watch = streamed(
          (key) => key.startsWith(prefix),
          (change) => change.type === "delete" && onGone(change.key.slice(prefix.length)),
        );
        await openWatch(conn, () => addWatch(watch));
      },
      async campaign(id, workerAddress) {
        const value = JSON.stringify({ id, address: workerAddress, lease: leaseId } satisfies LeaderInfo);
        const key = `${ns}leader`;
        for (;;) {
          if (closed || keeper.lost() !== undefined) return new Promise(() => undefined);
          try {
            // if Create(leader) == 0 then put(leader, lease) else get(leader)
            const result = await call(() => {
              const held = kvs.get(key);
              if (held === undefined) return { succeeded: true, revision: write([{ type: "put", key, value, lease: leaseId }]), held: undefined };
              return { succeeded: false, revision, held: held.value };
            });
            if (result.succeeded) return;
            const held = leaderFrom(result.held);
            if (held?.lease === leaseId) return;
            // Wait for the holder's key to go, then try again.
            await deleted(key, result.revision + 1);
          } catch {
            await sleep(RETRY_MS);
          }
        }
      },
      async leader() {
        return leaderFrom(await call(() => kvs.get(`${ns}leader`)?.value));
      },
      async watchLeader(onChange) {
        const key = `${ns}leader`;
        const watch = streamed(
          (k) => k === key,
          (change) => onChange(change.type === "put" ? leaderFrom(change.value) : undefined),
        );
        await openWatch(conn, () => addWatch(watch));
      },
      async revoke(lease) {
        await call(() => revokeLease(lease)).catch((err: Error) => {
          if (!(err instanceof LeaseInvalidError)) throw err;
        });
      },
      async loadState() {
        const kv = await call(() => {
          const found = kvs.get(`${ns}state`);
          return found === undefined ? undefined : { value: found.value, modRevision: found.modRevision };
        });
        stateRevision = kv === undefined ? 0 : kv.modRevision;
        return kv?.value;
      },
      async saveState(state) {
        const key = `${ns}state`;
        const expected = stateRevision;
        // if Mod(state) == expected then put(state) else get(state); a missing key's mod revision is 0.
        const result = await call(() => {
          const kv = kvs.get(key);
          if ((kv?.modRevision ?? 0) === expected) return { succeeded: true, revision: write([{ type: "put", key, value: state, lease: undefined }]), now: undefined };
          return { succeeded: false, revision, now: kv === undefined ? undefined : { value: kv.value, modRevision: kv.modRevision } };
        });
        const now = result.now;
        // A retried save whose first try was applied finds its own state there.
        if (!result.succeeded && now !== undefined && now.value === state) {
          stateRevision = now.modRevision;
          return;
        }
        if (!result.succeeded) {
          throw new KeywayError(ErrorCode.FENCED, "another worker took the coordinator role and changed the cluster's state in etcd; this one steps down");
        }
        stateRevision = result.revision;
      },
      onLost: (handler) => keeper.onLost(handler),
      async close() {
        closed = true;
        stopKeepalive();
        conn.onCrash.delete(stopKeepalive);
        for (const watch of [...mine]) cancel(watch);
        if (leaseId !== "") {
          const id = leaseId;
          await call(() => {
            if (leaseTable.has(id)) revokeLease(id);
          }).catch(() => undefined);
        }
        shut = true;
      },
    };
    return {
      control,
      /** connectEtcd's first read. */
      probe: () => call(() => kvs.get(`${ns}config`)?.value),
      shutDown: () => {
        closed = true;
        shut = true;
        conn.onCrash.delete(stopKeepalive);
      },
    };
  };

  return {
    endpoints,
    uri,
    stats,
    client: (address, clientOptions) => makeClient(address, clientOptions).control,
    async connect(address, clientOptions) {
      const made = makeClient(address, clientOptions);
      try {
        await made.probe();
      } catch (err) {
        made.shutDown();
        throw new KeywayError(ErrorCode.UNAVAILABLE, `cannot reach etcd at ${endpoints}: ${reasonOf(err as Error)}`);
      }
      return made.control;
    },
    cut(address, untilMs) {
      connOf(address).cutUntil = untilMs;
    },
    crash(address) {
      const conn = connOf(address);
      if (conn.crashed) return;
      conn.crashed = true;
      conn.watchQueue = [];
      clearTimeout(conn.pump);
      conn.pump = undefined;
      for (const stop of conn.onCrash) stop();
      conn.onCrash.clear();
    },
    outage(untilMs) {
      if (untilMs <= outageUntil) return;
      outageUntil = untilMs;
      setTimeout(
        () => {
          if (Date.now() < outageUntil) return;
          // etcd's new leader renews every lease for a full TTL.
          for (const lease of leaseTable.values()) refresh(lease);
        },
        Math.max(0, untilMs - Date.now()),
      );
    },
    reachable(address) {
      const conn = connOf(address);
      return !conn.crashed && !cutOff(conn) && !down();
    },
    keys(prefix = "") {
      return rangeOf(prefix).map(([key, kv]) => ({ key, ...kv }));
    },
    leases() {
      return [...leaseTable.values()].map((l) => ({ id: l.id, ttlSeconds: l.ttlMs / 1000, expiresAt: l.expiresAt, keys: [...l.keys].sort() }));
    },
    revision: () => revision,
  };
}
