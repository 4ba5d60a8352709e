// The word-count baseline: what a competent Node programmer writes without an engine. One
// synchronous loop reads the file by chunks, splits lines exactly as examples/word-count/app.ts
// does, counts in a Map and writes "<word> <running count>" lines through a large buffer.
// It is meant to be fast, not a straw man: the engine's ratio is measured against it.
//
// usage: node naive-wordcount.mjs INPUT OUTPUT
import { closeSync, openSync, readSync, writeSync } from "node:fs";
import { StringDecoder } from "node:string_decoder";

const [input, output] = process.argv.slice(2);
if (!input || !output) {
  process.stderr.write("usage: node naive-wordcount.mjs INPUT OUTPUT\n");
  process.exit(2);
}

const CHUNK_BYTES = 1 << 20;
const FLUSH_CHARS = 1 << 20;
const SEPARATORS = /[^\p{L}\p{N}]+/u;

const counts = new Map();
const inFd = openSync(input, "r");
// Appends, like the engine's file sink; the caller deletes the output first.
const outFd = openSync(output, "a");
const decoder = new StringDecoder("utf8");
const chunk = Buffer.allocUnsafe(CHUNK_BYTES);
let carry = "";
let out = "";
let words = 0;

function countLine(line) {
  for (const word of line.toLowerCase().split(SEPARATORS).filter(Boolean)) {
    const count = (counts.get(word) ?? 0) + 1;
    counts.set(word, count);
    out += `${word} ${count}\n`;
    words++;
  }
  if (out.length >= FLUSH_CHARS) {
    writeSync(outFd, out);
    out = "";
  }
}

for (;;) {
  const read = readSync(inFd, chunk, 0, CHUNK_BYTES, null);
  if (read === 0) break;
  const lines = (carry + decoder.write(chunk.subarray(0, read))).split("\n");
  carry = lines.pop();
  for (const line of lines) countLine(line.endsWith("\r") ? line.slice(0, -1) : line);
}
carry += decoder.end();
if (carry.length > 0) countLine(carry);
writeSync(outFd, out);
closeSync(outFd);
closeSync(inFd);
process.stderr.write(`naive-wordcount: ${words} words, ${counts.size} distinct\n`);
