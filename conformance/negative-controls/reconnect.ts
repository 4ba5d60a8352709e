// The session loop the negative controls share, done right: configuration errors (and unknown
// codes whose status says so) end the process with exit 1; Redirect is followed at once; every other
// ending reconnects after a full-jitter exponential backoff (100 ms doubling to 5 s, reset by a
// session that stayed up 5 s), to the next address the last Welcome listed when the worker is
// unreachable. docs/protocol.md §11 and §13.
import { status as GrpcStatus } from "@grpc/grpc-js";
import { ErrorCode, ErrorCode as Code } from "../../src/protocol/gen/keyway/v1/connector_pb.ts";

export type SessionOutcome =
  | { kind: "done" }
  | { kind: "welcomed" }
  | { kind: "error"; code: number; message: string; status?: number }
  | { kind: "redirect"; address: string }
  | { kind: "status"; status: number; welcomed: boolean };

const FATAL_CODES = new Set<number>([Code.UNAUTHENTICATED, Code.UNSUPPORTED_VERSION, Code.UNKNOWN_TARGET, Code.STREAM_OWNED, Code.SESSION_REPLACED]);
const BASE_MS = 100;
const CAP_MS = 5_000;

/** A session dials `address`, calls `learn` with its Welcome's cluster_addresses, and resolves with how it ended. */
export async function runWithReconnects(
  configured: string,
  session: (address: string, learn: (clusterAddresses: readonly string[]) => void) => Promise<SessionOutcome>,
  { failover = true } = {},
): Promise<number> {
  let address = configured;
  let cluster: readonly string[] = [];
  const learn = (addresses: readonly string[]): void => {
    if (addresses.length > 0) cluster = addresses;
  };
  let attempt = 0;
  for (;;) {
    const started = Date.now();
    const outcome = await session(address, learn);
    if (outcome.kind === "done") return 0;
    if (outcome.kind === "redirect") {
      address = outcome.address;
      continue;
    }
    if (outcome.kind === "error" && isFatal(outcome.code, outcome.status)) {
      process.stderr.write(`negative control: configuration error ${ErrorCode[outcome.code] ?? outcome.code}: ${outcome.message}\n`);
      return 1;
    }
    if (outcome.kind === "status" && (outcome.status === GrpcStatus.UNAUTHENTICATED || outcome.status === GrpcStatus.NOT_FOUND)) {
      process.stderr.write(`negative control: the session ended with status ${GrpcStatus[outcome.status]}\n`);
      return 1;
    }
    if (Date.now() - started >= CAP_MS) attempt = 0;
    address = failover && workerLost(outcome) ? nextAddress([...new Set([configured, ...cluster])], address) : configured;
    await new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(CAP_MS, BASE_MS * 2 ** attempt)));
    attempt++;
  }
}

/** R-FAILOVER: no Error at all, or SHUTTING_DOWN, means the worker is gone or going. */
function workerLost(outcome: SessionOutcome): boolean {
  return outcome.kind === "status" || (outcome.kind === "error" && outcome.code === Code.SHUTTING_DOWN);
}

function nextAddress(known: readonly string[], current: string): string {
  return known[(known.indexOf(current) + 1) % known.length]!;
}

/** A known fatal code; a code unknown to 1.0 is judged by the status the call ended with. */
function isFatal(code: number, status: number | undefined): boolean {
  if (ErrorCode[code] === undefined) return status === GrpcStatus.UNAUTHENTICATED || status === GrpcStatus.NOT_FOUND;
  return FATAL_CODES.has(code);
}
