import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { ClusterConfig, EtcdControl, LeaderInfo } from "../src/cluster/etcd-control.ts";
import { ErrorCode, KeywayError } from "../src/errors.ts";
import { createSimEtcd, type SimEtcd } from "../sim/etcd.ts";
import { createRandom } from "../sim/random.ts";

const config: ClusterConfig = { app: "t", appDigest: "d", slotCount: 8, replicas: 2, bindingsJson: "{}", finite: false, failureTimeoutMs: 1000 };
const TTL = 2;

beforeEach(() => {
  vi.useFakeTimers({ now: 0, toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval", "Date"] });
});
afterEach(() => {
  vi.useRealTimers();
});

/** Runs simulated time a millisecond at a time until `p` settles (or `maxMs` pass), then returns it. */
async function settle<T>(p: Promise<T>, maxMs = 5_000): Promise<T> {
  let done = false;
  p.then(
    () => (done = true),
    () => (done = true),
  );
  for (let i = 0; i < maxMs && !done; i++) await vi.advanceTimersByTimeAsync(1);
  if (!done) throw new Error(`not settled within ${maxMs} simulated ms`);
  return p;
}

/** Runs simulated time a millisecond at a time until `test` holds; the time it first did. */
async function until(test: () => boolean, maxMs = 10_000): Promise<number> {
  for (let i = 0; i < maxMs; i++) {
    if (test()) return Date.now();
    await vi.advanceTimersByTimeAsync(1);
  }
  throw new Error(`condition not met within ${maxMs} simulated ms`);
}

const has = (etcd: SimEtcd, key: string) => etcd.keys(`/keyway/t/${key}`).some((k) => k.key === `/keyway/t/${key}`);

/** A cluster as `keyway run --coordinator` starts it: createCluster, begin, then the first worker campaigns and registers. */
async function started(etcd: SimEtcd, address: string, id: string): Promise<EtcdControl> {
  const first = etcd.client(address);
  await settle(first.createCluster(config));
  await settle(first.begin(TTL));
  await settle(first.campaign(id, address));
  await settle(first.register(id, address));
  return first;
}

async function joined(etcd: SimEtcd, address: string, id: string): Promise<EtcdControl> {
  const c = etcd.client(address);
  expect(await settle(c.config())).toEqual(config);
  await settle(c.begin(TTL));
  await settle(c.register(id, address));
  return c;
}

describe("the simulator's etcd", () => {
  it("a lease that is not renewed expires after its TTL: its member and leader keys go, and watchers are told", async () => {
    const etcd = createSimEtcd({ random: createRandom(1).next, app: "t" });
    await started(etcd, "a", "w0");
    const b = await joined(etcd, "b", "w1");
    const gone: string[] = [];
    const leaders: Array<LeaderInfo | undefined> = [];
    await settle(b.watchMembers((id) => gone.push(id)));
    await settle(b.watchLeader((l) => leaders.push(l)));
    expect(await settle(b.leader())).toMatchObject({ id: "w0", address: "a" });
    expect(await settle(b.liveMembers())).toEqual(new Set(["w0", "w1"]));

    // Renewals go on while the process lives.
    await vi.advanceTimersByTimeAsync(5_000);
    expect(has(etcd, "leader") && has(etcd, "members/w0")).toBe(true);

    const crashedAt = Date.now();
    etcd.crash("a");
    // The last renewal etcd received was at most one interval (TTL/5) before the crash.
    await vi.advanceTimersByTimeAsync(TTL * 1000 - 450);
    expect(has(etcd, "leader") && has(etcd, "members/w0")).toBe(true);
    const expiredAt = await until(() => !has(etcd, "members/w0"), 1000);
    expect(has(etcd, "leader")).toBe(false);
    expect(expiredAt - crashedAt).toBeLessThanOrEqual(TTL * 1000 + 5);
    expect(etcd.stats.leasesExpired).toBe(1);
    await until(() => gone.length > 0 && leaders.length > 0, 100);
    expect(gone).toEqual(["w0"]);
    expect(leaders).toEqual([undefined]);
    // The live worker's lease stays.
    await vi.advanceTimersByTimeAsync(5_000);
    expect(await settle(b.liveMembers())).toEqual(new Set(["w1"]));
  });

  it("when the crashed leader's key goes, a waiting campaign wins; a revoked lease's keys go at once", async () => {
    const etcd = createSimEtcd({ random: createRandom(2).next, app: "t" });
    await started(etcd, "a", "w0");
    const b = await joined(etcd, "b", "w1");
    const c = await joined(etcd, "c", "w2");
    let bLeads = false;
    void b.campaign("w1", "b").then(() => (bLeads = true));
    let cLeads = false;
    void c.campaign("w2", "c").then(() => (cLeads = true));
    await vi.advanceTimersByTimeAsync(3_000);
    expect(bLeads || cLeads).toBe(false);

    etcd.crash("a");
    await until(() => bLeads || cLeads, TTL * 1000 + 100);
    const winner = bLeads ? b : c;
    const [winnerId, loser] = bLeads ? ["w1", c] : ["w2", b];
    expect(await settle(loser.leader())).toMatchObject({ id: winnerId });
    await vi.advanceTimersByTimeAsync(1_000);
    expect(bLeads && cLeads).toBe(false);

    // The loser finds the winner's process gone and ends its lease: the role moves at once.
    const held = (await settle(winner.leader()))!;
    const before = Date.now();
    await settle(loser.revoke(held.lease));
    await until(() => bLeads && cLeads, 50);
    expect(Date.now() - before).toBeLessThan(50);
    expect(etcd.stats.leasesRevoked).toBe(1);
    // Revoking a lease that is already gone is no error.
    await settle(loser.revoke(held.lease));
  });

  it("saveState is a compare-and-swap: a stale coordinator's save is refused with FENCED; a retried save finds its own value", async () => {
    const etcd = createSimEtcd({ random: createRandom(3).next, app: "t", latencyMs: { min: 2, max: 2 } });
    const a = await started(etcd, "a", "w0");
    const b = await joined(etcd, "b", "w1");
    expect(await settle(a.loadState())).toBeUndefined();
    await settle(a.saveState("s1"));
    await settle(a.saveState("s2"));
    expect(await settle(b.loadState())).toBe("s2");
    await settle(b.saveState("s3"));
    const refused = await settle(a.saveState("s4")).catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(KeywayError);
    expect((refused as KeywayError).code).toBe(ErrorCode.FENCED);
    expect(etcd.keys("/keyway/t/state")[0]!.value).toBe("s3");
    await settle(b.saveState("s5"));

    // b's save reaches etcd (2 ms) but b is cut off before the answer comes back (at 4 ms).
    const save = b.saveState("s6");
    await vi.advanceTimersByTimeAsync(3);
    etcd.cut("b", Date.now() + 3_000);
    const failed = await settle(save).catch((err: unknown) => err);
    expect(failed).toBeInstanceOf(Error);
    expect(failed).not.toBeInstanceOf(KeywayError);
    expect(etcd.keys("/keyway/t/state")[0]!.value).toBe("s6");
    await vi.advanceTimersByTimeAsync(1_500);
    // The worker saves the same text again: done, and the next save goes on from there.
    await settle(b.saveState("s6"));
    await settle(b.saveState("s7"));
    expect(etcd.keys("/keyway/t/state")[0]!.value).toBe("s7");
  });

  it("a worker cut off from etcd calls onLost before its lease expires in etcd, and a request to it fails at its deadline", async () => {
    const etcd = createSimEtcd({ random: createRandom(4).next, app: "t" });
    const a = await started(etcd, "a", "w0");
    const b = await joined(etcd, "b", "w1");
    let lost: { at: number; err: KeywayError } | undefined;
    b.onLost((err) => (lost = { at: Date.now(), err }));
    await vi.advanceTimersByTimeAsync(3_000);

    const cutAt = Date.now();
    etcd.cut("b", cutAt + 10_000);
    expect(etcd.reachable("b")).toBe(false);
    const read = b.liveMembers().catch((err: Error) => err);
    const expiredAt = await until(() => !has(etcd, "members/w1"), TTL * 1000 + 100);
    expect(lost).toBeDefined();
    expect(lost!.at).toBeLessThan(expiredAt);
    expect(lost!.at).toBeGreaterThan(cutAt + TTL * 1000 - 1000);
    expect(lost!.err.code).toBe(ErrorCode.FENCED);
    const failed = await settle(read);
    expect(failed).toBeInstanceOf(Error);
    expect((failed as Error).message).toMatch(/DEADLINE_EXCEEDED/);
    // Others see the member go; the cut-off worker's handler ran once.
    expect(await settle(a.liveMembers())).toEqual(new Set(["w0"]));
    let calls = 0;
    b.onLost(() => calls++);
    expect(calls).toBe(1);
  });

  it("createCluster refuses while a live leader holds the app, and clears a dead run's leftovers", async () => {
    const etcd = createSimEtcd({ random: createRandom(5).next, app: "t" });
    const a = await started(etcd, "a", "w0");
    await settle(a.saveState("old"));
    const again = etcd.client("x");
    const refused = await settle(again.createCluster(config)).catch((err: unknown) => err);
    expect((refused as KeywayError).code).toBe(ErrorCode.USAGE);
    expect((refused as Error).message).toMatch(/already runs on etcd/);

    etcd.crash("a");
    await vi.advanceTimersByTimeAsync(TTL * 1000 + 50);
    await settle(again.createCluster({ ...config, slotCount: 16 }));
    expect(etcd.keys("/keyway/t/").map((k) => k.key)).toEqual(["/keyway/t/config"]);
    expect((await settle(etcd.client("y").config())).slotCount).toBe(16);
    const none = await settle(etcd.client("z", { app: "other" }).config()).catch((err: unknown) => err);
    expect((none as KeywayError).code).toBe(ErrorCode.USAGE);
  });

  it("etcd down for longer than the TTL: every worker loses its lease; the store keeps the leases until it is back", async () => {
    const etcd = createSimEtcd({ random: createRandom(6).next, app: "t" });
    const a = await started(etcd, "a", "w0");
    let lostAt: number | undefined;
    a.onLost(() => (lostAt = Date.now()));
    await vi.advanceTimersByTimeAsync(1_000);
    const downAt = Date.now();
    etcd.outage(downAt + 3_000);
    const refused = await settle(a.leader()).catch((err: Error) => err);
    expect((refused as Error).message).toMatch(/UNAVAILABLE/);
    await vi.advanceTimersByTimeAsync(2_900);
    expect(lostAt).toBeDefined();
    expect(has(etcd, "members/w0")).toBe(true);
    // Back: the lease gets a full TTL, then, with no renewals, expires.
    await vi.advanceTimersByTimeAsync(200);
    expect(has(etcd, "members/w0")).toBe(true);
    const expiredAt = await until(() => !has(etcd, "members/w0"), TTL * 1000 + 100);
    expect(expiredAt - (downAt + 3_000)).toBeGreaterThanOrEqual(TTL * 1000);
  });
});
