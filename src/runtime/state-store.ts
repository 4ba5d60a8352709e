/**
 * Keyed state, organised by routing slot so one slot's state moves as a unit (migration,
 * replication). Keys are dynamic: an entry is created the first time its key is seen.
 */
import { deserialize, serialize } from "node:v8";
import type { Key, StateCodec } from "../app/spec.ts";
import { ErrorCode, KeywayError } from "../errors.ts";
import { hashShift, slotOfHash } from "../routing/hash.ts";

export interface StageStore {
  readonly slotCount: number;
  /** For slotOfHash. */
  readonly shift: number;
  readonly codec: StateCodec<object> | undefined;
  /** The routing hash (createKeyHash): a table rehashes its keys with it when it grows. */
  readonly hashOf: (key: Key) => number;
  /** slot -> text key -> state; a slot's table exists once it holds a key. */
  readonly text: Array<SlotTable | undefined>;
  /**
   * slot -> byte key (as its latin1 string, a lossless 1:1 mapping) -> state. Apart from text
   * keys so "ab" and the bytes [97, 98] never collide.
   */
  readonly bytes: Array<SlotTable | undefined>;
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

/**
 * One slot's keys of one kind and their states: open addressing, linear probing, indexed by the
 * low bits of the key's routing hash (the caller has it already, so a lookup hashes nothing,
 * where a Map hashes every new key string again). Hashes are not stored and tables grow by half:
 * a table rehashes its keys when it grows, and a key costs about what it costs in a plain Map.
 */
interface SlotTable {
  keys: Array<string | undefined>;
  states: Array<object | undefined>;
  size: number;
  /** The hash bits below the slot's, and their scale to [0, 1): where a key's probe starts (home). */
  readonly homeMask: number;
  readonly homeScale: number;
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
const TABLE_CAPACITY_MIN = 8;

/** Where a key's probe starts: the hash's bits below the slot's (the same in every key of the table), scaled to the capacity. */
function home(table: SlotTable, hash: number, capacity: number): number {
  return (((hash & table.homeMask) >>> 0) * table.homeScale * capacity) | 0;
}

export function createStageStore(slotCount: number, hashOf: (key: Key) => number, codec?: StateCodec<object>): StageStore {
  const perSlot = () => new Array(slotCount).fill(undefined);
  return { slotCount, shift: hashShift(slotCount), codec, hashOf, text: perSlot(), bytes: perSlot(), marks: perSlot(), dirty: new Uint8Array(slotCount), keyCount: 0 };
}

function bytesKey(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString("latin1");
}

function emptyTable(capacity: number, shift: number): SlotTable {
  return {
    keys: new Array(capacity).fill(undefined),
    states: new Array(capacity).fill(undefined),
    size: 0,
    homeMask: shift === 32 ? -1 : (1 << shift) - 1,
    homeScale: 2 ** -shift,
  };
}

/** Puts a key known to be absent; grows the table past three quarters full. */
function insert(store: StageStore, text: boolean, table: SlotTable, hash: number, mapKey: string, state: object): void {
  const { keys } = table;
  const capacity = keys.length;
  let i = home(table, hash, capacity);
  while (keys[i] !== undefined) i = i + 1 === capacity ? 0 : i + 1;
  keys[i] = mapKey;
  table.states[i] = state;
  table.size++;
  if (table.size * 4 > capacity * 3) grow(store, text, table);
}

function grow(store: StageStore, text: boolean, table: SlotTable): void {
  const { keys, states } = table;
  const bigger = emptyTable(Math.ceil(keys.length * 1.5), store.shift);
  const rehash = rehashOf(store, text);
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i];
    if (key !== undefined) insert(store, text, bigger, rehash(key), key, states[i]!);
  }
  table.keys = bigger.keys;
  table.states = bigger.states;
}

function rehashOf(store: StageStore, text: boolean): (mapKey: string) => number {
  return text ? store.hashOf : (mapKey) => store.hashOf(Buffer.from(mapKey, "latin1"));
}

/** Where mapKey is in the table, or -1. */
function indexOf(table: SlotTable, hash: number, mapKey: string): number {
  const { keys } = table;
  const capacity = keys.length;
  for (let i = home(table, hash, capacity); ; i = i + 1 === capacity ? 0 : i + 1) {
    const found = keys[i];
    if (found === mapKey) return i;
    if (found === undefined) return -1;
  }
}

/** The key's slot's table of its kind, made when missing; the slot is marked dirty, as its state may change. */
function touchTable(store: StageStore, hash: number, text: boolean): SlotTable {
  const slot = slotOfHash(hash, store.shift);
  store.dirty[slot] = 1;
  const tables = text ? store.text : store.bytes;
  return (tables[slot] ??= emptyTable(TABLE_CAPACITY_MIN, store.shift));
}

/** Puts a new key in the store. */
function add(store: StageStore, text: boolean, table: SlotTable, hash: number, mapKey: string, state: object): void {
  insert(store, text, table, hash, mapKey, state);
  store.keyCount++;
}

/**
 * The key's state, created by init when the key is new; `hash` is the key's routing hash. The
 * hot path: the slot marked dirty (the caller may change the state it gets), one array load and
 * a probe that compares keys.
 */
export function stateFor(store: StageStore, hash: number, key: Key, init: (key: Key) => object): object {
  const text = typeof key === "string";
  const mapKey = text ? key : bytesKey(key);
  const table = touchTable(store, hash, text);
  const at = indexOf(table, hash, mapKey);
  if (at !== -1) return table.states[at]!;
  const state = init(key);
  if (typeof state !== "object" || state === null) {
    throw new KeywayError(ErrorCode.BAD_APP, `state init must return an object, got ${state === null ? "null" : typeof state}`);
  }
  add(store, text, table, hash, mapKey, state);
  return state;
}

/** The key's state, or undefined for a key the stage does not hold; marks nothing dirty. */
export function peekState(store: StageStore, hash: number, key: Key): object | undefined {
  const text = typeof key === "string";
  const table = (text ? store.text : store.bytes)[slotOfHash(hash, store.shift)];
  if (table === undefined) return undefined;
  const at = indexOf(table, hash, text ? key : bytesKey(key));
  return at === -1 ? undefined : table.states[at];
}

/** Sets the key's state, replacing any it had. */
export function putState(store: StageStore, hash: number, key: Key, state: object): void {
  const text = typeof key === "string";
  const mapKey = text ? key : bytesKey(key);
  const table = touchTable(store, hash, text);
  const at = indexOf(table, hash, mapKey);
  if (at === -1) add(store, text, table, hash, mapKey, state);
  else table.states[at] = state;
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

/** A table's [key, state] pairs. */
function* entries(table: SlotTable | undefined): Generator<[string, object]> {
  if (table === undefined) return;
  const { keys, states } = table;
  for (let i = 0; i < keys.length; i++) if (keys[i] !== undefined) yield [keys[i]!, states[i]!];
}

/** A table of these [key, state] pairs, or undefined for none. */
function tableOf(store: StageStore, text: boolean, pairs: ReadonlyArray<readonly [string, object]>): SlotTable | undefined {
  if (pairs.length === 0) return undefined;
  let capacity = TABLE_CAPACITY_MIN;
  while (pairs.length * 4 > capacity * 3) capacity = Math.ceil(capacity * 1.5);
  const table = emptyTable(capacity, store.shift);
  const rehash = rehashOf(store, text);
  for (const [key, state] of pairs) insert(store, text, table, rehash(key), key, state);
  return table;
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
  for (const [key, state] of entries(store.text[slot])) out.text.push([key, encodeState(store, state)]);
  for (const [key, state] of entries(store.bytes[slot])) out.bytes.push([Buffer.from(key, "latin1"), encodeState(store, state)]);
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
    store.text[slot] = tableOf(store, true, exported.text.map(([key, state]) => [key, decodeState(store, state)]));
    store.bytes[slot] = tableOf(store, false, exported.bytes.map(([key, state]) => [bytesKey(key), decodeState(store, state)]));
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
