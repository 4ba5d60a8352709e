/** Runs the conformance cases against real processes (connectors, engines), for the tests. */
import { connect } from "node:net";
import { join } from "node:path";
import { loadCases, loadFixture, runConnectorSuite, type CaseResult, type RunSummary } from "../../../src/conformance/index.ts";
import type { Role } from "../../../src/conformance/wire.ts";
import { KEYWAY_BIN, ROOT, scratchDir, waitFor } from "../../helpers/process.ts";

export const NODE_TSX = [process.execPath, "--import", "tsx"];
export const KEYWAY = [process.execPath, KEYWAY_BIN];

export function fixturePath(relative: string): string {
  return join(ROOT, "conformance", relative);
}

export async function runSuite(role: Role, command: string[], fixture?: string): Promise<RunSummary> {
  return runConnectorSuite(
    { role, command, fixture: loadFixture(fixture === undefined ? undefined : fixturePath(fixture)), token: `t-${role}-token`, workdirBase: scratchDir(`conformance-${role}`) },
    loadCases(role),
  );
}

/** Resolves once an engine (ours or a control) accepts connections at HOST:PORT. */
export function waitListening(address: string, timeoutMs: number): Promise<true> {
  return waitFor(`the engine to listen on ${address}`, () => listening(address), timeoutMs);
}

function listening(address: string): Promise<true | undefined> {
  const [host, port] = address.split(":");
  return new Promise((resolve) => {
    const socket = connect(Number(port), host!, () => {
      socket.destroy();
      resolve(true);
    });
    socket.on("error", () => resolve(undefined));
  });
}

/** "id: reason" of every case that did not pass or skip, for assertion messages. */
export function failures(summary: RunSummary): string[] {
  return summary.results.filter((r) => r.status === "fail" || r.status === "error").map(line);
}

export function ids(results: CaseResult[], status: CaseResult["status"]): string[] {
  return results.filter((r) => r.status === status).map((r) => r.id);
}

function line(r: CaseResult): string {
  return `${r.id} [${r.status}]: ${r.reason}`;
}
