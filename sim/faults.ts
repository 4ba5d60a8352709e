/** The faults of one seed, drawn before it runs: what happens, when, to which worker (by its place among the live ones then). */
import type { Random } from "./random.ts";

export type Fault =
  | { at: number; kind: "crash"; pick: number }
  | { at: number; kind: "crash-two"; pick: number }
  | { at: number; kind: "pause"; pick: number; forMs: number }
  | { at: number; kind: "partition"; pick: number; forMs: number }
  | { at: number; kind: "break-link" }
  | { at: number; kind: "slow"; extraMs: number; forMs: number }
  | { at: number; kind: "join" }
  | { at: number; kind: "leave"; pick: number };

export type Mode = "safe" | "overload";

export function drawFaults(random: Random, mode: Mode, failureTimeoutMs: number, untilMs: number): Fault[] {
  const faults: Fault[] = [];
  let at = random.int(100, 600);
  while (at < untilMs) {
    const roll = random.next();
    const pick = random.int(0, 1000);
    // Past the failure timeout (the worker is declared dead) or well within it (nobody notices).
    const outage = () => (random.chance(0.5) ? random.int(failureTimeoutMs + 300, failureTimeoutMs * 3) : random.int(50, failureTimeoutMs / 3));
    if (roll < 0.2) faults.push({ at, kind: mode === "overload" && random.chance(0.5) ? "crash-two" : "crash", pick });
    else if (roll < 0.32) faults.push({ at, kind: "pause", pick, forMs: outage() });
    else if (roll < 0.44) faults.push({ at, kind: "partition", pick, forMs: outage() });
    else if (roll < 0.64) faults.push({ at, kind: "break-link" });
    else if (roll < 0.72) faults.push({ at, kind: "slow", extraMs: random.int(5, 80), forMs: random.int(100, 800) });
    else if (roll < 0.88) faults.push({ at, kind: "join" });
    else faults.push({ at, kind: "leave", pick });
    at += random.int(50, 700);
  }
  return faults;
}

export function describeFault(f: Fault): string {
  const { at, kind, ...rest } = f;
  const args = Object.entries(rest).map(([k, v]) => `${k}=${v}`).join(" ");
  return `${String(at).padStart(5)} ms ${kind}${args === "" ? "" : ` ${args}`}`;
}
