/** grpc-js credentials from the TLS material of tls.ts. */
import { credentials, ServerCredentials, type ChannelCredentials } from "@grpc/grpc-js";
import type { ClientTls, ClusterTls, ServerTls } from "./tls.ts";

/** Plaintext without `tls`; with `clientCa`, a client without a certificate that CA signed is refused in the handshake. */
export function serverCredentials(tls: ServerTls | undefined): ServerCredentials {
  if (tls === undefined) return ServerCredentials.createInsecure();
  return ServerCredentials.createSsl(tls.clientCa ?? null, [{ cert_chain: tls.cert, private_key: tls.key }], tls.clientCa !== undefined);
}

/** Plaintext without `tls`; otherwise TLS checking the server's certificate (and name) against `ca`. */
export function channelCredentials(tls: ClientTls | undefined): ChannelCredentials {
  if (tls === undefined) return credentials.createInsecure();
  return credentials.createSsl(tls.ca ?? null, tls.key ?? null, tls.cert ?? null);
}

export function clusterServerCredentials(tls: ClusterTls | undefined): ServerCredentials {
  return serverCredentials(tls === undefined ? undefined : { cert: tls.cert, key: tls.key, clientCa: tls.ca });
}

export function clusterChannelCredentials(tls: ClusterTls | undefined): ChannelCredentials {
  return channelCredentials(tls);
}
