// Preload (node --import) used only when /usr/bin/time is missing: the process writes its own peak
// RSS in KiB and CPU seconds, like GNU time's "%M %U %S", to the file named by KEYWAY_BENCH_USAGE_FILE
// when it exits.
import { writeFileSync } from "node:fs";

const file = process.env.KEYWAY_BENCH_USAGE_FILE;
if (file) {
  process.on("exit", () => {
    const usage = process.resourceUsage();
    writeFileSync(file, `${usage.maxRSS} ${usage.userCPUTime / 1e6} ${usage.systemCPUTime / 1e6}\n`);
  });
}
