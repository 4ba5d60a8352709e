import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { CONNECTOR_SCHEMES, connectorForms, parseConnectorUri } from "../../connectors/index.ts";
import { ErrorCode } from "../../src/errors.ts";
import { README, withConnectorTable } from "../../scripts/connector-table.ts";
import { runKeyway } from "../helpers/process.ts";

const ALL_SCHEMES = CONNECTOR_SCHEMES.flatMap((s) => s.schemes);

describe("the connector registry", () => {
  it("is importable from the package as keyway/connectors", async () => {
    const published = await import("keyway/connectors");
    expect(published.CONNECTOR_SCHEMES).toBe(CONNECTOR_SCHEMES);
    expect(typeof published.sourceFromUri).toBe("function");
    expect(typeof published.sinkFromUri).toBe("function");
  });

  it("gives each scheme to one module, with one form per scheme", () => {
    expect(new Set(ALL_SCHEMES).size).toBe(ALL_SCHEMES.length);
    for (const module of CONNECTOR_SCHEMES) {
      expect(module.forms.map((f) => f.slice(0, f.indexOf(":")))).toEqual(module.schemes);
    }
  });

  it("names every scheme of the table for an unknown one, and every form for a URI without one", () => {
    expect(() => parseConnectorUri("gopher://host:70")).toThrow(
      expect.objectContaining({ code: ErrorCode.BAD_URI, message: `malformed URI "gopher://host:70": unknown scheme "gopher"; known schemes: ${ALL_SCHEMES.join(", ")}` }),
    );
    expect(() => parseConnectorUri("in.txt")).toThrow(
      expect.objectContaining({ message: `malformed URI "in.txt": no scheme; expected one of ${connectorForms().join(", ")}` }),
    );
  });

  it("is what the README's connector table says (run `node --import tsx scripts/connector-table.ts` after changing a scheme)", () => {
    const readme = readFileSync(README, "utf8");
    expect(readme).toBe(withConnectorTable(readme));
    for (const form of connectorForms()) expect(readme).toContain(`\`${form}\``);
  });

  it("is what `keyway run --help` lists for --source and --sink", async () => {
    const { stdout, stderr } = await runKeyway(["run", "--help"]);
    const help = (stdout + stderr).replace(/\s+/g, " ");
    const list = [...connectorForms(), "connector"].join(", ");
    expect(help).toContain(`bind a source: ${list}`);
    expect(help).toContain(`bind a sink: ${list}`);
  });
});
