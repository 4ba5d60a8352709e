/**
 * Why a connection to the engine (or to another worker) failed at the TLS layer, in words a user
 * can act on. grpc-js reports most TLS failures as "No connection established ... Failed to
 * connect", the same as a port nobody listens on. After such a failure the SDK (or a worker that
 * could not join) dials once more with Node's own TLS client
 * (same CA, certificate and key), which sees the real reason: the engine speaks TLS and this
 * connector does not, or the reverse, the engine's certificate is not trusted or not for this
 * host, the engine requires a client certificate or refuses this one. Each of those is a
 * configuration error: retrying cannot help.
 */
import { isIP, connect as connectTcp } from "node:net";
import { connect as connectTls, type ConnectionOptions } from "node:tls";
import type { ClientTls } from "./tls.ts";
import { parseHostPort } from "../util/host-port.ts";

/** How long the probe waits after its handshake for the engine to refuse its certificate (TLS 1.3 does that after the client's Finished). */
const REFUSAL_WAIT_MS = 300;
const PROBE_TIMEOUT_MS = 3000;

/** A gRPC status detail that may hide a TLS failure (the dial failed, nothing was refused at TCP level). */
export function mayBeTlsFailure(details: string): boolean {
  return /No connection established|Failed to connect|Connection dropped|SSL|certificate|handshake/i.test(details) && !/ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|ENOTFOUND/.test(details);
}

/** Who is who in the sentences: a connector and the engine, or a worker and its peer. */
export interface TlsWords {
  self: string;
  peer: string;
  /** What gives the CA to trust: "tlsCa, --tls-ca". */
  caOption: string;
  /** What gives a client certificate: "tlsCert and tlsKey (--tls-cert, --tls-key)". */
  certOptions: string;
  /** The CA the peer trusts for client certificates: "the CA the engine trusts (--tls-client-ca)". */
  peerClientCa: string;
  /** How to make both ends agree when one is plaintext. */
  plaintextFix: string;
}

export const CONNECTOR_TLS_WORDS: TlsWords = {
  self: "this connector",
  peer: "the engine",
  caOption: "tlsCa, --tls-ca",
  certOptions: "tlsCert and tlsKey (--tls-cert, --tls-key)",
  peerClientCa: "the CA the engine trusts (--tls-client-ca)",
  plaintextFix: "drop tlsCa, tlsCert and tlsKey, or start the engine with --tls-cert and --tls-key",
};

export const WORKER_TLS_WORDS: TlsWords = {
  self: "this worker",
  peer: "the worker",
  caOption: "--cluster-tls-ca",
  certOptions: "--cluster-tls-cert and --cluster-tls-key",
  peerClientCa: "the cluster's CA (the other workers' --cluster-tls-ca)",
  plaintextFix: "give every worker of the cluster --cluster-tls-* flags, or none of them",
};

export const CLUSTER_CLIENT_TLS_WORDS: TlsWords = {
  ...WORKER_TLS_WORDS,
  self: "this command",
  plaintextFix: "give --cluster-tls-* flags only to reach a cluster that runs over mutual TLS",
};

/** A sentence naming the TLS misconfiguration between this end and the peer at `address`, or undefined when TLS is not the problem. */
export async function diagnoseTls(address: string, tls: ClientTls | undefined, words: TlsWords = CONNECTOR_TLS_WORDS): Promise<string | undefined> {
  const parsed = parseHostPort(address);
  if ("error" in parsed) return undefined;
  const host = parsed.host;
  const base: ConnectionOptions = { host, port: parsed.port, ALPNProtocols: ["h2"], ...(isIP(host) === 0 ? { servername: host } : {}) };
  const w = words;
  if (tls === undefined) {
    // This end dials plaintext: does the peer answer a TLS handshake?
    const result = await handshake({ ...base, rejectUnauthorized: false });
    return result.kind === "connected" || result.kind === "refused-after"
      ? `${w.peer} at ${address} serves TLS and ${w.self} dials plaintext: give it the CA of ${w.peer}'s certificate (${w.caOption})`
      : undefined;
  }
  const result = await handshake({ ...base, ...(tls.ca === undefined ? {} : { ca: tls.ca }), ...(tls.cert === undefined ? {} : { cert: tls.cert, key: tls.key }) });
  switch (result.kind) {
    case "connected":
    case "unreachable":
      return undefined;
    case "failed":
      return explain(address, tls, result.error, w);
    case "refused-after":
      // A close or reset after a completed handshake is a refusal, not a plaintext peer.
      return (
        (result.error.code === "ECONNRESET" || result.error.code === "ECLOSED" ? undefined : explain(address, tls, result.error, w)) ??
        (tls.cert === undefined
          ? `${w.peer} at ${address} closed the connection after the TLS handshake: it requires a client certificate (mutual TLS); give ${w.self} ${w.certOptions}`
          : `${w.peer} at ${address} closed the connection after the TLS handshake: it refused ${w.self}'s client certificate, which must be signed by ${w.peerClientCa}`)
      );
  }
}

function explain(address: string, tls: ClientTls, err: Error & { code?: string }, w: TlsWords): string | undefined {
  const message = err.message;
  const code = err.code ?? "";
  if (/WRONG_VERSION_NUMBER|wrong version number|packet length too long|unknown protocol/i.test(`${code} ${message}`) || code === "ECONNRESET") {
    return `${w.peer} at ${address} does not speak TLS (it serves plaintext) and ${w.self} dials TLS: ${w.plaintextFix}`;
  }
  if (/certificate required|handshake failure/i.test(message) && tls.cert === undefined) {
    return `${w.peer} at ${address} requires a client certificate (mutual TLS): give ${w.self} ${w.certOptions}, signed by ${w.peerClientCa}`;
  }
  if (/unknown ca|bad certificate|certificate unknown|unsupported certificate|decrypt error|access denied|certificate expired|certificate revoked/i.test(message) && tls.cert !== undefined) {
    return `${w.peer} at ${address} refused ${w.self}'s client certificate (${message.trim()}): it must be signed by ${w.peerClientCa} and be valid now`;
  }
  if (code === "ERR_TLS_CERT_ALTNAME_INVALID") {
    return `${w.peer}'s certificate is not valid for ${address} (${message}): dial a name or address its subjectAltName lists, or give ${w.peer} a certificate for this one`;
  }
  if (/SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|CERT_UNTRUSTED|CERT_HAS_EXPIRED|CERT_NOT_YET_VALID|DEPTH_ZERO/i.test(code)) {
    return `${w.self} does not trust ${w.peer}'s certificate at ${address} (${message}): give it the CA that signed ${w.peer}'s certificate (${w.caOption})${code === "CERT_HAS_EXPIRED" ? `; ${w.peer}'s certificate has expired` : ""}`;
  }
  if (/SSL|TLS|certificate|alert/i.test(`${code} ${message}`)) return `TLS with ${w.peer} at ${address} failed: ${message.trim()}`;
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
