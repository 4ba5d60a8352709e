/** Loads the user's app module: its default export must be a pipeline or an app. */
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { toAppSpec } from "../app/pipeline.ts";
import type { AppSpec } from "../app/spec.ts";
import { ErrorCode, KeywayError, isKeywayError } from "../errors.ts";

export async function loadApp(path: string): Promise<AppSpec> {
  const file = resolve(path);
  if (!existsSync(file)) throw new KeywayError(ErrorCode.FILE_NOT_FOUND, `app module not found: ${path}`);
  let mod: { default?: unknown };
  try {
    mod = await import(pathToFileURL(file).href);
  } catch (err) {
    if (isKeywayError(err)) throw err;
    // Compilers report over several lines; the CLI promises one.
    const reason = String((err as Error).message ?? err).replace(/\s*\n\s*/g, " ");
    throw new KeywayError(ErrorCode.BAD_APP, `cannot load app ${path}: ${reason}`, { cause: err });
  }
  const spec = toAppSpec(mod.default);
  if (spec === undefined) {
    throw new KeywayError(
      ErrorCode.BAD_APP,
      `app module ${path} exports no pipeline: its default export must be pipeline(...)...sink(...) or app(...)`,
    );
  }
  return spec;
}
