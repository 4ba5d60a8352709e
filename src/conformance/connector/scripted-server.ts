/**
 * The engine side of the protocol as the harness plays it: a gRPC server on a free loopback port
 * that hands every session call, of any role, to the case being run, and answers Describe and
 * health checks as an engine would. It judges nothing itself; the case's steps decide what it says.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { Server, type ServerDuplexStream, type ServiceDefinition, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { serverCredentials } from "../../rpc/tls-credentials.ts";
import type { ServerTls } from "../../rpc/tls.ts";
import { HealthImplementation } from "grpc-health-check";
import { ConnectorService, DescribeRequestSchema, DescribeResponseSchema, type DescribeResponse } from "../../protocol/gen/keyway/v1/connector_pb.ts";
import { decode, REQUEST_SCHEMA, type Decoded, type Kinded, type Role } from "../wire.ts";

export type ServedAt = "primary" | "secondary";

export interface ServedCall {
  role: Role;
  at: ServedAt;
  call: ServerDuplexStream<Decoded<Kinded>, Buffer>;
}

export interface ScriptedServer {
  readonly address: string;
  /** Stops listening and cuts every connection at once, as a killed engine would. */
  kill(): void;
  /** Lets calls end within a grace period, then cuts them; once, however often it is called. */
  close(): Promise<void>;
}

/** Messages the harness may receive: a sink's or partitioner's test batches go the other way. */
const RECEIVE_BYTES_MAX = 256 * 1024 * 1024;
const CLOSE_GRACE_MS = 1_000;

const ROLE_OF_METHOD: Readonly<Record<string, Role>> = { Source: "source", Sink: "sink", Partition: "partitioner" };

/** Plaintext, or TLS with `tls` (the engine's certificate a connector under test is given the CA of). */
export async function startScriptedServer(at: ServedAt, describe: (at: ServedAt) => DescribeResponse, onCall: (call: ServedCall) => void, tls?: ServerTls): Promise<ScriptedServer> {
  const server = new Server({ "grpc.max_receive_message_length": RECEIVE_BYTES_MAX, "grpc.max_send_message_length": RECEIVE_BYTES_MAX });
  const definition: Record<string, ServiceDefinition[string]> = {};
  const implementation: UntypedServiceImplementation = {};
  for (const method of ConnectorService.methods) {
    const path = `/${ConnectorService.typeName}/${method.name}`;
    if (method.name === "Describe") {
      definition[method.localName] = {
        path,
        requestStream: false,
        responseStream: false,
        requestSerialize: (m: Buffer) => m,
        requestDeserialize: (b: Buffer) => decode(DescribeRequestSchema, b),
        responseSerialize: (m: DescribeResponse) => Buffer.from(toBinary(DescribeResponseSchema, m)),
        responseDeserialize: (b: Buffer) => b,
        originalName: method.localName,
      };
      implementation[method.localName] = (_call: unknown, callback: (err: null, value: DescribeResponse) => void) => callback(null, describe(at));
      continue;
    }
    const role = ROLE_OF_METHOD[method.name]!;
    definition[method.localName] = {
      path,
      requestStream: true,
      responseStream: true,
      requestSerialize: (m: Buffer) => m,
      requestDeserialize: (b: Buffer) => decode<Kinded>(REQUEST_SCHEMA[role], b),
      responseSerialize: (m: Buffer) => m,
      responseDeserialize: (b: Buffer) => b,
      originalName: method.localName,
    };
    implementation[method.localName] = (call: ServerDuplexStream<Decoded<Kinded>, Buffer>) => onCall({ role, at, call });
  }
  server.addService(definition, implementation);
  new HealthImplementation({ "": "SERVING", [ConnectorService.typeName]: "SERVING" }).addToServer(server);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", serverCredentials(tls), (err, bound) => (err === null ? resolve(bound) : reject(err))),
  );
  let closing: Promise<void> | undefined;
  return {
    address: `127.0.0.1:${port}`,
    kill() {
      server.forceShutdown();
      closing ??= Promise.resolve();
    },
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, CLOSE_GRACE_MS);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      })),
  };
}

/**
 * What the harness's Describe says: one target for the role under test, a token required, and the
 * answering address as the whole cluster (R-CLUSTER-ADDRESSES).
 */
export function describeFor(
  role: Role,
  target: string,
  limits: { maxBatchRecords: number; maxMessageBytes: number; idempotencyWindow: number },
  clusterAddresses: string[],
): DescribeResponse {
  return create(DescribeResponseSchema, {
    app: "keyway-conformance",
    sources: role === "source" ? [target] : [],
    sinks: role === "sink" ? [target] : [],
    partitioners: role === "partitioner" ? [target] : [],
    versions: [{ major: 1, minor: 0 }],
    limits,
    tokenRequired: true,
    clusterAddresses,
  });
}
