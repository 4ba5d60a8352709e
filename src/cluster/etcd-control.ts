/**
 * The cluster's control plane on etcd (`--coordinator etcd://...`): this process's lease, its
 * member key, the election for the coordinator role, and the coordinator's state, one key changed
 * only by compare-and-swap on its revision. Only I/O lives here; what the coordinator decides is
 * in coordinator.ts, the same as embedded.
 *
 * Keys, under /keyway/APP/: `config` (the run's settings, written once by `keyway run`),
 * `members/ID` and `leader` (bound to their holder's lease, so they vanish with it), `state` (the
 * map, members, fenced workers and the stream registry).
 */
import { ConstantBackoff, noop } from "cockatiel";
import { Etcd3, EtcdLeaseInvalidError, type Lease, type Namespace } from "etcd3";
import { ErrorCode, KeywayError } from "../errors.ts";
import type { Logger } from "../log/logger.ts";
import { createLeaseKeeper } from "./lease-keeper.ts";
import { parseHostPort } from "../util/host-port.ts";

/** The settings every worker of the run takes from etcd. */
export interface ClusterConfig {
  app: string;
  appDigest: string;
  slotCount: number;
  replicas: number;
  bindingsJson: string;
  finite: boolean;
  failureTimeoutMs: number;
}

export interface LeaderInfo {
  id: string;
  address: string;
  lease: string;
}

export interface EtcdControl {
  readonly endpoints: string;
  /** Takes this process's lease, renewed from then on; before it, only createCluster, config and leader work. */
  begin(ttlSeconds: number): Promise<void>;
  /** Writes the run's config; a cluster of this app already led by a live worker is refused. */
  createCluster(config: ClusterConfig): Promise<void>;
  config(): Promise<ClusterConfig>;
  /** This worker's member key, bound to its lease. */
  register(id: string, address: string): Promise<void>;
  liveMembers(): Promise<Set<string>>;
  /** Calls onGone for each member whose key goes (its lease expired or was revoked). */
  watchMembers(onGone: (id: string) => void): Promise<void>;
  /** Resolves once this worker holds the coordinator role; retries while etcd is down. */
  campaign(id: string, address: string): Promise<void>;
  leader(): Promise<LeaderInfo | undefined>;
  /** Calls onChange with each new leader (undefined while there is none). */
  watchLeader(onChange: (leader: LeaderInfo | undefined) => void): Promise<void>;
  /** Ends another worker's lease: used once its process is known to be gone, so its keys go now. */
  revoke(lease: string): Promise<void>;
  /** The coordinator's state, and remembers its revision for the next save. */
  loadState(): Promise<string | undefined>;
  /** Saves the state if nobody else wrote it since this process last did; else the coordinator was deposed. */
  saveState(state: string): Promise<void>;
  /** Called once, when this process's lease is lost or cannot be known to be alive: it must stop taking writes. */
  onLost(handler: (err: KeywayError) => void): void;
  close(): Promise<void>;
}

/** An etcd that does not answer within this long at start is reported unreachable. */
const CONNECT_DEADLINE_MS = 5000;
/** One etcd request; the control plane retries beyond it. */
const REQUEST_DEADLINE_MS = 2000;
const RETRY_MS = 200;

/** `etcd://HOST:PORT[,HOST:PORT...]` as etcd3's host list; anything else is a USAGE error. */
export function parseEtcdUri(uri: string): string[] {
  const match = /^etcd:\/\/([^/]+)\/?$/.exec(uri);
  const hosts = match?.[1]?.split(",") ?? [];
  const bad = hosts.find((h) => {
    const parsed = parseHostPort(h);
    return "error" in parsed || parsed.port === 0;
  });
  if (match === null || hosts.length === 0 || bad !== undefined) {
    throw new KeywayError(ErrorCode.USAGE, `--coordinator ${uri}: expected etcd://HOST:PORT[,HOST:PORT...]${bad === undefined ? "" : ` ("${bad}" is not HOST:PORT)`}`);
  }
  return hosts;
}

const withDeadline = <T>(work: Promise<T>, ms: number, what: string): Promise<T> => {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
};

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** grpc-js's account of a failed connection, as one short reason. */
const reasonOf = (err: Error): string => {
  const refused = /ECONNREFUSED/.exec(err.message);
  if (refused !== null) return "connection refused";
  return err.message.replace(/^\d+ [A-Z_]+: /, "").split(". ")[0]!;
};

/**
 * Connects to etcd; one that does not answer is a one-line UNAVAILABLE error. The lease (begin) is
 * kept alive here, not by the library, so the time it is known valid until is measured from when
 * a renewal was sent.
 */
export async function connectEtcd(uri: string, app: string, log: Logger): Promise<EtcdControl> {
  const hosts = parseEtcdUri(uri);
  const endpoints = hosts.join(",");
  // No retries or circuit breaker in the client: a breaker open for seconds after etcd returns
  // would eat into the lease; this module retries at its own pace.
  const client = new Etcd3({
    hosts: hosts.map((h) => `http://${h}`),
    dialTimeout: CONNECT_DEADLINE_MS,
    defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + REQUEST_DEADLINE_MS }),
    faultHandling: { host: () => noop, global: noop, watchBackoff: new ConstantBackoff(RETRY_MS).next() },
  });
  const ns: Namespace = client.namespace(`/keyway/${app}/`);
  try {
    await withDeadline(ns.get("config").exec(), CONNECT_DEADLINE_MS, "reading the cluster's config");
  } catch (err) {
    client.close();
    throw new KeywayError(ErrorCode.UNAVAILABLE, `cannot reach etcd at ${endpoints}: ${reasonOf(err as Error)}`);
  }
  let lease!: Lease;
  let leaseId = "";

  let closed = false;
  const keeper = createLeaseKeeper({
    endpoints,
    log,
    renewOnce: () =>
      withDeadline(lease.keepaliveOnce(), REQUEST_DEADLINE_MS, "renewing the lease").then(
        () => "renewed" as const,
        (err: Error) => {
          if (err instanceof EtcdLeaseInvalidError) return "expired" as const;
          throw err;
        },
      ),
  });

  const leaderFrom = (value: Buffer | undefined): LeaderInfo | undefined => (value === undefined ? undefined : (JSON.parse(value.toString()) as LeaderInfo));
  let stateRevision = "0";
  const watchers: Array<{ cancel(): Promise<void> }> = [];

  const control: EtcdControl = {
    endpoints,
    async begin(ttl) {
      const sentAt = Date.now();
      lease = ns.lease(ttl, { autoKeepAlive: false });
      try {
        leaseId = await withDeadline(lease.grant(), CONNECT_DEADLINE_MS, "granting a lease");
      } catch (err) {
        throw new KeywayError(ErrorCode.UNAVAILABLE, `cannot take a lease from etcd at ${endpoints}: ${reasonOf(err as Error)}`);
      }
      keeper.start(ttl, sentAt);
    },
    async createCluster(config) {
      const leader = await control.leader();
      if (leader !== undefined) throw new KeywayError(ErrorCode.USAGE, `a cluster of app "${app}" already runs on etcd at ${endpoints} (coordinator ${leader.id} at ${leader.address}); join it with \`keyway worker\``);
      // What a previous run left (its state, members whose leases have not expired yet) is not this run's.
      await ns.delete().all();
      await ns.put("config").value(JSON.stringify(config));
    },
    async config() {
      const value = await ns.get("config").string();
      if (value === null) throw new KeywayError(ErrorCode.USAGE, `no cluster of app "${app}" on etcd at ${endpoints}: start one with \`keyway run ... --coordinator ${uri}\``);
      return JSON.parse(value) as ClusterConfig;
    },
    async register(id, address) {
      // The worker has joined by now: a put a blip of etcd failed is retried (as the campaign is),
      // until the lease itself is lost, which fences this worker anyway.
      for (;;) {
        try {
          await ns.put(`members/${id}`).value(JSON.stringify({ address, lease: leaseId })).lease(leaseId);
          return;
        } catch (err) {
          // A lost lease is the error to give: this worker is fenced, not failed.
          const lost = keeper.lost();
          if (lost !== undefined) throw lost;
          if (closed) throw err;
          log.debug({ err: reasonOf(err as Error) }, "writing this worker's member key failed; trying again");
          await sleep(RETRY_MS);
        }
      }
    },
    async liveMembers() {
      const keys = await ns.getAll().prefix("members/").keys();
      return new Set(keys.map((k) => k.slice("members/".length)));
    },
    async watchMembers(onGone) {
      const watcher = await ns.watch().prefix("members/").create();
      watcher.on("delete", (kv) => onGone(kv.key.toString().slice(`/keyway/${app}/members/`.length)));
      watchers.push(watcher);
    },
    async campaign(id, address) {
      const value = JSON.stringify({ id, address, lease: leaseId } satisfies LeaderInfo);
      for (;;) {
        if (closed || keeper.lost() !== undefined) return new Promise(() => undefined);
        try {
          const result = await ns.if("leader", "Create", "==", 0).then(ns.put("leader").value(value).lease(leaseId)).else(ns.get("leader")).commit();
          if (result.succeeded) return;
          const held = leaderFrom(result.responses[0]?.response_range?.kvs[0]?.value);
          if (held?.lease === leaseId) return;
          // Wait for the holder's key to go, then try again.
          const watcher = await ns.watch().key("leader").startRevision(String(BigInt(result.header.revision) + 1n)).create();
          await new Promise<void>((resolve) => {
            watcher.on("delete", () => resolve());
            watcher.on("disconnected", () => resolve());
          });
          await watcher.cancel();
        } catch {
          await sleep(RETRY_MS);
        }
      }
    },
    async leader() {
      return leaderFrom((await ns.get("leader").buffer()) ?? undefined);
    },
    async watchLeader(onChange) {
      const watcher = await ns.watch().key("leader").create();
      watcher.on("put", (kv) => onChange(leaderFrom(kv.value)));
      watcher.on("delete", () => onChange(undefined));
      watchers.push(watcher);
    },
    async revoke(lease) {
      await ns.leaseClient.leaseRevoke({ ID: lease }).catch((err: Error) => {
        if (!(err instanceof EtcdLeaseInvalidError)) throw err;
      });
    },
    async loadState() {
      const result = await ns.get("state").exec();
      const kv = result.kvs[0];
      stateRevision = kv === undefined ? "0" : kv.mod_revision;
      return kv?.value.toString();
    },
    async saveState(state) {
      const result = await ns.if("state", "Mod", "==", stateRevision).then(ns.put("state").value(state)).else(ns.get("state")).commit();
      const now = result.responses[0]?.response_range?.kvs[0];
      // A retried save whose first try was applied finds its own state there.
      if (!result.succeeded && now !== undefined && now.value.toString() === state) {
        stateRevision = now.mod_revision;
        return;
      }
      if (!result.succeeded) {
        throw new KeywayError(ErrorCode.FENCED, "another worker took the coordinator role and changed the cluster's state in etcd; this one steps down");
      }
      stateRevision = result.header.revision;
    },
    onLost: (handler) => keeper.onLost(handler),
    async close() {
      closed = true;
      keeper.stop();
      await Promise.all(watchers.map((w) => w.cancel().catch(() => undefined)));
      await lease?.revoke().catch(() => undefined);
      client.close();
    },
  };
  return control;
}
