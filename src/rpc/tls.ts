/**
 * TLS for every gRPC link: the connector protocol (the engine serves, connectors dial), the
 * cluster's links (each worker serves and dials, always with mutual TLS), and the CLI's cluster
 * commands. Certificates and keys are PEM files; each is read and checked when the process starts,
 * so a missing file, a key that does not match its certificate, or a file that holds no PEM is a
 * USAGE error naming the flag and the path, not a failed handshake later. No gRPC here (the CLI
 * checks flags before it loads gRPC): the credentials are made in tls-credentials.ts.
 */
import { readFileSync } from "node:fs";
import { createSecureContext } from "node:tls";
import { ErrorCode, KeywayError } from "../errors.ts";

/** What a server presents, and the CA its clients' certificates must chain to (mutual TLS). */
export interface ServerTls {
  cert: Buffer;
  key: Buffer;
  /** When set, every client must present a certificate this CA signed. */
  clientCa?: Buffer;
}

/** What a client trusts, and the certificate it presents (mutual TLS). */
export interface ClientTls {
  /** The CA the server's certificate must chain to; the system's roots when absent. */
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

/** A cluster link: every worker presents its certificate and requires its peers', all signed by `ca`. */
export interface ClusterTls {
  cert: Buffer;
  key: Buffer;
  ca: Buffer;
}

/** Reads a PEM file a flag names; an unreadable or non-PEM file is a USAGE error naming both. */
export function readPemFile(flag: string, path: string): Buffer {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new KeywayError(ErrorCode.USAGE, `${flag}: cannot read ${path} (${reason})`);
  }
  if (!bytes.includes("-----BEGIN ")) throw new KeywayError(ErrorCode.USAGE, `${flag}: ${path} holds no PEM data (expected "-----BEGIN ...")`);
  return bytes;
}

/** Checks that a certificate, its key and a CA load together, as the handshake will load them. */
function checkLoads(what: { cert?: Buffer; key?: Buffer; ca?: Buffer }, names: { cert: string; key: string; ca: string }, paths: { cert?: string; key?: string; ca?: string }): void {
  try {
    createSecureContext({ ...(what.cert === undefined ? {} : { cert: what.cert, key: what.key }) });
  } catch (err) {
    const reason = (err as Error).message;
    const which = /key values mismatch/.test(reason)
      ? `${names.key} ${paths.key} is not the key of ${names.cert} ${paths.cert}`
      : `${names.cert} ${paths.cert} and ${names.key} ${paths.key} do not load as a certificate and its key`;
    throw new KeywayError(ErrorCode.USAGE, `${which} (${reason})`);
  }
  if (what.ca === undefined) return;
  try {
    createSecureContext({ ca: what.ca });
  } catch (err) {
    throw new KeywayError(ErrorCode.USAGE, `${names.ca} ${paths.ca} does not load as a CA certificate (${(err as Error).message})`);
  }
}

export interface ServerTlsFlags {
  tlsCert?: string;
  tlsKey?: string;
  tlsClientCa?: string;
}

/** The connector server's TLS from --tls-cert, --tls-key and --tls-client-ca; undefined for plaintext. */
export function serverTlsFromFlags(flags: ServerTlsFlags): ServerTls | undefined {
  const { tlsCert, tlsKey, tlsClientCa } = flags;
  if (tlsCert === undefined && tlsKey === undefined) {
    if (tlsClientCa !== undefined) throw new KeywayError(ErrorCode.USAGE, "--tls-client-ca requires --tls-cert and --tls-key: client certificates are checked only over TLS");
    return undefined;
  }
  if (tlsCert === undefined || tlsKey === undefined) throw new KeywayError(ErrorCode.USAGE, "--tls-cert and --tls-key go together: the engine's certificate and its private key");
  const tls: ServerTls = { cert: readPemFile("--tls-cert", tlsCert), key: readPemFile("--tls-key", tlsKey) };
  if (tlsClientCa !== undefined) tls.clientCa = readPemFile("--tls-client-ca", tlsClientCa);
  checkLoads({ cert: tls.cert, key: tls.key, ca: tls.clientCa }, { cert: "--tls-cert", key: "--tls-key", ca: "--tls-client-ca" }, { cert: tlsCert, key: tlsKey, ca: tlsClientCa });
  return tls;
}

export interface ClientTlsFlags {
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
}

/** A client's TLS from --tls-ca, --tls-cert and --tls-key; undefined for plaintext. */
export function clientTlsFromFlags(flags: ClientTlsFlags): ClientTls | undefined {
  const { tlsCa, tlsCert, tlsKey } = flags;
  if (tlsCa === undefined && tlsCert === undefined && tlsKey === undefined) return undefined;
  if ((tlsCert === undefined) !== (tlsKey === undefined)) throw new KeywayError(ErrorCode.USAGE, "--tls-cert and --tls-key go together: this client's certificate and its private key");
  const tls: ClientTls = {};
  if (tlsCa !== undefined) tls.ca = readPemFile("--tls-ca", tlsCa);
  if (tlsCert !== undefined) {
    tls.cert = readPemFile("--tls-cert", tlsCert);
    tls.key = readPemFile("--tls-key", tlsKey!);
  }
  checkLoads(tls, { cert: "--tls-cert", key: "--tls-key", ca: "--tls-ca" }, { cert: tlsCert, key: tlsKey, ca: tlsCa });
  return tls;
}

export interface ClusterTlsFlags {
  clusterTlsCert?: string;
  clusterTlsKey?: string;
  clusterTlsCa?: string;
}

/** A worker's cluster TLS from --cluster-tls-cert, --cluster-tls-key and --cluster-tls-ca (all three, or none). */
export function clusterTlsFromFlags(flags: ClusterTlsFlags): ClusterTls | undefined {
  const { clusterTlsCert, clusterTlsKey, clusterTlsCa } = flags;
  const given = [clusterTlsCert, clusterTlsKey, clusterTlsCa].filter((f) => f !== undefined).length;
  if (given === 0) return undefined;
  if (given < 3) {
    throw new KeywayError(ErrorCode.USAGE, "--cluster-tls-cert, --cluster-tls-key and --cluster-tls-ca go together: this worker's certificate, its key, and the CA every worker's certificate must chain to");
  }
  const tls: ClusterTls = {
    cert: readPemFile("--cluster-tls-cert", clusterTlsCert!),
    key: readPemFile("--cluster-tls-key", clusterTlsKey!),
    ca: readPemFile("--cluster-tls-ca", clusterTlsCa!),
  };
  checkLoads(tls, { cert: "--cluster-tls-cert", key: "--cluster-tls-key", ca: "--cluster-tls-ca" }, { cert: clusterTlsCert, key: clusterTlsKey, ca: clusterTlsCa });
  return tls;
}
