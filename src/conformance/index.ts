// The protocol conformance suite (docs/conformance.md): cases as data in conformance/cases, run
// against a connector (the harness plays the engine) or against an engine (it plays connectors).
export { loadCases, selectCases, type ConformanceCase, type CaseRole, type Level } from "./case.ts";
export { loadFixture, type Fixture } from "./fixture.ts";
export { exitCodeOf, runVerdict, summarize, type CaseResult, type CaseStatus, type RunSummary, type RunVerdict, type SkipKind } from "./result.ts";
export { runConnectorSuite } from "./connector/run-connector-suite.ts";
export type { ConnectorTarget } from "./connector/case-run.ts";
export { runEngineSuite, type EngineTarget } from "./engine/run-engine-suite.ts";
export { formatTable, formatList, tableHeader, tableRow, summaryLine } from "./report/table.ts";
export { formatJunit } from "./report/junit.ts";
export { formatJson } from "./report/json.ts";
