/** Checks that the names bound on the command line and the names the app uses agree. */
import type { AppSpec } from "../app/spec.ts";
import { ErrorCode, KeywayError } from "../errors.ts";

export function appSourceNames(app: AppSpec): string[] {
  return app.pipelines.map((p) => p.source.name);
}

export function appSinkNames(app: AppSpec): string[] {
  return [...new Set(app.pipelines.map((p) => p.sink.name))];
}

function check(kind: "source" | "sink", used: string[], bound: Iterable<string>): void {
  const boundSet = new Set(bound);
  for (const name of boundSet) {
    if (!used.includes(name)) {
      const known = used.length > 0 ? used.join(", ") : "none";
      throw new KeywayError(ErrorCode.UNKNOWN_NAME, `unknown ${kind} "${name}": the app's ${kind}s are ${known}`);
    }
  }
  for (const name of used) {
    if (!boundSet.has(name)) {
      throw new KeywayError(ErrorCode.UNBOUND_NAME, `${kind} "${name}" is not bound: add --${kind} ${name}=URI`);
    }
  }
}

export function checkBindings(app: AppSpec, sources: Iterable<string>, sinks: Iterable<string>): void {
  check("source", appSourceNames(app), sources);
  check("sink", appSinkNames(app), sinks);
}
