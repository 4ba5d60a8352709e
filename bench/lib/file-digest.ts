/** Line count and content hash of a file in one streaming pass, to compare two programs' outputs. */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";

export interface FileDigest {
  lines: number;
  bytes: number;
  sha256: string;
}

const NEWLINE = 0x0a;

export async function digestFile(path: string): Promise<FileDigest> {
  const hash = createHash("sha256");
  let lines = 0;
  let bytes = 0;
  let lastByte = NEWLINE;
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
    hash.update(chunk);
    bytes += chunk.length;
    for (let i = chunk.indexOf(NEWLINE); i !== -1; i = chunk.indexOf(NEWLINE, i + 1)) lines++;
    lastByte = chunk[chunk.length - 1]!;
  }
  // A final line without its newline is still a line.
  if (bytes > 0 && lastByte !== NEWLINE) lines++;
  return { lines, bytes, sha256: hash.digest("hex") };
}
