/**
 * Binds a grpc-js server to a listen address. A port taken is PORT_IN_USE; a host that does not
 * resolve or is not this machine's is bad usage (USAGE): either way one error naming the purpose.
 */
import { ServerCredentials, type Server } from "@grpc/grpc-js";
import { formatListenAddress, listenError, type ListenAddress } from "./listen-address.ts";

/** Resolves with the bound HOST:PORT (the real port when asked for port 0); plaintext unless given TLS credentials. */
export function bindServer(server: Server, listen: ListenAddress, purpose: string, credentials: ServerCredentials = ServerCredentials.createInsecure()): Promise<string> {
  const requested = formatListenAddress(listen);
  return new Promise((resolve, reject) => {
    server.bindAsync(requested, credentials, (err, port) => {
      if (err === null) return resolve(formatListenAddress({ host: listen.host, port }));
      server.forceShutdown();
      reject(listenError(requested, purpose, err.message));
    });
  });
}
