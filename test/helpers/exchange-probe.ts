/** Opens an exchange link to a worker as an outsider would, and reports how the worker ended it. */
import * as grpc from "@grpc/grpc-js";
import { ExchangeService, type LinkResponse } from "../../src/protocol/gen/keyway/v1/cluster_pb.ts";
import { clientDefinition } from "../../src/rpc/grpc-adapter.ts";

export function checkExchangeRefusesWithoutToken(address: string, credentials = grpc.credentials.createInsecure()): Promise<string> {
  const Client = grpc.makeGenericClientConstructor(clientDefinition(ExchangeService), "ExchangeService");
  const client = new Client(address, credentials);
  const call = (client as unknown as { Link(meta: grpc.Metadata): grpc.ClientDuplexStream<object, LinkResponse> }).Link(new grpc.Metadata());
  call.write({ kind: { case: "open", value: { from: "intruder", version: { major: 2, minor: 0 } } } });
  return new Promise((resolve) => {
    call.on("data", () => resolve("accepted"));
    call.on("error", (err: grpc.ServiceError) => {
      client.close();
      resolve(`${err.code}: ${err.details}`);
    });
  });
}
