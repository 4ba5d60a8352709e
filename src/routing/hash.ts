/**
 * Key -> routing slot. The slot is the top bits of the key's xxhash64, so each slot is an equal
 * subinterval of the hash space and contiguous slot ranges are contiguous hash ranges.
 */
import { endianness } from "node:os";
import xxhash from "xxhash-wasm";
import type { Key } from "../app/spec.ts";
import { ErrorCode, KeywayError } from "../errors.ts";
import { xxh64HighShortAscii } from "./xxh64-short.ts";

export const SLOT_COUNT_DEFAULT = 4096;
export const SLOT_COUNT_MAX = 65536;

type Hasher = Awaited<ReturnType<typeof xxhash>>;
let hasher: Promise<Hasher> | undefined;

/** One WASM instance per process: instantiating it per key or per call would dominate. */
function loadHasher(): Promise<Hasher> {
  hasher ??= xxhash();
  return hasher;
}

export function checkSlotCount(slotCount: number): void {
  const ok = Number.isInteger(slotCount) && slotCount >= 1 && slotCount <= SLOT_COUNT_MAX;
  if (!ok || (slotCount & (slotCount - 1)) !== 0) {
    throw new KeywayError(ErrorCode.USAGE, `slot count ${slotCount} must be a power of two from 1 to ${SLOT_COUNT_MAX}`);
  }
}

/**
 * Returns a key's routing hash: the high 32 bits of xxhash64 (seed 0) over its UTF-8 bytes, as a
 * signed 32-bit number (a small integer to V8, so arrays of them hold no boxed numbers). Its top
 * bits are the key's slot (slotOfHash); a keyed stage's state tables index by its low bits, so a
 * record's key is hashed once.
 */
export async function createKeyHash(): Promise<(key: Key) => number> {
  const { h64, h64Raw } = await loadHasher();
  // h64 returns a BigInt; reading its high half through a typed-array view avoids BigInt shifts.
  const word = new BigUint64Array(1);
  const halves = new Uint32Array(word.buffer);
  const high = endianness() === "LE" ? 1 : 0;
  return (key: Key): number => {
    if (typeof key === "string") {
      const short = xxh64HighShortAscii(key);
      if (short !== -1) return short | 0;
      word[0] = h64(key);
    } else {
      word[0] = h64Raw(key);
    }
    return halves[high]! | 0;
  };
}

/** What slotOfHash shifts by for a slot count (a power of two). */
export function hashShift(slotCount: number): number {
  return 32 - Math.log2(slotCount);
}

/** A routing hash's slot: its top log2(slotCount) bits (two shifts, as JS shifts by 32 as by 0). */
export function slotOfHash(hash: number, shift: number): number {
  return (hash >>> 1) >>> (shift - 1);
}

/** Returns slotOf(key) for a fixed slot count (a power of two). */
export async function createSlotOf(slotCount: number = SLOT_COUNT_DEFAULT): Promise<(key: Key) => number> {
  checkSlotCount(slotCount);
  const hashOf = await createKeyHash();
  const shift = hashShift(slotCount);
  return (key: Key): number => slotOfHash(hashOf(key), shift);
}
