/** JUnit XML, for CI systems: one testsuite per run, one testcase per case. */
import type { RunSummary } from "../result.ts";

export function formatJunit(summary: RunSummary, suiteName: string): string {
  const seconds = (ms: number) => (ms / 1000).toFixed(3);
  const totalMs = summary.results.reduce((t, r) => t + r.durationMs, 0);
  const lines = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="keyway-conformance" tests="${summary.results.length}" failures="${summary.failed}" errors="${summary.errored}" skipped="${summary.skipped}" time="${seconds(totalMs)}">`,
    `  <testsuite name="${xml(suiteName)}" tests="${summary.results.length}" failures="${summary.failed}" errors="${summary.errored}" skipped="${summary.skipped}" time="${seconds(totalMs)}">`,
    `    <properties><property name="subject" value="${xml(summary.subject)}"/></properties>`,
  ];
  for (const r of summary.results) {
    const open = `    <testcase classname="keyway.conformance.${xml(r.role)}" name="${xml(`${r.id} [${r.requirement} ${r.level}]`)}" time="${seconds(r.durationMs)}"`;
    if (r.status === "pass") {
      lines.push(`${open}/>`);
      continue;
    }
    lines.push(`${open}>`);
    if (r.status === "fail") lines.push(`      <failure message="${xml(r.reason)}" type="${r.level}">${xml(`${r.title}\n${r.reason}`)}</failure>`);
    if (r.status === "error") lines.push(`      <error message="${xml(r.reason)}">${xml(r.reason)}</error>`);
    if (r.status === "skip") lines.push(`      <skipped message="${xml(r.reason)}"/>`);
    lines.push("    </testcase>");
  }
  lines.push("  </testsuite>", "</testsuites>", "");
  return lines.join("\n");
}

function xml(text: string): string {
  // Characters XML 1.0 cannot hold at all are dropped; the rest are escaped.
  return text
    .replace(/[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu, "")
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;");
}
