/** The cluster token every worker-to-worker call carries in its metadata, compared in constant time. */
import { timingSafeEqual, createHash } from "node:crypto";
import { Metadata } from "@grpc/grpc-js";

export const CLUSTER_TOKEN_KEY = "keyway-cluster-token";

export function tokenMetadata(token: string | undefined): Metadata {
  const metadata = new Metadata();
  if (token !== undefined && token !== "") metadata.set(CLUSTER_TOKEN_KEY, token);
  return metadata;
}

/** Whether the call's metadata carries the expected token; a cluster without a token accepts any call. */
export function tokenMatches(expected: string | undefined, metadata: Metadata): boolean {
  if (expected === undefined || expected === "") return true;
  const given = metadata.get(CLUSTER_TOKEN_KEY)[0];
  if (typeof given !== "string") return false;
  // Digests have equal lengths, so the comparison's time says nothing about the token.
  const digest = (s: string) => createHash("sha256").update(s).digest();
  return timingSafeEqual(digest(given), digest(expected));
}
