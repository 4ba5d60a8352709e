/**
 * `keyway conformance`: the protocol conformance suite (docs/conformance.md).
 *   keyway conformance source|sink|partitioner [options] -- COMMAND [ARGS...]
 *     plays the engine for a connector started as COMMAND, and judges it;
 *   keyway conformance engine --target HOST:PORT [--token T] [--source N] [--sink N] [--partitioner N]
 *     plays connectors against a running engine, and judges it.
 * Exit code 0 when it conforms, 1 when a MUST case fails, 2 on bad usage, 3 when no MUST case
 * failed but some were not run (skipped for want of a fixture field or a flag): no verdict.
 */
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import type { Command } from "commander";
import type { CaseRole, CaseResult, RunSummary } from "../conformance/index.ts";

/** The harness (gRPC, protobuf) loads only when the suite runs, to keep other commands' start-up short. */
type Harness = typeof import("../conformance/index.ts") & typeof import("../conformance/connector/connector-process.ts");

async function loadHarness(): Promise<Harness> {
  const [index, processes] = await Promise.all([import("../conformance/index.ts"), import("../conformance/connector/connector-process.ts")]);
  return { ...index, ...processes };
}
import { ErrorCode, KeywayError } from "../errors.ts";
import { clientTlsFromFlags, serverTlsFromFlags } from "../rpc/tls.ts";

interface ConformanceFlags {
  list?: boolean;
  json?: boolean;
  junit?: string;
  case: string[];
  fixture?: string;
  target?: string;
  token?: string;
  source?: string;
  sink?: string;
  partitioner?: string;
  workdir?: string;
  keepWorkdirs?: boolean;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsClientCa?: string;
}

const ROLES: readonly CaseRole[] = ["source", "sink", "partitioner", "engine"];

export function addConformanceCommand(program: Command, setExitCode: (code: number) => void): void {
  program
    .command("conformance")
    .description("Check that a connector (in any language) or an engine keeps the connector protocol's promises.")
    .argument("<role>", "source, sink or partitioner (a connector started as COMMAND), or engine (a running engine at --target)")
    .argument("[command...]", "the connector's command and arguments, after --; {engine}, {token}, {target} and {workdir} are replaced")
    .option("--list", "print the cases and exit")
    .option("--json", "print the results as JSON instead of a table")
    .option("--junit <file>", "also write the results as JUnit XML")
    .option("--case <id...>", "run only these cases (a trailing * matches a prefix)", [])
    .option("--fixture <file>", "connector modes: the connector's fixture (JSON): its upstream records, how to read its acks or writes")
    .option("--target <host:port>", "engine mode: the engine's connector address")
    .option("--token <token>", "engine mode: the engine's token; connector modes: the token to hand the connector (default: random)")
    .option("--source <name>", "engine mode: a source bound to `connector` in the engine's app")
    .option("--sink <name>", "engine mode: a sink bound to `connector`, fed by --source")
    .option("--partitioner <name>", "engine mode: the partitioner on the way from --source to --sink")
    .option("--workdir <dir>", "connector modes: where each case gets its {workdir} (default: the system temporary directory)")
    .option("--keep-workdirs", "connector modes: keep each case's {workdir} afterwards")
    .option("--tls-ca <file>", "engine mode: dial the engine over TLS, trusting this CA (PEM)")
    .option("--tls-cert <file>", "engine mode: the client certificate for mutual TLS; connector modes: serve the scripted engine over TLS with this certificate (PEM, with --tls-key)")
    .option("--tls-key <file>", "the private key of --tls-cert (PEM)")
    .option("--tls-client-ca <file>", "connector modes: require the connector's client certificate, signed by this CA (mutual TLS; PEM)")
    .action(async (role: string, command: string[], flags: ConformanceFlags) => {
      setExitCode(await conformance(role, command, flags));
    });
}

/** Ctrl-C or SIGTERM: the connectors under test run in process groups of their own and must go too. */
function exitOnSignal(c: Harness): () => void {
  const onSignal = (): void => {
    c.killAllConnectors();
    process.exit(130);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  return () => {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  };
}

async function conformance(roleArg: string, command: string[], flags: ConformanceFlags): Promise<number> {
  if (!ROLES.includes(roleArg as CaseRole)) throw new KeywayError(ErrorCode.USAGE, `the role must be one of ${ROLES.join(", ")}, got "${roleArg}"`);
  const role = roleArg as CaseRole;
  const c = await loadHarness();
  const cases = selectCasesOrUsage(c, role, flags.case);
  if (flags.list === true) {
    process.stdout.write(c.formatList(cases));
    return 0;
  }
  const stream = flags.json !== true;
  if (stream) process.stdout.write(c.tableHeader());
  const onResult = (result: CaseResult) => {
    if (stream) process.stdout.write(c.tableRow(result));
  };
  let summary: RunSummary;
  if (role === "engine") {
    if (command.length > 0) throw new KeywayError(ErrorCode.USAGE, "engine mode takes no command; give the engine's address with --target");
    if (flags.target === undefined) throw new KeywayError(ErrorCode.USAGE, "engine mode needs --target HOST:PORT, the running engine's connector address");
    if (flags.tlsClientCa !== undefined) throw new KeywayError(ErrorCode.USAGE, "--tls-client-ca is for connector modes; in engine mode give the harness's certificate with --tls-cert and --tls-key");
    const tls = clientTlsFromFlags(flags);
    summary = await c.runEngineSuite(
      { address: flags.target, token: flags.token ?? process.env.KEYWAY_TOKEN, source: flags.source, sink: flags.sink, partitioner: flags.partitioner, ...(tls === undefined ? {} : { tls }) },
      cases,
      onResult,
    );
  } else {
    if (command.length === 0) throw new KeywayError(ErrorCode.USAGE, `give the connector's command after --, e.g. keyway conformance ${role} -- python3 my_${role}.py --engine {engine}`);
    if (flags.target !== undefined) throw new KeywayError(ErrorCode.USAGE, "--target is for engine mode; a connector's target name comes from its fixture (\"target\")");
    if (flags.tlsCa !== undefined) throw new KeywayError(ErrorCode.USAGE, "--tls-ca is for engine mode; in connector modes give the connector its CA in its own command");
    const tls = serverTlsFromFlags(flags);
    const fixture = c.loadFixture(flags.fixture);
    if (fixture.fixture.role !== undefined && fixture.fixture.role !== role) {
      throw new KeywayError(ErrorCode.USAGE, `the fixture ${flags.fixture} is for a ${fixture.fixture.role}, not a ${role}`);
    }
    const restoreSignals = exitOnSignal(c);
    summary = await c.runConnectorSuite(
      {
        role,
        command,
        fixture,
        token: flags.token ?? randomBytes(12).toString("hex"),
        workdirBase: flags.workdir,
        keepWorkdirs: flags.keepWorkdirs === true,
        ...(tls === undefined ? {} : { tls }),
      },
      cases,
      onResult,
    ).finally(restoreSignals);
  }
  if (stream) process.stdout.write(`\n${c.summaryLine(summary)}`);
  else process.stdout.write(c.formatJson(summary));
  if (flags.junit !== undefined) writeFileSync(flags.junit, c.formatJunit(summary, `keyway-conformance-${role}`));
  return c.exitCodeOf(summary);
}

function selectCasesOrUsage(c: Harness, role: CaseRole, selectors: string[]) {
  try {
    return c.selectCases(c.loadCases(role), selectors);
  } catch (err) {
    throw new KeywayError(ErrorCode.USAGE, (err as Error).message);
  }
}
