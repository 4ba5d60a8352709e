/**
 * `file:PATH` (relative or absolute, taken literally) or `file:///abs/path` (a file URL,
 * percent-decoded).
 */
import { fileURLToPath } from "node:url";
import type { ConnectorScheme } from "../scheme.ts";
import { badUri } from "../uri.ts";
import { directorySource, isDirectory } from "./directory-source.ts";
import { fileSink } from "./file-sink.ts";
import { fileSource } from "./file-source.ts";

export interface FileUri {
  scheme: "file";
  path: string;
}

export const fileScheme: ConnectorScheme<FileUri> = {
  schemes: ["file"],
  forms: ["file:PATH"],
  description: "lines of text in files",
  asSource: "reads lines (UTF-8, `\\n` or `\\r\\n`); finite; a directory: every regular file in it",
  asSink: "appends one line per record",
  parse: (uri, _scheme, rest) => ({ scheme: "file", path: parseFilePath(uri, rest) }),
  source(parsed, _uri, options) {
    const fileOptions = { maxLineBytes: options.maxFrameBytes };
    return isDirectory(parsed.path) ? directorySource(parsed.path, fileOptions) : fileSource(parsed.path, fileOptions);
  },
  sink: (parsed) => fileSink(parsed.path),
};

function parseFilePath(uri: string, rest: string): string {
  if (!rest.startsWith("//")) {
    if (rest === "") throw badUri(uri, "empty path");
    return rest;
  }
  if (rest === "//" || rest === "///") throw badUri(uri, "empty path");
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw badUri(uri, "not a valid file URL; use file:///absolute/path or file:PATH");
  }
  if (url.search !== "" || url.hash !== "") throw badUri(uri, "a file URL takes no query or fragment");
  if (url.host !== "" && url.host !== "localhost") {
    throw badUri(uri, `a file URL names no host (got "${url.host}"); use file:///absolute/path`);
  }
  try {
    return fileURLToPath(url);
  } catch (err) {
    throw badUri(uri, err instanceof Error ? err.message : String(err));
  }
}
