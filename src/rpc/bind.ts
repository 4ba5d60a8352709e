/** Binds a grpc-js server to a listen address; a failure is one PORT_IN_USE error naming what the address was for. */
import { ServerCredentials, type Server } from "@grpc/grpc-js";
import { ErrorCode, KeywayError } from "../errors.ts";
import { formatListenAddress, type ListenAddress } from "./listen-address.ts";

/** Resolves with the bound HOST:PORT (the real port when asked for port 0). */
export function bindServer(server: Server, listen: ListenAddress, purpose: string): Promise<string> {
  const requested = formatListenAddress(listen);
  return new Promise((resolve, reject) => {
    server.bindAsync(requested, ServerCredentials.createInsecure(), (err, port) => {
      if (err === null) return resolve(formatListenAddress({ host: listen.host, port }));
      server.forceShutdown();
      const reason = err.message.includes("EADDRINUSE") ? "address in use" : err.message;
      reject(new KeywayError(ErrorCode.PORT_IN_USE, `cannot listen on ${requested} for ${purpose}: ${reason}`));
    });
  });
}
