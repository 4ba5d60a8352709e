import { Buffer } from "node:buffer";
import { describe, expect, it } from "vitest";
import {
  encodeLengthPrefixedFrames,
  encodeNewlineFrames,
  lengthPrefixedDecoder,
  newlineDecoder,
} from "../../connectors/tcp/framing.ts";
import type { FrameDecoder } from "../../connectors/tcp/framing.ts";
import { ErrorCode, KeywayError } from "../../src/errors.ts";

const LINES = ["hello", "", "héllo wörld", "日本語のテキスト", "emoji 🎉🚀 end", "", "last"];

function feed<T extends string | Uint8Array>(decoder: FrameDecoder<T>, bytes: Uint8Array, pieceBytes: number): T[] {
  const out: T[] = [];
  for (let offset = 0; offset < bytes.length; offset += pieceBytes) {
    decoder.push(bytes.subarray(offset, offset + pieceBytes), out);
  }
  decoder.end(out);
  return out;
}

function expectKeywayError(action: () => void, code: string): KeywayError {
  let caught: unknown;
  try {
    action();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(KeywayError);
  expect((caught as KeywayError).code).toBe(code);
  return caught as KeywayError;
}

describe("newline framing", () => {
  const encoded = encodeNewlineFrames(LINES);

  it("encodes lines as UTF-8 each followed by a newline", () => {
    expect(encoded.toString("utf8")).toBe(LINES.join("\n") + "\n");
  });

  it.each([1, 2, 3, 5, 7, 64 * 1024])("decodes fed in pieces of %i bytes", (pieceBytes) => {
    expect(feed(newlineDecoder(), encoded, pieceBytes)).toEqual(LINES);
  });

  it("drops the carriage return of CRLF line endings, also when split from its newline", () => {
    const bytes = Buffer.from("a\r\nb\r\n\r\nc\r");
    expect(feed(newlineDecoder(), bytes, 1)).toEqual(["a", "b", "", "c"]);
    expect(feed(newlineDecoder(), bytes, bytes.length)).toEqual(["a", "b", "", "c"]);
  });

  it("emits a final line without newline at end of stream", () => {
    expect(feed(newlineDecoder(), Buffer.from("one\ntwo"), 2)).toEqual(["one", "two"]);
  });

  it("does not keep a reference to the caller's chunk", () => {
    const decoder = newlineDecoder();
    const out: string[] = [];
    const chunk = Buffer.from("abc");
    decoder.push(chunk, out);
    chunk.fill(0x78);
    decoder.push(Buffer.from("\n"), out);
    expect(out).toEqual(["abc"]);
  });

  it("encodes byte values raw and mixes them with strings", () => {
    const bytes = encodeNewlineFrames(["a", new Uint8Array([0x62, 0x63]), "é"]);
    expect(bytes.toString("utf8")).toBe("a\nbc\né\n");
  });

  it("fails with FRAME_TOO_LARGE as soon as an unterminated line passes the limit", () => {
    const decoder = newlineDecoder(8);
    const out: string[] = [];
    decoder.push(Buffer.from("ok\n1234"), out);
    expect(out).toEqual(["ok"]);
    const err = expectKeywayError(() => decoder.push(Buffer.from("56789"), out), ErrorCode.FRAME_TOO_LARGE);
    expect(err.message).toContain("maxFrameBytes 8");
  });

  it("accepts a line exactly at the limit and rejects one byte more, keeping the lines before it", () => {
    const out: string[] = [];
    const decoder = newlineDecoder(8);
    expectKeywayError(() => decoder.push(Buffer.from("12345678\nshort\n123456789\nafter\n"), out), ErrorCode.FRAME_TOO_LARGE);
    expect(out).toEqual(["12345678", "short"]);
  });

  it("fed byte by byte, rejects the oversized line before its newline arrives", () => {
    const decoder = newlineDecoder(4);
    const out: string[] = [];
    for (const byte of Buffer.from("abcd")) decoder.push(Uint8Array.of(byte), out);
    expectKeywayError(() => decoder.push(Buffer.from("e"), out), ErrorCode.FRAME_TOO_LARGE);
    expect(out).toEqual([]);
  });

  it("rejects invalid UTF-8 as MALFORMED after delivering the valid lines before it", () => {
    const decoder = newlineDecoder();
    const out: string[] = [];
    const bytes = Buffer.concat([Buffer.from("good\n"), Buffer.from([0xff, 0xfe, 0x41]), Buffer.from("\nnever\n")]);
    expectKeywayError(() => decoder.push(bytes, out), ErrorCode.MALFORMED);
    expect(out).toEqual(["good"]);
  });

  it("rejects a multi-byte character cut short by the newline, even fed byte by byte", () => {
    const decoder = newlineDecoder();
    const out: string[] = [];
    const bytes = Buffer.concat([Buffer.from("ok\n"), Buffer.from("é").subarray(0, 1), Buffer.from("\n")]);
    expectKeywayError(() => {
      for (const byte of bytes) decoder.push(Uint8Array.of(byte), out);
    }, ErrorCode.MALFORMED);
    expect(out).toEqual(["ok"]);
  });

  it("rejects invalid UTF-8 in a final unterminated line", () => {
    const decoder = newlineDecoder();
    decoder.push(Buffer.from([0xc3]), []);
    expectKeywayError(() => decoder.end([]), ErrorCode.MALFORMED);
  });

  it("refuses to be used after it failed", () => {
    const decoder = newlineDecoder(2);
    expectKeywayError(() => decoder.push(Buffer.from("abc"), []), ErrorCode.FRAME_TOO_LARGE);
    expectKeywayError(() => decoder.push(Buffer.from("\n"), []), ErrorCode.INTERNAL);
  });

  it("encoder refuses a value larger than maxFrameBytes", () => {
    expectKeywayError(() => encodeNewlineFrames(["ok", "ééé"], 5), ErrorCode.FRAME_TOO_LARGE);
    expect(encodeNewlineFrames(["ééé"], 6).toString()).toBe("ééé\n");
  });

  it("rejects a limit that is not a positive integer", () => {
    expectKeywayError(() => newlineDecoder(0), ErrorCode.USAGE);
    expectKeywayError(() => lengthPrefixedDecoder(1.5), ErrorCode.USAGE);
  });
});

describe("length-prefixed framing", () => {
  const values = ["hello", "", "日本語", new Uint8Array([0, 10, 13, 255, 0x80]), new Uint8Array(300).fill(7)];
  const encoded = encodeLengthPrefixedFrames(values);
  const expected = values.map((value) => (typeof value === "string" ? new Uint8Array(Buffer.from(value)) : value));

  it("encodes a 4-byte big-endian length before each frame", () => {
    const two = encodeLengthPrefixedFrames(["hi", new Uint8Array(258)]);
    expect([...two.subarray(0, 6)]).toEqual([0, 0, 0, 2, 0x68, 0x69]);
    expect([...two.subarray(6, 10)]).toEqual([0, 0, 1, 2]);
    expect(two.length).toBe(6 + 4 + 258);
  });

  it.each([1, 2, 3, 4, 5, 7, 64 * 1024])("decodes fed in pieces of %i bytes", (pieceBytes) => {
    const frames = feed(lengthPrefixedDecoder(), encoded, pieceBytes);
    expect(frames.map((frame) => [...frame])).toEqual(expected.map((frame) => [...frame]));
  });

  it("decodes a length header split across chunks", () => {
    const decoder = lengthPrefixedDecoder();
    const out: Uint8Array[] = [];
    decoder.push(Uint8Array.of(0, 0), out);
    decoder.push(Uint8Array.of(0), out);
    expect(out).toEqual([]);
    decoder.push(Uint8Array.of(3, 0x61, 0x62, 0x63, 0), out);
    decoder.push(Uint8Array.of(0, 0, 1, 0x64), out);
    expect(out.map((frame) => Buffer.from(frame).toString())).toEqual(["abc", "d"]);
  });

  it("returns frames that do not alias the caller's chunk", () => {
    const decoder = lengthPrefixedDecoder();
    const out: Uint8Array[] = [];
    const chunk = encodeLengthPrefixedFrames(["abc"]);
    decoder.push(chunk, out);
    chunk.fill(0);
    expect(Buffer.from(out[0]!).toString()).toBe("abc");
  });

  it("fails with FRAME_TOO_LARGE on the length alone, keeping the frames before it", () => {
    const decoder = lengthPrefixedDecoder(10);
    const out: Uint8Array[] = [];
    const bytes = Buffer.concat([encodeLengthPrefixedFrames(["0123456789"]), Uint8Array.of(0, 0, 0, 11)]);
    const err = expectKeywayError(() => decoder.push(bytes, out), ErrorCode.FRAME_TOO_LARGE);
    expect(err.message).toContain("11 bytes");
    expect(out.map((frame) => Buffer.from(frame).toString())).toEqual(["0123456789"]);
  });

  it("fails with FRAME_TOO_LARGE for a huge announced length without allocating it", () => {
    const decoder = lengthPrefixedDecoder();
    expectKeywayError(() => decoder.push(Uint8Array.of(0xff, 0xff, 0xff, 0xff), []), ErrorCode.FRAME_TOO_LARGE);
  });

  it("reports a stream that ends inside a frame as MALFORMED", () => {
    const inHeader = lengthPrefixedDecoder();
    inHeader.push(Uint8Array.of(0, 0), []);
    expectKeywayError(() => inHeader.end([]), ErrorCode.MALFORMED);
    const inBody = lengthPrefixedDecoder();
    inBody.push(Uint8Array.of(0, 0, 0, 5, 1, 2), []);
    expectKeywayError(() => inBody.end([]), ErrorCode.MALFORMED);
  });

  it("encoder refuses a value larger than maxFrameBytes", () => {
    expectKeywayError(() => encodeLengthPrefixedFrames([new Uint8Array(6)], 5), ErrorCode.FRAME_TOO_LARGE);
  });
});
