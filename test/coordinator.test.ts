/**
 * The coordinator's decisions through its WorkerPort, without sockets: the order of a slot
 * move's steps, epochs that only rise, maps that end in equal ranges, and stream claims.
 */
import { describe, expect, it } from "vitest";
import { pipeline } from "../src/index.ts";
import { createCoordinator, type WorkerPort } from "../src/cluster/coordinator.ts";
import { appDigest, CLUSTER_VERSION, type Worker } from "../src/cluster/membership.ts";
import { createLogger } from "../src/log/logger.ts";
import type { PartitionMap } from "../src/routing/partition-map.ts";

const SLOTS = 64;
const app = { kind: "keyway.app" as const, name: "a", pipelines: [pipeline("p").source("in").keyBy((v: string) => v).state(() => ({}), (v: string) => v).sink("out")] };
const w0: Worker = { id: "w0", address: "a0", connectorAddress: "c0", data: true };

type Call = { op: string; worker: string; slots?: number[]; epoch?: number; owners?: number[]; workers?: readonly string[] };

/** A port that records every call; the workers answer at once, w0 with 3200 keys (50 a slot). */
function recordingPort(fail?: (call: Call) => boolean) {
  const calls: Call[] = [];
  const released = new Map<string, { released: boolean; position: bigint }>();
  const record = (call: Call) => {
    calls.push(call);
    if (fail?.(call)) throw new Error(`${call.op} at ${call.worker} failed`);
  };
  const mapCall = (op: string, worker: Worker, map: PartitionMap): Call => ({ op, worker: worker.id, epoch: map.epoch, owners: Array.from(map.owners), workers: map.workers });
  const port: WorkerPort = {
    freeze: async (w, epoch, slots) => record({ op: "freeze", worker: w.id, epoch, slots }),
    exportSlots: async (w, slots) => {
      record({ op: "export", worker: w.id, slots });
      return slots.map((slot) => ({ $typeName: "keyway.v1.SlotState", slot, pipelines: [] }));
    },
    importSlots: async (w, states, map) => record({ ...mapCall("import", w, map), slots: states.map((s) => s.slot) }),
    updateMap: async (w, map) => record(mapCall("updateMap", w, map)),
    releaseStream: async (w, source, stream) => {
      record({ op: "release", worker: w.id });
      return released.get(`${source}/${stream}`) ?? { released: true, position: 0n };
    },
    startSources: async (w) => record({ op: "startSources", worker: w.id }),
    stopSources: async (w) => {
      record({ op: "stopSources", worker: w.id });
      return [];
    },
    leave: async (w) => record({ op: "leave", worker: w.id }),
    copySlots: async (w, slots, to) => record({ op: `copy to ${to}`, worker: w.id, slots }),
    probe: async () => "answered",
    stats: async () => ({ $typeName: "keyway.v1.WorkerStatsResponse", keys: 3200n }) as never,
  };
  return { port, calls, released };
}

function coordinator(port: WorkerPort, onStateLost: (err: Error) => void = () => undefined) {
  return createCoordinator({ app, self: w0, slotCount: SLOTS, port, log: createLogger("silent"), chunkKeys: 800, finite: false, onStateLost });
}

const joinRequest = (address: string) => ({ version: CLUSTER_VERSION, address, connectorAddress: `c-${address}`, app: "a", appDigest: appDigest(app) });

describe("the coordinator", () => {
  it("moves a joining worker's share chunk by chunk: freeze everywhere, export, import with the map, then the map everywhere; epochs only rise", async () => {
    const { port, calls } = recordingPort();
    const c = coordinator(port);
    const { id, map } = await c.join(joinRequest("a1"));
    expect(id).toBe("w1");
    // Equal ranges at the end.
    expect(Array.from(map.owners).map((o) => map.workers[o])).toEqual([...Array(32).fill("w0"), ...Array(32).fill("w1")]);
    const epochs = calls.filter((k) => k.op === "import" || k.op === "updateMap").map((k) => k.epoch!);
    for (let i = 1; i < epochs.length; i++) expect(epochs[i]).toBeGreaterThanOrEqual(epochs[i - 1]!);
    // 50 keys a slot, 800 keys a chunk: the 32 moving slots go 16 at a time.
    const exports = calls.filter((k) => k.op === "export");
    expect(exports.map((k) => k.slots!.length)).toEqual([16, 16]);
    expect(exports.flatMap((k) => k.slots!).sort((a, b) => a - b)).toEqual(Array.from({ length: 32 }, (_, i) => 32 + i));
    for (const e of exports) {
      const at = calls.indexOf(e);
      const before = calls.slice(0, at).reverse();
      const freezes = before.slice(0, before.findIndex((k) => k.op !== "freeze"));
      // Every member froze exactly these slots just before the export.
      expect(freezes.map((k) => k.worker).sort()).toEqual(["w0", "w1"]);
      for (const f of freezes) expect(f.slots).toEqual(e.slots);
      const imp = calls[at + 1]!;
      expect([imp.op, imp.worker, imp.slots]).toEqual(["import", "w1", e.slots]);
      // The map the new owner takes with the state gives it these slots; w0 hears it after.
      for (const slot of e.slots!) expect(imp.workers![imp.owners![slot]!]).toBe("w1");
      expect(calls[at + 2]).toMatchObject({ op: "updateMap", worker: "w0", epoch: imp.epoch });
    }
  });

  it("gives the first worker's data role away: its slots move, it stays the coordinator", async () => {
    const { port, calls } = recordingPort();
    const c = coordinator(port);
    await c.join(joinRequest("a1"));
    calls.length = 0;
    const { map, removed } = await c.shrink(["w0"], 0);
    expect(removed).toEqual(["w0"]);
    expect(new Set(Array.from(map.owners).map((o) => map.workers[o]))).toEqual(new Set(["w1"]));
    expect(c.members().map((m) => [m.id, m.data])).toEqual([["w0", false], ["w1", true]]);
    expect(calls.some((k) => k.op === "leave")).toBe(false);
    await expect(c.shrink(["w1"], 0)).rejects.toThrow(/would leave no worker to hold the slots/);
  });

  it("reports state lost when an import fails after earlier chunks moved, and a clean failure when none had", async () => {
    let imports = 0;
    const lost: Error[] = [];
    const { port } = recordingPort((call) => call.op === "import" && ++imports === 2);
    await expect(coordinator(port, (err) => lost.push(err)).join(joinRequest("a1"))).rejects.toThrow(/slot state was lost/);
    expect(lost).toHaveLength(1);
    const first = recordingPort((call) => call.op === "import");
    const c = coordinator(first.port, (err) => lost.push(err));
    await expect(c.join(joinRequest("a1"))).rejects.toThrow(/worker w1 joining failed: importing 16 slots into worker w1 failed/);
    expect(lost).toHaveLength(1);
    expect(c.members().map((m) => m.id)).toEqual(["w0"]);
  });

  it("refuses a joining worker of another app or protocol major", async () => {
    const c = coordinator(recordingPort().port);
    await expect(c.join({ ...joinRequest("a1"), appDigest: "other" })).rejects.toThrow(/the cluster runs app "a"/);
    await expect(c.join({ ...joinRequest("a1"), version: { major: 9, minor: 0 } })).rejects.toThrow(/cluster protocol 9\.0 is not compatible/);
  });

  it("grants a stream where it is claimed, at the position its holder gave it up, and refuses it while the holder's session has it", async () => {
    const { port, calls, released } = recordingPort();
    const c = coordinator(port);
    await c.join(joinRequest("a1"));
    expect(await c.claimStream("w0", "in", "s")).toEqual({ granted: true, resumeAfter: 0n });
    released.set("in/s", { released: false, position: 5n });
    expect(await c.claimStream("w1", "in", "s")).toEqual({ granted: false, resumeAfter: 0n });
    released.set("in/s", { released: true, position: 42n });
    expect(await c.claimStream("w1", "in", "s")).toEqual({ granted: true, resumeAfter: 42n });
    expect(calls.filter((k) => k.op === "release").map((k) => k.worker)).toEqual(["w0", "w0"]);
    // The holder claiming again needs nobody's release.
    expect(await c.claimStream("w1", "in", "s")).toEqual({ granted: true, resumeAfter: 42n });
  });

  it("refuses a stream to another connector than the one that claimed it first, on any worker, without asking its holder", async () => {
    const { port, calls } = recordingPort();
    const c = coordinator(port);
    await c.join(joinRequest("a1"));
    expect(await c.claimStream("w0", "in", "s", "file-source")).toEqual({ granted: true, resumeAfter: 0n });
    expect(await c.claimStream("w1", "in", "s", "intruder")).toEqual({ granted: false, resumeAfter: 0n, owner: "file-source" });
    expect(await c.claimStream("w0", "in", "s", "intruder")).toEqual({ granted: false, resumeAfter: 0n, owner: "file-source" });
    expect(calls.filter((k) => k.op === "release")).toEqual([]);
    // Another stream name is another stream.
    expect(await c.claimStream("w1", "in", "t", "intruder")).toEqual({ granted: true, resumeAfter: 0n });
  });
});
