/** What the results were measured on, so figures from different machines are not compared blindly. */
import { execFileSync } from "node:child_process";
import { cpus, platform, release, totalmem } from "node:os";
import type { Machine, RunReport } from "./report.ts";
import { rssMethod } from "./child.ts";

export function machineInfo(): Machine {
  const cpuList = cpus();
  return {
    node: process.version,
    v8: process.versions.v8,
    platform: platform(),
    kernel: release(),
    cpuModel: cpuList[0]?.model.trim() ?? "unknown",
    cores: cpuList.length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    rssMethod: rssMethod === "gnu-time" ? "GNU time %M" : "process.resourceUsage().maxRSS",
  };
}

const ENGINE_PATHS = ["src", "connectors", "bin"];

function git(root: string, args: string[]): string | null {
  try {
    return execFileSync("git", args, { cwd: root, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return null;
  }
}

/**
 * The commit measured, and whether tracked engine sources differed from it. Untracked files are
 * left out: work in progress that nothing committed imports cannot change what ran.
 */
export function gitInfo(root: string): RunReport["git"] {
  const commit = git(root, ["rev-parse", "HEAD"]);
  const status = git(root, ["status", "--porcelain", "--untracked-files=no", "--", ...ENGINE_PATHS]);
  return { commit, engineDirty: status === null ? null : status.length > 0 };
}

/** Others may commit or edit while the bench runs: dirty if either end of the run saw engine changes. */
export function mergeGitInfo(root: string, atStart: RunReport["git"], atEnd: RunReport["git"]): RunReport["git"] {
  // A commit landing mid-run only matters if it touched the engine; --quiet prints nothing, so
  // null (git's non-zero exit) means the paths differ.
  const moved = atStart.commit !== atEnd.commit
    && (atStart.commit === null || atEnd.commit === null
      || git(root, ["diff", "--quiet", atStart.commit, atEnd.commit, "--", ...ENGINE_PATHS]) === null);
  const dirty = atStart.engineDirty === null || atEnd.engineDirty === null ? null : atStart.engineDirty || atEnd.engineDirty || moved;
  return { commit: atStart.commit, engineDirty: dirty };
}
