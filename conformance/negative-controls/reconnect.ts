// The session loop the negative controls share, done right: configuration errors (and unknown
// codes whose status says so) end the process with exit 1; Redirect is followed at once; every other
// ending reconnects after a full-jitter exponential backoff (100 ms doubling to 5 s, reset by a
// session that stayed up 5 s). docs/protocol.md §11 and §13.
import { status as GrpcStatus } from "@grpc/grpc-js";
import { ErrorCode, ErrorCode as Code } from "../../src/protocol/gen/keyway/v1/connector_pb.ts";

export type SessionOutcome =
  | { kind: "done" }
  | { kind: "welcomed" }
  | { kind: "error"; code: number; message: string; status?: number }
  | { kind: "redirect"; address: string }
  | { kind: "status"; status: number; welcomed: boolean };

const FATAL_CODES = new Set<number>([Code.UNAUTHENTICATED, Code.UNSUPPORTED_VERSION, Code.UNKNOWN_TARGET]);
const BASE_MS = 100;
const CAP_MS = 5_000;

export async function runWithReconnects(configured: string, session: (address: string) => Promise<SessionOutcome>): Promise<number> {
  let address = configured;
  let attempt = 0;
  for (;;) {
    const started = Date.now();
    const outcome = await session(address);
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
    address = configured;
    await new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(CAP_MS, BASE_MS * 2 ** attempt)));
    attempt++;
  }
}

/** A known fatal code; a code unknown to 1.0 is judged by the status the call ended with. */
function isFatal(code: number, status: number | undefined): boolean {
  if (ErrorCode[code] === undefined) return status === GrpcStatus.UNAUTHENTICATED || status === GrpcStatus.NOT_FOUND;
  return FATAL_CODES.has(code);
}
