/**
 * Keyed state, organised by routing slot so one slot's state moves as a unit (migration,
 * replication). Keys are dynamic: an entry is created the first time its key is seen.
 */
import { deserialize, serialize } from "node:v8";
import type { Key, StateCodec } from "../app/spec.ts";
import { ErrorCode, KeywayError } from "../errors.ts";

export interface StageStore {
  readonly slotCount: number;
  readonly codec: StateCodec<object> | undefined;
  /** slot -> text key -> state; a slot's Map exists once it holds a key. */
  readonly text: Array<Map<string, object> | undefined>;
  /**
   * slot -> byte key (as its latin1 string, a lossless 1:1 mapping) -> state. Apart from text
   * keys so "ab" and the bytes [97, 98] never collide.
   */
  readonly bytes: Array<Map<string, object> | undefined>;
  /**
   * slot -> upstream (a source stream) -> [seq, sub] of the last record from it applied here:
   * with replicated state, a replay at or below it is dropped. Moves and copies with the slot.
   */
  readonly marks: Array<Map<string, Mark> | undefined>;
  /**
   * slot -> 1 once anything may have changed its state (a key read for update, a mark moved, the
   * slot imported or dropped) since a checkpoint last captured it: what an incremental
   * checkpoint writes. Set on the hot path, so one typed-array store and nothing allocated.
   */
  readonly dirty: Uint8Array;
  keyCount: number;
}

/** A record's place in its upstream: the source position, then its rank among records at that position. */
export type Mark = [seq: number, sub: number];

/** An exported slot of one stage: [key, state] pairs, states encoded by the user codec if any. */
interface ExportedStage {
  text: Array<[string, unknown]>;
  bytes: Array<[Uint8Array, unknown]>;
  marks: Array<[string, Mark]>;
}

const EXPORT_VERSION = 2;

export function createStageStore(slotCount: number, codec?: StateCodec<object>): StageStore {
  const perSlot = () => new Array(slotCount).fill(undefined);
  return { slotCount, codec, text: perSlot(), bytes: perSlot(), marks: perSlot(), dirty: new Uint8Array(slotCount), keyCount: 0 };
}

function bytesKey(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString("latin1");
}

/**
 * The key's state, created by init when the key is new. The hot path: one array load, one Map
 * lookup, and the slot marked dirty (the caller may change the state it gets).
 */
export function stateFor(store: StageStore, slot: number, key: Key, init: (key: Key) => object): object {
  store.dirty[slot] = 1;
  const maps = typeof key === "string" ? store.text : store.bytes;
  const mapKey = typeof key === "string" ? key : bytesKey(key);
  let map = maps[slot];
  if (map === undefined) {
    map = new Map();
    maps[slot] = map;
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

/**
 * Whether a record is new to the slot (above its upstream's mark), moving the mark when it is.
 * Records of one upstream reach a slot in order, so anything at or below the mark was applied.
 */
export function passMark(store: StageStore, slot: number, upstream: string, seq: number, sub: number): boolean {
  let marks = store.marks[slot];
  if (marks === undefined) store.marks[slot] = marks = new Map();
  const mark = marks.get(upstream);
  if (mark === undefined) {
    marks.set(upstream, [seq, sub]);
    store.dirty[slot] = 1;
    return true;
  }
  if (seq < mark[0] || (seq === mark[0] && sub <= mark[1])) return false;
  store.dirty[slot] = 1;
  mark[0] = seq;
  mark[1] = sub;
  return true;
}

/** Whether the stage holds any key in this slot. */
export function slotOccupied(store: StageStore, slot: number): boolean {
  return store.text[slot] !== undefined || store.bytes[slot] !== undefined || store.marks[slot] !== undefined;
}

function encodeState(store: StageStore, state: object): unknown {
  return store.codec === undefined ? state : store.codec.encode(state);
}

function decodeState(store: StageStore, value: unknown): object {
  return store.codec === undefined ? (value as object) : store.codec.decode(value as Uint8Array);
}

function exportStage(store: StageStore, slot: number): ExportedStage {
  const out: ExportedStage = { text: [], bytes: [], marks: [...(store.marks[slot] ?? [])] };
  for (const [key, state] of store.text[slot] ?? []) out.text.push([key, encodeState(store, state)]);
  for (const [key, state] of store.bytes[slot] ?? []) out.bytes.push([Buffer.from(key, "latin1"), encodeState(store, state)]);
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
    if (exported.text.length > 0) {
      store.text[slot] = new Map(exported.text.map(([key, state]) => [key, decodeState(store, state)]));
    }
    if (exported.bytes.length > 0) {
      store.bytes[slot] = new Map(exported.bytes.map(([key, state]) => [bytesKey(key), decodeState(store, state)]));
    }
    if (exported.marks.length > 0) store.marks[slot] = new Map(exported.marks);
    store.keyCount += exported.text.length + exported.bytes.length;
  });
}

/** Forgets one slot's state, as when the slot has moved to another worker. */
export function dropSlot(store: StageStore, slot: number): void {
  store.dirty[slot] = 1;
  store.keyCount -= (store.text[slot]?.size ?? 0) + (store.bytes[slot]?.size ?? 0);
  store.text[slot] = undefined;
  store.bytes[slot] = undefined;
  store.marks[slot] = undefined;
}

/** One slot as a checkpoint captures it: its exported state across the stages, or null when it holds nothing. */
export type CapturedSlot = [slot: number, state: Uint8Array | null];

/**
 * Exports, across a pipeline's stages, the slots a checkpoint must write and clears their dirty
 * flags: every dirty slot (an emptied one as null), or with `all` every occupied slot. `complete`
 * says every occupied slot is among them, so they are the whole state (a base, not a delta).
 * Runs while nothing writes state (the checkpoint barrier).
 */
export function captureSlots(stores: readonly StageStore[], all: boolean): { slots: CapturedSlot[]; complete: boolean } {
  const slots: CapturedSlot[] = [];
  let complete = true;
  const slotCount = stores[0]?.slotCount ?? 0;
  for (let slot = 0; slot < slotCount; slot++) {
    let dirty = false;
    let occupied = false;
    for (const store of stores) {
      if (store.dirty[slot] === 1) {
        dirty = true;
        store.dirty[slot] = 0;
      }
      if (!occupied && slotOccupied(store, slot)) occupied = true;
    }
    if (occupied && (all || dirty)) slots.push([slot, exportSlot(stores, slot)]);
    else if (dirty && !all) slots.push([slot, null]);
    else if (occupied) complete = false;
  }
  return { slots, complete };
}

/** Marks every slot clean: the store now equals what the last checkpoint holds (just restored). */
export function clearDirty(stores: readonly StageStore[]): void {
  for (const store of stores) store.dirty.fill(0);
}
