/**
 * grpc-js plumbing for the cluster: one server per worker carrying ControlService and
 * ExchangeService, cached ControlService clients to peers, and the token check every control
 * call passes before its handler runs.
 */
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { CHANNEL_OPTIONS, CLUSTER_MESSAGE_BYTES_MAX, grpcDialer, type Dial, type Exchange } from "../exchange/grpc-exchange.ts";
import { ControlService } from "../protocol/gen/keyway/v1/cluster_pb.ts";
import { tokenMatches, tokenMetadata } from "../rpc/cluster-token.ts";
import { clientDefinition, isDecodeFailure, serverDefinition } from "../rpc/grpc-adapter.ts";
import { bindServer } from "../rpc/bind.ts";
import { parseListenAddress } from "../rpc/listen-address.ts";
import { clusterChannelCredentials, clusterServerCredentials } from "../rpc/tls-credentials.ts";
import type { ClusterTls } from "../rpc/tls.ts";
import { widenReceiveWindow } from "../rpc/receive-window.ts";

export type Handlers = grpc.UntypedServiceImplementation;
export type UnaryHandler = (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => void;

/** A gRPC error carrying a message for the caller; grpc-js sends it as the call's status. */
export function grpcError(code: grpc.status, message: string): grpc.ServiceError {
  return Object.assign(new Error(message), { code, details: message, metadata: new grpc.Metadata() });
}

/** Every ControlService method, token-checked, looked up at call time (the server binds before its parts exist). */
export function guarded(token: string | undefined, resolve: (method: string) => UnaryHandler | undefined): Handlers {
  return Object.fromEntries(
    ControlService.methods.map((m) => [
      m.name,
      ((call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        if (!tokenMatches(token, call.metadata)) return callback(grpcError(grpc.status.UNAUTHENTICATED, "wrong or missing cluster token"));
        if (isDecodeFailure(call.request)) return callback(grpcError(grpc.status.INVALID_ARGUMENT, call.request.reason));
        const handler = resolve(m.name);
        if (handler === undefined) return callback(grpcError(grpc.status.UNAVAILABLE, `this worker is not ready to answer ${m.name}`));
        handler(call, callback);
      }) as grpc.UntypedHandleCall,
    ]),
  );
}

export interface ClusterServer {
  address: string;
  /** Stops taking calls and resolves once the calls under way ended. */
  shutdown(): Promise<void>;
  /** Cuts every call now. */
  forceShutdown(): void;
}

/**
 * Binds the cluster server; a port in use is a PORT_IN_USE error naming the address. With `tls`
 * it serves mutual TLS: a peer without a certificate the cluster's CA signed never gets a call in.
 */
export async function serveCluster(
  listen: string,
  token: string | undefined,
  resolve: (method: string) => UnaryHandler | undefined,
  exchange: Exchange,
  tls?: ClusterTls,
): Promise<ClusterServer> {
  const server = new grpc.Server(CHANNEL_OPTIONS);
  server.addService(serverDefinition(ControlService, CLUSTER_MESSAGE_BYTES_MAX), guarded(token, resolve));
  server.addService(exchange.definition, exchange.service);
  const address = await bindServer(server, parseListenAddress(listen), "workers", clusterServerCredentials(tls));
  widenReceiveWindow(server);
  return {
    address,
    shutdown: () => new Promise<void>((done) => server.tryShutdown(() => done())),
    forceShutdown: () => server.forceShutdown(),
  };
}

/** How a worker reaches its peers and is reached: grpc-js, or the simulator's network. */
export interface ClusterTransport {
  clients(token: string | undefined): ControlClients;
  serve: typeof serveCluster;
  dial: Dial;
}

const Client = grpc.makeGenericClientConstructor(clientDefinition(ControlService), "ControlService");
type UnaryClient = grpc.Client & Record<string, (req: unknown, meta: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: unknown) => void) => void>;

export interface ControlClients {
  call<O extends DescMessage>(address: string, method: string, request: object, output: O, deadlineMs?: number): Promise<MessageShape<O>>;
  close(): void;
}

/** A client per peer address, kept for the life of the worker; every call carries the token. Over mutual TLS with `tls`. */
export function createControlClients(token: string | undefined, tls?: ClusterTls): ControlClients {
  const credentials = clusterChannelCredentials(tls);
  const clients = new Map<string, UnaryClient>();
  const clientFor = (address: string): UnaryClient => {
    let client = clients.get(address);
    if (client === undefined) {
      client = new Client(address, credentials, CHANNEL_OPTIONS) as unknown as UnaryClient;
      clients.set(address, client);
    }
    return client;
  };
  return {
    call(address, method, request, _output, deadlineMs = 60_000) {
      return new Promise((resolve, reject) => {
        clientFor(address)[method]!(request, tokenMetadata(token), { deadline: Date.now() + deadlineMs }, (err, response) => {
          if (err !== null) reject(err);
          else resolve(response as never);
        });
      });
    },
    close() {
      for (const client of clients.values()) client.close();
      clients.clear();
    },
  };
}

/** The cluster over grpc-js; over mutual TLS, every worker presenting `tls.cert` and trusting only `tls.ca`, when given. */
export function clusterTransport(tls?: ClusterTls): ClusterTransport {
  return {
    clients: (token) => createControlClients(token, tls),
    serve: (listen, token, resolve, exchange) => serveCluster(listen, token, resolve, exchange, tls),
    dial: grpcDialer(tls),
  };
}

export const grpcTransport: ClusterTransport = clusterTransport();

/** A unary handler from an async function: its result is the answer, a thrown grpc error its status. */
export function unary<Req>(fn: (request: Req) => Promise<object> | object): UnaryHandler {
  return (call, callback) => {
    Promise.resolve()
      .then(() => fn(call.request as Req))
      .then(
        (response) => callback(null, response),
        (err: grpc.ServiceError | Error) => callback("code" in err && typeof err.code === "number" ? err : grpcError(grpc.status.INTERNAL, err.message)),
      );
  };
}
