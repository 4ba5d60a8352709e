/**
 * Why a connection to the engine failed at the TLS layer, in words a user can act on. grpc-js
 * reports most TLS failures as "No connection established ... Failed to connect", the same as a
 * port nobody listens on. After such a failure the SDK dials once more with Node's own TLS client
 * (same CA, certificate and key), which sees the real reason: the engine speaks TLS and this
 * connector does not, or the reverse, the engine's certificate is not trusted or not for this
 * host, the engine requires a client certificate or refuses this one. Each of those is a
 * configuration error: retrying cannot help.
 */
import { isIP, connect as connectTcp } from "node:net";
import { connect as connectTls, type ConnectionOptions } from "node:tls";
import type { ClientTls } from "../rpc/tls.ts";
import { parseHostPort } from "../util/host-port.ts";

/** How long the probe waits after its handshake for the engine to refuse its certificate (TLS 1.3 does that after the client's Finished). */
const REFUSAL_WAIT_MS = 300;
const PROBE_TIMEOUT_MS = 3000;

/** A gRPC status detail that may hide a TLS failure (the dial failed, nothing was refused at TCP level). */
export function mayBeTlsFailure(details: string): boolean {
  return /No connection established|Failed to connect|Connection dropped|SSL|certificate|handshake/i.test(details) && !/ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|ENOTFOUND/.test(details);
}

/** A sentence naming the TLS misconfiguration between this connector and the engine at `address`, or undefined when TLS is not the problem. */
export async function diagnoseTls(address: string, tls: ClientTls | undefined): Promise<string | undefined> {
  const parsed = parseHostPort(address);
  if ("error" in parsed) return undefined;
  const host = parsed.host;
  const base: ConnectionOptions = { host, port: parsed.port, ALPNProtocols: ["h2"], ...(isIP(host) === 0 ? { servername: host } : {}) };
  if (tls === undefined) {
    // This connector dials plaintext: does the engine answer a TLS handshake?
    const result = await handshake({ ...base, rejectUnauthorized: false });
    return result.kind === "connected" || result.kind === "refused-after"
      ? `the engine at ${address} serves TLS and this connector dials plaintext: give it the CA of the engine's certificate (tlsCa, --tls-ca)`
      : undefined;
  }
  const result = await handshake({ ...base, ...(tls.ca === undefined ? {} : { ca: tls.ca }), ...(tls.cert === undefined ? {} : { cert: tls.cert, key: tls.key }) });
  switch (result.kind) {
    case "connected":
    case "unreachable":
      return undefined;
    case "failed":
      return explain(address, tls, result.error);
    case "refused-after":
      // A close or reset after a completed handshake is a refusal, not a plaintext engine.
      return (
        (result.error.code === "ECONNRESET" || result.error.code === "ECLOSED" ? undefined : explain(address, tls, result.error)) ??
        (tls.cert === undefined
          ? `the engine at ${address} closed the connection after the TLS handshake: it requires a client certificate (mutual TLS); give this connector tlsCert and tlsKey (--tls-cert, --tls-key)`
          : `the engine at ${address} closed the connection after the TLS handshake: it refused this connector's client certificate, which must be signed by the CA the engine trusts (--tls-client-ca)`)
      );
  }
}

function explain(address: string, tls: ClientTls, err: Error & { code?: string }): string | undefined {
  const message = err.message;
  const code = err.code ?? "";
  if (/WRONG_VERSION_NUMBER|wrong version number|packet length too long|unknown protocol/i.test(`${code} ${message}`) || code === "ECONNRESET") {
    return `the engine at ${address} does not speak TLS (it serves plaintext) and this connector dials TLS: drop tlsCa, tlsCert and tlsKey, or start the engine with --tls-cert and --tls-key`;
  }
  if (/certificate required|handshake failure/i.test(message) && tls.cert === undefined) {
    return `the engine at ${address} requires a client certificate (mutual TLS): give this connector tlsCert and tlsKey (--tls-cert, --tls-key), signed by the CA the engine trusts (--tls-client-ca)`;
  }
  if (/unknown ca|bad certificate|certificate unknown|unsupported certificate|decrypt error|access denied|certificate expired|certificate revoked/i.test(message) && tls.cert !== undefined) {
    return `the engine at ${address} refused this connector's client certificate (${message.trim()}): it must be signed by the CA the engine trusts (--tls-client-ca) and be valid now`;
  }
  if (code === "ERR_TLS_CERT_ALTNAME_INVALID") {
    return `the engine's certificate is not valid for ${address} (${message}): dial a name or address its subjectAltName lists, or give the engine a certificate for this one`;
  }
  if (/SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|CERT_UNTRUSTED|CERT_HAS_EXPIRED|CERT_NOT_YET_VALID|DEPTH_ZERO/i.test(code)) {
    return `this connector does not trust the engine's certificate at ${address} (${message}): give it the CA that signed the engine's certificate (tlsCa, --tls-ca)${code === "CERT_HAS_EXPIRED" ? "; the engine's certificate has expired" : ""}`;
  }
  if (/SSL|TLS|certificate|alert/i.test(`${code} ${message}`)) return `TLS with the engine at ${address} failed: ${message.trim()}`;
  return undefined;
}

type Handshake =
  | { kind: "connected" }
  /** The handshake completed and then the engine ended the connection with an alert (a refused client certificate under TLS 1.3). */
  | { kind: "refused-after"; error: Error & { code?: string } }
  | { kind: "failed"; error: Error & { code?: string } }
  /** Not even TCP: not a TLS matter. */
  | { kind: "unreachable" };

function handshake(options: ConnectionOptions): Promise<Handshake> {
  return new Promise((resolve) => {
    // TCP first, so a refused or unreachable port is told apart from a TLS failure.
    const tcp = connectTcp({ host: options.host!, port: options.port! });
    let settled = false;
    const timer = setTimeout(() => finish({ kind: "unreachable" }), PROBE_TIMEOUT_MS);
    const finish = (result: Handshake): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      tcp.destroy();
      resolve(result);
    };
    tcp.once("error", () => finish({ kind: "unreachable" }));
    tcp.once("connect", () => {
      tcp.removeAllListeners("error");
      let connected = false;
      const socket = connectTls({ ...options, socket: tcp });
      socket.on("error", (error: Error & { code?: string }) => finish(connected ? { kind: "refused-after", error } : { kind: "failed", error }));
      socket.once("close", () => {
        if (!connected) finish({ kind: "failed", error: Object.assign(new Error("the engine closed the connection during the TLS handshake"), { code: "ECONNRESET" }) });
      });
      socket.once("secureConnect", () => {
        connected = true;
        // Under TLS 1.3 the engine checks a client certificate after this. A gRPC server that
        // accepts the connection sends its HTTP/2 SETTINGS at once; one that refuses the
        // certificate sends an alert or just closes.
        socket.once("data", () => finish({ kind: "connected" }));
        socket.once("end", () => finish({ kind: "refused-after", error: Object.assign(new Error("the engine closed the connection right after the TLS handshake"), { code: "ECLOSED" }) }));
        socket.resume();
        setTimeout(() => finish({ kind: "connected" }), REFUSAL_WAIT_MS).unref();
      });
    });
  });
}
