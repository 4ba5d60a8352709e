/**
 * Runs `keyway conformance ...` through its own command definition, in a process of its own, for
 * the tests (and by hand: node --import tsx test/conformance/helpers/conformance-cli.ts ARGS).
 * Once src/cli/main.ts adds the command, `node bin/keyway.js conformance ARGS` is the same thing.
 */
import { Command, CommanderError } from "commander";
import { addConformanceCommand } from "../../../src/cli/conformance-command.ts";
import { isKeywayError } from "../../../src/errors.ts";

const program = new Command("keyway").exitOverride();
let exitCode = 0;
addConformanceCommand(program, (code) => (exitCode = code));
try {
  await program.parseAsync(process.argv.slice(2), { from: "user" });
} catch (err) {
  if (err instanceof CommanderError) exitCode = err.exitCode === 0 ? 0 : 2;
  else {
    process.stderr.write(`keyway: error: ${(err as Error).message}\n`);
    exitCode = isKeywayError(err) && err.code === "USAGE" ? 2 : 1;
  }
}
process.exit(exitCode);
