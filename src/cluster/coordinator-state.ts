/**
 * What the coordinator knows that a successor must know too, as the text of one etcd key: the map
 * with its members, fenced workers and how far their output got, the next worker id, the stream
 * registry and where bundled sources were placed.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { PartitionMapMessageSchema, SourceAssignmentSchema, type SourceAssignment } from "../protocol/gen/keyway/v1/cluster_pb.ts";
import type { PartitionMap } from "../routing/partition-map.ts";
import { mapFromMessage, mapToMessage } from "./codec.ts";
import type { Worker } from "./membership.ts";
import type { OutputsWritten } from "./replication.ts";

export interface StreamClaim {
  source: string;
  stream: string;
  holder: string | undefined;
  position: bigint;
  /** The connector_name the stream belongs to; absent in states saved before streams had owners. */
  owner?: string;
}

export interface CoordinatorState {
  map: PartitionMap;
  members: Worker[];
  fenced: string[];
  written: OutputsWritten[];
  nextId: number;
  /** A join or shrink was moving slots: a successor finishes the move. */
  moving: boolean;
  streams: StreamClaim[];
  sourcesOf: Array<{ worker: string; sources: SourceAssignment[] }>;
}

interface StateJson {
  map: string;
  nextId: number;
  moving: boolean;
  streams: Array<{ source: string; stream: string; holder?: string; position: string; owner?: string }>;
  sourcesOf: Array<{ worker: string; sources: Array<{ pipeline: number; uri: string; resumeFrom: string }> }>;
}

export function encodeState(state: CoordinatorState, coordinator: string): string {
  const map = toBinary(PartitionMapMessageSchema, mapToMessage(state.map, { members: state.members, fenced: state.fenced, written: state.written, coordinator }));
  const json: StateJson = {
    map: Buffer.from(map).toString("base64"),
    nextId: state.nextId,
    moving: state.moving,
    streams: state.streams.map((s) => ({ source: s.source, stream: s.stream, ...(s.holder === undefined ? {} : { holder: s.holder }), position: String(s.position), ...(s.owner === undefined ? {} : { owner: s.owner }) })),
    sourcesOf: state.sourcesOf.map(({ worker, sources }) => ({ worker, sources: sources.map((s) => ({ pipeline: s.pipeline, uri: s.uri, resumeFrom: String(s.resumeFrom) })) })),
  };
  return JSON.stringify(json);
}

export function decodeState(text: string): CoordinatorState {
  const json = JSON.parse(text) as StateJson;
  const { map, members, fenced, written } = mapFromMessage(fromBinary(PartitionMapMessageSchema, Buffer.from(json.map, "base64")));
  return {
    map,
    members,
    fenced,
    written,
    nextId: json.nextId,
    moving: json.moving,
    streams: json.streams.map((s) => ({ source: s.source, stream: s.stream, holder: s.holder, position: BigInt(s.position), ...(s.owner === undefined ? {} : { owner: s.owner }) })),
    sourcesOf: json.sourcesOf.map(({ worker, sources }) => ({ worker, sources: sources.map((s) => create(SourceAssignmentSchema, { pipeline: s.pipeline, uri: s.uri, resumeFrom: BigInt(s.resumeFrom) })) })),
  };
}
