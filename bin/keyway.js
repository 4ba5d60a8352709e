#!/usr/bin/env node
// Registers tsx so the CLI and user apps written in TypeScript load without a build step.
import { register } from "tsx/esm/api";

register();
// grpc-js sets the TLS server name to the host it dials, an IP address too (127.0.0.1), and Node
// warns once per process that RFC 6066 does not allow it (DEP0123). Certificates are still checked
// against the address; the line only alarms users, so the CLI drops that one warning.
const emitWarning = process.emitWarning;
process.emitWarning = function (warning, ...rest) {
  const code = typeof rest[0] === "object" && rest[0] !== null ? rest[0].code : rest[1];
  if (code === "DEP0123") return;
  return emitWarning.call(process, warning, ...rest);
};
const { main } = await import("../src/cli/main.ts");
process.exitCode = await main(process.argv.slice(2));
