import { describe, expect, it } from "vitest";
import { sinkFromUri, sourceFromUri } from "../../connectors/index.ts";
import { parseConnectorUri } from "../../connectors/registry.ts";
import { ErrorCode, KeywayError } from "../../src/errors.ts";

function parseError(uri: string): KeywayError {
  try {
    parseConnectorUri(uri);
  } catch (err) {
    expect(err).toBeInstanceOf(KeywayError);
    return err as KeywayError;
  }
  throw new Error(`parsed without error: ${uri}`);
}

describe("parseConnectorUri", () => {
  it.each([
    ["file:in.txt", { scheme: "file", path: "in.txt" }],
    ["file:data/in.txt", { scheme: "file", path: "data/in.txt" }],
    ["file:/abs/in.txt", { scheme: "file", path: "/abs/in.txt" }],
    ["file:///abs/in.txt", { scheme: "file", path: "/abs/in.txt" }],
    ["file:///abs/with%20space.txt", { scheme: "file", path: "/abs/with space.txt" }],
    ["file://localhost/abs/in.txt", { scheme: "file", path: "/abs/in.txt" }],
    ["file:odd?name#kept.txt", { scheme: "file", path: "odd?name#kept.txt" }],
    ["FILE:in.txt", { scheme: "file", path: "in.txt" }],
    ["tcp://127.0.0.1:9000", { scheme: "tcp", framing: "newline", host: "127.0.0.1", port: 9000 }],
    ["tcp://localhost:0", { scheme: "tcp", framing: "newline", host: "localhost", port: 0 }],
    ["tcp://example.com:9000/", { scheme: "tcp", framing: "newline", host: "example.com", port: 9000 }],
    ["tcp+lp://host-1:65535", { scheme: "tcp+lp", framing: "length-prefixed", host: "host-1", port: 65535 }],
    ["tcp://[::1]:9000", { scheme: "tcp", framing: "newline", host: "::1", port: 9000 }],
    [
      "tcp+lp://10.0.0.1:9000?maxFrameBytes=1024",
      { scheme: "tcp+lp", framing: "length-prefixed", host: "10.0.0.1", port: 9000, maxFrameBytes: 1024 },
    ],
    ["tcp://h:1?", { scheme: "tcp", framing: "newline", host: "h", port: 1 }],
    ["ws://127.0.0.1:9000/in", { scheme: "ws", host: "127.0.0.1", port: 9000, path: "/in" }],
    ["ws://localhost:0", { scheme: "ws", host: "localhost", port: 0, path: "/" }],
    ["WSS://[::1]:443/a/b?maxFrameBytes=64", { scheme: "wss", host: "::1", port: 443, path: "/a/b", maxFrameBytes: 64 }],
    ["ws://h:1/out?maxLagMessages=5", { scheme: "ws", host: "h", port: 1, path: "/out", maxLagMessages: 5 }],
  ])("parses %s", (uri, expected) => {
    expect(parseConnectorUri(uri)).toEqual(expected);
  });

  it.each([
    ["in.txt", "no scheme; expected one of file:PATH, tcp://HOST:PORT, tcp+lp://HOST:PORT"],
    ["", "no scheme"],
    ["/abs/in.txt", "no scheme"],
    ["://x", "no scheme"],
    ["http://host:80", 'unknown scheme "http"; known schemes: file, tcp, tcp+lp'],
    ["udp://host:80", 'unknown scheme "udp"'],
    ["file:", "empty path"],
    ["file://", "empty path"],
    ["file:///", "empty path"],
    ["file://server/share/in.txt", 'a file URL names no host (got "server")'],
    ["file:///abs/in.txt?x=1", "a file URL takes no query or fragment"],
    ["file:///abs/a%2Fb", "encoded / characters"],
    ["tcp:host:9000", "expected tcp://HOST:PORT"],
    ["tcp+lp:/host:9000", "expected tcp+lp://HOST:PORT"],
    ["tcp://", "missing host"],
    ["tcp://:9000", "missing host"],
    ["tcp://host", "missing port"],
    ["tcp://host:", "missing port"],
    ["tcp://host:port", 'invalid port "port"'],
    ["tcp://host:-1", 'invalid port "-1"'],
    ["tcp://host:9000x", 'invalid port "9000x"'],
    ["tcp://host:65536", "port 65536 is out of range 0-65535"],
    ["tcp://host:99999999999999999999", "out of range"],
    ["tcp://host:9000/path", "unexpected path after HOST:PORT"],
    ["tcp://host:9000#frag", "unexpected fragment"],
    ["tcp://user@host:9000", "user credentials are not supported"],
    ["tcp://::1:9000", "an IPv6 host must be in brackets"],
    ["tcp://[::1:9000", "unclosed '['"],
    ["tcp://[::1]9000", 'unexpected "9000" after host'],
    ["tcp://[]:9000", "missing host"],
    ["tcp://[zz]:9000", 'invalid IPv6 host "zz"'],
    ["tcp://bad host:9000", 'invalid host "bad host"'],
    ["tcp://host:9000?maxFrameBytes=", 'maxFrameBytes must be an integer from 1 to 268435456, got ""'],
    ["tcp://host:9000?maxFrameBytes=0", 'got "0"'],
    ["tcp://host:9000?maxFrameBytes=1.5", 'got "1.5"'],
    ["tcp://host:9000?maxFrameBytes=-3", 'got "-3"'],
    ["tcp://host:9000?maxFrameBytes=abc", 'got "abc"'],
    ["tcp://host:9000?maxFrameBytes=268435457", 'got "268435457"'],
    ["tcp://host:9000?maxFrameBytes=1&maxFrameBytes=2", 'query parameter "maxFrameBytes" given twice'],
    ["tcp://host:9000?framing=lp", 'unknown query parameter "framing" (known: maxFrameBytes)'],
    ["ws:host:9000/in", "expected ws://HOST:PORT/PATH"],
    ["ws://host/in", "missing port"],
    ["ws://host:9000/in#frag", "unexpected fragment"],
    ["wss://host:9000/in?maxLagMessages=0", 'maxLagMessages must be an integer from 1 to 1000000000, got "0"'],
    ["ws://host:9000/in?x=1", 'unknown query parameter "x" (known: maxFrameBytes, maxLagMessages)'],
  ])("rejects %j as BAD_URI: %s", (uri, why) => {
    const err = parseError(uri);
    expect(err.code).toBe(ErrorCode.BAD_URI);
    expect(err.message.startsWith(`malformed URI "${uri}": `)).toBe(true);
    expect(err.message).toContain(why);
  });
});

describe("sourceFromUri and sinkFromUri", () => {
  it("build the connector the URI names", () => {
    expect(sourceFromUri("file:in.txt").finite).toBe(true);
    expect(sourceFromUri("tcp://127.0.0.1:0").finite).toBe(false);
    expect(sourceFromUri("tcp+lp://127.0.0.1:0?maxFrameBytes=64").finite).toBe(false);
    expect(sourceFromUri("ws://127.0.0.1:0/in").finite).toBe(false);
    expect(typeof sinkFromUri("file:out.txt").write).toBe("function");
    expect(sinkFromUri("ws://127.0.0.1:0/out").bufferedRecords()).toBe(0);
    expect(sinkFromUri("tcp+lp://127.0.0.1:9000").bufferedRecords()).toBe(0);
  });

  it("reject a sink URI with port 0, which only a listening source can use", () => {
    expect(() => sinkFromUri("tcp://127.0.0.1:0")).toThrow(
      expect.objectContaining({ code: ErrorCode.BAD_URI, message: expect.stringContaining("port 0") }),
    );
  });

  it("reject a frame limit out of range given as an option", () => {
    expect(() => sourceFromUri("tcp://127.0.0.1:0", { maxFrameBytes: 0 })).toThrow(
      expect.objectContaining({ code: ErrorCode.USAGE }),
    );
    expect(() => sourceFromUri("file:in.txt", { maxFrameBytes: -1 })).toThrow(
      expect.objectContaining({ code: ErrorCode.USAGE }),
    );
  });

  it("pass malformed URIs through as BAD_URI", () => {
    expect(() => sourceFromUri("nope")).toThrow(expect.objectContaining({ code: ErrorCode.BAD_URI }));
    expect(() => sinkFromUri("tcp://host")).toThrow(expect.objectContaining({ code: ErrorCode.BAD_URI }));
  });
});
