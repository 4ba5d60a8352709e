#!/usr/bin/env node
// Registers tsx so the CLI and user apps written in TypeScript load without a build step.
import { register } from "tsx/esm/api";

register();
const { main } = await import("../src/cli/main.ts");
process.exitCode = await main(process.argv.slice(2));
