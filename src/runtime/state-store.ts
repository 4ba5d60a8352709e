/**
 * Keyed state, organised by routing slot so one slot's state moves as a unit (migration,
 * replication). Keys are dynamic: an entry is created the first time its key is seen.
 */
import { deserialize, serialize } from "node:v8";
import type { Key, StateCodec } from "../app/spec.ts";
import { ErrorCode, KeywayError } from "../errors.ts";

/** One stage's state in one slot. Byte keys live apart, under their latin1 form, so "ab" and [97, 98] never collide. */
interface SlotEntries {
  text: Map<string, object>;
  bytes: Map<string, object> | undefined;
}

export interface StageStore {
  readonly slotCount: number;
  readonly codec: StateCodec<object> | undefined;
  readonly slots: Array<SlotEntries | undefined>;
  keyCount: number;
}

/** An exported slot of one stage: [key, state] pairs, states encoded by the user codec if any. */
interface ExportedStage {
  text: Array<[string, unknown]>;
  bytes: Array<[Uint8Array, unknown]>;
}

const EXPORT_VERSION = 1;

export function createStageStore(slotCount: number, codec?: StateCodec<object>): StageStore {
  return { slotCount, codec, slots: new Array(slotCount).fill(undefined), keyCount: 0 };
}

function bytesKey(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString("latin1");
}

/** The key's state, created by init when the key is new. */
export function stateFor(store: StageStore, slot: number, key: Key, init: (key: Key) => object): object {
  let entries = store.slots[slot];
  if (entries === undefined) {
    entries = { text: new Map(), bytes: undefined };
    store.slots[slot] = entries;
  }
  let map: Map<string, object>;
  let mapKey: string;
  if (typeof key === "string") {
    map = entries.text;
    mapKey = key;
  } else {
    map = entries.bytes ??= new Map();
    mapKey = bytesKey(key);
  }
  let state = map.get(mapKey);
  if (state === undefined) {
    state = init(key);
    if (typeof state !== "object" || state === null) {
      throw new KeywayError(ErrorCode.BAD_APP, `state init must return an object, got ${state === null ? "null" : typeof state}`);
    }
    map.set(mapKey, state);
    store.keyCount++;
  }
  return state;
}

function encodeState(store: StageStore, state: object): unknown {
  return store.codec === undefined ? state : store.codec.encode(state);
}

function decodeState(store: StageStore, value: unknown): object {
  return store.codec === undefined ? (value as object) : store.codec.decode(value as Uint8Array);
}

function exportStage(store: StageStore, slot: number): ExportedStage {
  const entries = store.slots[slot];
  const out: ExportedStage = { text: [], bytes: [] };
  if (entries === undefined) return out;
  for (const [key, state] of entries.text) out.text.push([key, encodeState(store, state)]);
  if (entries.bytes !== undefined) {
    for (const [key, state] of entries.bytes) out.bytes.push([Buffer.from(key, "latin1"), encodeState(store, state)]);
  }
  return out;
}

/** Serialises one slot's state across all stages (node:v8, states through each stage's codec). */
export function exportSlot(stores: readonly StageStore[], slot: number): Uint8Array {
  return serialize({ v: EXPORT_VERSION, stages: stores.map((store) => exportStage(store, slot)) });
}

/** Replaces one slot's state across all stages with an exported copy. */
export function importSlot(stores: readonly StageStore[], slot: number, bytes: Uint8Array): void {
  let decoded: { v: number; stages: ExportedStage[] };
  try {
    decoded = deserialize(bytes);
  } catch (err) {
    throw new KeywayError(ErrorCode.MALFORMED, `slot ${slot}: exported state does not deserialise`, { cause: err });
  }
  if (decoded?.v !== EXPORT_VERSION || decoded.stages?.length !== stores.length) {
    throw new KeywayError(ErrorCode.MALFORMED, `slot ${slot}: exported state does not match this app's ${stores.length} state stages`);
  }
  stores.forEach((store, i) => {
    const exported = decoded.stages[i]!;
    dropSlot(store, slot);
    if (exported.text.length === 0 && exported.bytes.length === 0) return;
    const entries: SlotEntries = { text: new Map(), bytes: undefined };
    for (const [key, state] of exported.text) entries.text.set(key, decodeState(store, state));
    if (exported.bytes.length > 0) {
      entries.bytes = new Map();
      for (const [key, state] of exported.bytes) entries.bytes.set(bytesKey(key), decodeState(store, state));
    }
    store.slots[slot] = entries;
    store.keyCount += entries.text.size + (entries.bytes?.size ?? 0);
  });
}

/** Forgets one slot's state, as when the slot has moved to another worker. */
export function dropSlot(store: StageStore, slot: number): void {
  const entries = store.slots[slot];
  if (entries === undefined) return;
  store.keyCount -= entries.text.size + (entries.bytes?.size ?? 0);
  store.slots[slot] = undefined;
}
