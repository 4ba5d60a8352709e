/** grpc-js plumbing for the worker protocol: one server per worker, cached clients to peers. */
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { ErrorCode, KeywayError } from "../errors.ts";
import { WorkerService } from "../protocol/gen/keyway/v1/cluster_pb.ts";
import { clientDefinition, serverDefinition } from "../rpc/grpc-adapter.ts";
import { formatListenAddress, parseListenAddress } from "../rpc/listen-address.ts";

/** Slot state moves in one message; a large slot range of a large state must fit. */
export const CLUSTER_MESSAGE_BYTES_MAX = 512 * 1024 * 1024;
const CHANNEL_OPTIONS = {
  "grpc.max_send_message_length": CLUSTER_MESSAGE_BYTES_MAX,
  "grpc.max_receive_message_length": CLUSTER_MESSAGE_BYTES_MAX,
  "grpc.per_rpc_retry_buffer_size": 0,
};

export type Handlers = grpc.UntypedServiceImplementation;

/** Binds the worker server; a port in use is a PORT_IN_USE error naming the address. */
export async function serveWorker(listen: string, handlers: Handlers): Promise<{ server: grpc.Server; address: string }> {
  const parsed = parseListenAddress(listen);
  const server = new grpc.Server(CHANNEL_OPTIONS);
  server.addService(serverDefinition(WorkerService, CLUSTER_MESSAGE_BYTES_MAX), handlers);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(formatListenAddress(parsed), grpc.ServerCredentials.createInsecure(), (err, bound) => {
      if (err === null) return resolve(bound);
      server.forceShutdown();
      const reason = err.message.includes("EADDRINUSE") ? "address in use" : err.message;
      reject(new KeywayError(ErrorCode.PORT_IN_USE, `cannot listen on ${listen} for workers: ${reason}`));
    });
  });
  return { server, address: formatListenAddress({ host: parsed.host, port }) };
}

const Client = grpc.makeGenericClientConstructor(clientDefinition(WorkerService), "WorkerService");
type UnaryClient = grpc.Client & Record<string, (req: unknown, meta: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: unknown) => void) => void>;

/** A client per peer address, kept for the life of the worker. */
export function createPeerClients(): { call: <O extends DescMessage>(address: string, method: string, request: object, output: O, deadlineMs?: number) => Promise<MessageShape<O>>; close(): void } {
  const clients = new Map<string, UnaryClient>();
  const clientFor = (address: string): UnaryClient => {
    let client = clients.get(address);
    if (client === undefined) {
      client = new Client(address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS) as unknown as UnaryClient;
      clients.set(address, client);
    }
    return client;
  };
  return {
    call(address, method, request, _output, deadlineMs = 60_000) {
      return new Promise((resolve, reject) => {
        clientFor(address)[method]!(request, new grpc.Metadata(), { deadline: Date.now() + deadlineMs }, (err, response) => {
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

/** A gRPC error carrying a message for the caller; grpc-js sends it as the call's status. */
export function grpcError(code: grpc.status, message: string): grpc.ServiceError {
  return Object.assign(new Error(message), { code, details: message, metadata: new grpc.Metadata() });
}


/** Handlers that look their implementation up at call time, for a server bound before its parts exist. */
export function lateHandlers(methods: readonly string[], resolve: (method: string) => grpc.UntypedHandleCall): Handlers {
  return Object.fromEntries(
    methods.map((method) => [method, ((call: unknown, callback: unknown) => (resolve(method) as (c: unknown, b: unknown) => void)(call, callback)) as grpc.UntypedHandleCall]),
  );
}
