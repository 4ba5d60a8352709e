/**
 * A private network for partition tests, made of Linux network namespaces on this machine: a hub
 * namespace holding a bridge, and one namespace per node joined to the hub by a veth pair. Every
 * address is link-local (169.254.77.0/24) and exists only inside these namespaces; nothing is
 * added to the machine's own namespace. Cutting a node's bridge port drops its traffic silently in
 * both directions (both ends of its veth stay up, as when a switch between machines fails), and
 * healing it lets the same TCP connections carry on.
 *
 * Needs root and iproute2 (`ip`, `bridge`): a test that uses this fails with the reason when
 * either is missing, it never skips.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { connect, createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import { KEYWAY_BIN, startProcess, waitFor, type Running } from "./process.ts";

const run = promisify(execFile);

/** Every namespace this module makes is named `kwp-<pid of the test process>-<network>-<role>`. */
const PREFIX = "kwp-";
const OWNED = /^kwp-(\d+)-/;
const SUBNET = "169.254.77";
const HUB_HOST = 254;
const PROCESS_EXIT_MS = 5000;

export interface Node {
  /** The namespace the node's processes run in. */
  ns: string;
  /** Its only address (link-local), on its veth. */
  ip: string;
  /** Its veth end in the hub, the bridge port that cut() disables. */
  port: string;
}

export interface Network {
  /** The hub namespace: it reaches every node (through the bridge's address) until a node is cut. */
  hub: string;
  hubIp: string;
  nodes: Node[];
  /** Starts the keyway CLI inside a namespace, as startKeyway does outside. */
  startKeyway(ns: string, args: string[]): Running;
  /**
   * A port on 127.0.0.1 in this (the test's) namespace that leads to host:port as seen from the
   * hub namespace, through a relay over a Unix socket (path-named Unix sockets are shared across
   * network namespaces). For helpers that dial 127.0.0.1, such as steadyLoad and clusterStatus.
   * It accepts connections whether or not host:port listens yet (one that finds nothing there is
   * closed at once): start dialling once the far end is known to listen.
   */
  forward(host: string, port: number): Promise<number>;
  /** Drops every frame to and from node i at the bridge, until heal(i). */
  cut(i: number): Promise<void>;
  heal(i: number): Promise<void>;
  /** Kills every process left in its namespaces, then deletes its links and namespaces; throws if any remain. */
  destroy(): Promise<void>;
}

/** Runs an iproute2 tool; its own words on failure. */
async function iproute(tool: "ip" | "bridge", args: string[]): Promise<string> {
  try {
    return (await run(tool, args)).stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${tool} ${args.join(" ")} failed: ${e.stderr?.trim() || e.message}`);
  }
}
const ip = (args: string[]) => iproute("ip", args);

/** Fails, naming what is missing, unless this process can make namespaces and veth pairs. */
export async function requireNetns(): Promise<void> {
  const uid = process.getuid?.();
  if (uid !== 0) throw new Error(`network partition tests make network namespaces and veth pairs, which needs root; this runs as uid ${uid ?? "unknown"}`);
  for (const tool of ["ip", "bridge"]) {
    try {
      await run(tool, ["-V"]);
    } catch (err) {
      throw new Error(`network partition tests need \`${tool}\` from iproute2 (apt-get install iproute2): ${(err as Error).message}`);
    }
  }
}

const listNamespaces = async (): Promise<string[]> =>
  (await ip(["netns", "list"]))
    .split("\n")
    .map((line) => line.split(" ")[0]!)
    .filter((name) => name !== "");

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
};

/** The pids of every process inside a namespace: only ever processes this module's tests started there. */
function pidsInSync(ns: string): number[] {
  try {
    return execFileSync("ip", ["netns", "pids", ns], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] })
      .split("\n")
      .filter((l) => l !== "")
      .map(Number);
  } catch {
    return [];
  }
}

/**
 * Synchronous, for exit and signal handlers: kills what runs inside the namespaces and deletes
 * them. Deleting a namespace takes its veth ends and bridge with it once no process holds it.
 */
function deleteNamespacesSync(names: readonly string[]): void {
  for (const ns of names) for (const pid of pidsInSync(ns)) killQuietly(pid);
  for (const ns of names) {
    try {
      execFileSync("ip", ["netns", "del", ns], { stdio: "ignore" });
    } catch {
      // Already gone.
    }
  }
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // Already gone.
  }
}

/** Namespaces left by test processes that are gone (killed, or a run aborted before its cleanup). */
export async function removeLeftovers(): Promise<string[]> {
  const stale = (await listNamespaces()).filter((ns) => {
    const owner = OWNED.exec(ns);
    return owner !== null && Number(owner[1]) !== process.pid && !alive(Number(owner[1]));
  });
  deleteNamespacesSync(stale);
  return stale;
}

// Namespaces outlive the test process: delete ours when it ends without its afterEach (vitest ends
// its fork workers with SIGTERM, which skips "exit" handlers, so the usual signals are caught too,
// then re-raised for their default action unless someone else listens for them).
const live = new Set<string>();
const cleanUp = (): void => {
  deleteNamespacesSync([...live]);
  live.clear();
};
process.on("exit", cleanUp);
for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"] as const) {
  process.once(signal, () => {
    cleanUp();
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
  });
}

let networks = 0;

/** The relay that runs inside the hub namespace: Unix socket in, TCP out. Prints "ready" once listening. */
const RELAY = `
const net = require("node:net");
const [path, host, port] = process.argv.slice(1);
net.createServer((inside) => {
  const out = net.connect(Number(port), host);
  const end = () => { inside.destroy(); out.destroy(); };
  inside.on("error", end); out.on("error", end); inside.on("close", end); out.on("close", end);
  inside.pipe(out); out.pipe(inside);
}).listen(path, () => process.stdout.write("ready\\n"));
`;

/**
 * Makes a hub and `count` nodes, each node reachable from the hub and the other nodes. `dir` holds
 * the relays' sockets. Whatever was made is deleted again if a step fails.
 */
export async function createNetwork(count: number, dir: string): Promise<Network> {
  const name = `${PREFIX}${process.pid}-${networks++}`;
  const hub = `${name}-hub`;
  const nodes: Node[] = Array.from({ length: count }, (_, i) => ({ ns: `${name}-n${i}`, ip: `${SUBNET}.${i + 1}`, port: `h${i}` }));
  const made: string[] = [];
  const relays: Array<{ server: Server; child: ChildProcess; sockets: Set<Socket> }> = [];
  let destroyed = false;

  const addNamespace = async (ns: string): Promise<void> => {
    await ip(["netns", "add", ns]);
    made.push(ns);
    live.add(ns);
    await ip(["-n", ns, "link", "set", "lo", "up"]);
  };

  const destroy = async (): Promise<void> => {
    if (destroyed) return;
    destroyed = true;
    for (const relay of relays) {
      for (const s of relay.sockets) s.destroy();
      relay.server.close();
      relay.child.kill("SIGKILL");
    }
    const pids = made.flatMap(pidsInSync);
    for (const pid of pids) killQuietly(pid);
    await waitFor("the processes in the test's namespaces to exit", () => (pids.some(alive) ? undefined : true), PROCESS_EXIT_MS).catch(() => undefined);
    // The veths and the bridge go with the namespaces; deleting them first frees them even if a
    // process that would not die still holds a namespace open.
    if (made.includes(hub)) {
      for (const node of nodes) await ip(["-n", hub, "link", "del", node.port]).catch(() => undefined);
      await ip(["-n", hub, "link", "del", "br0"]).catch(() => undefined);
    }
    for (const ns of made) await ip(["netns", "del", ns]).catch(() => undefined);
    for (const ns of made) live.delete(ns);
    const left = (await listNamespaces()).filter((ns) => ns.startsWith(`${name}-`));
    if (left.length > 0) throw new Error(`network namespaces left behind: ${left.join(", ")}`);
    const stuck = pids.filter(alive);
    if (stuck.length > 0) throw new Error(`processes in the test's namespaces did not exit: ${stuck.join(", ")}`);
  };

  try {
    await addNamespace(hub);
    await ip(["-n", hub, "link", "add", "br0", "type", "bridge"]);
    await ip(["-n", hub, "addr", "add", `${SUBNET}.${HUB_HOST}/24`, "dev", "br0"]);
    await ip(["-n", hub, "link", "set", "br0", "up"]);
    for (const node of nodes) {
      await addNamespace(node.ns);
      // Both ends are made where they live: no link ever appears in the machine's own namespace.
      await ip(["-n", hub, "link", "add", node.port, "type", "veth", "peer", "name", "eth0", "netns", node.ns]);
      await ip(["-n", hub, "link", "set", node.port, "master", "br0"]);
      await ip(["-n", hub, "link", "set", node.port, "up"]);
      await ip(["-n", node.ns, "addr", "add", `${node.ip}/24`, "dev", "eth0"]);
      await ip(["-n", node.ns, "link", "set", "eth0", "up"]);
    }
  } catch (err) {
    await destroy().catch(() => undefined);
    throw err;
  }

  // `ip netns exec` execs the command in place, so the child's pid is keyway's own.
  const startKeyway = (ns: string, args: string[]): Running => startProcess("ip", ["netns", "exec", ns, process.execPath, KEYWAY_BIN, ...args]);

  const forward = async (host: string, port: number): Promise<number> => {
    const path = join(dir, `relay-${relays.length}.sock`);
    const child = spawn("ip", ["netns", "exec", hub, process.execPath, "-e", RELAY, path, host, String(port)], { stdio: ["ignore", "pipe", "pipe"] });
    let said = "";
    child.stdout!.setEncoding("utf8").on("data", (d: string) => (said += d));
    child.stderr!.setEncoding("utf8").on("data", (d: string) => (said += d));
    const sockets = new Set<Socket>();
    const server = createServer((outside) => {
      const inside = connect(path);
      sockets.add(outside).add(inside);
      const end = () => {
        outside.destroy();
        inside.destroy();
        sockets.delete(outside);
        sockets.delete(inside);
      };
      for (const s of [outside, inside]) s.on("error", end).on("close", end);
      outside.pipe(inside);
      inside.pipe(outside);
    });
    relays.push({ server, child, sockets });
    await waitFor(`the relay to ${host}:${port} in ${hub}`, () => {
      if (child.exitCode !== null) throw new Error(`the relay to ${host}:${port} exited: ${said}`);
      return said.includes("ready") ? true : undefined;
    }, 10_000);
    return new Promise((resolvePort, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolvePort((server.address() as { port: number }).port));
    });
  };

  const portState = async (i: number, state: "0" | "3") => {
    await iproute("bridge", ["-n", hub, "link", "set", "dev", nodes[i]!.port, "state", state]);
  };

  return {
    hub,
    hubIp: `${SUBNET}.${HUB_HOST}`,
    nodes,
    startKeyway,
    forward,
    // Port state 0 is "disabled" (no frame in or out), 3 "forwarding"; with STP off they stay as set.
    cut: (i) => portState(i, "0"),
    heal: (i) => portState(i, "3"),
    destroy,
  };
}
