/** The answer to Describe: what this engine serves. It needs no token, since it reveals names only. */
import { create } from "@bufbuild/protobuf";
import { DescribeResponseSchema, type DescribeResponse } from "./gen/keyway/v1/connector_pb.ts";
import { limitsMessage, type ProtocolLimits } from "./limits.ts";
import { engineVersions } from "./version.ts";

export interface Served {
  app: string;
  sources: readonly string[];
  sinks: readonly string[];
  partitioners: readonly string[];
}

export function describeResponse(served: Served, limits: ProtocolLimits, tokenRequired: boolean, clusterAddresses: readonly string[]): DescribeResponse {
  return create(DescribeResponseSchema, {
    app: served.app,
    sources: [...served.sources],
    sinks: [...served.sinks],
    partitioners: [...served.partitioners],
    versions: engineVersions(),
    limits: limitsMessage(limits),
    tokenRequired,
    clusterAddresses: [...clusterAddresses],
  });
}
