/**
 * Key -> routing slot. The slot is the top bits of the key's xxhash64, so each slot is an equal
 * subinterval of the hash space and contiguous slot ranges are contiguous hash ranges.
 */
import { endianness } from "node:os";
import xxhash from "xxhash-wasm";
import type { Key } from "../app/spec.ts";
import { ErrorCode, KeywayError } from "../errors.ts";

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

/** Returns slotOf(key) for a fixed slot count (a power of two). */
export async function createSlotOf(slotCount: number = SLOT_COUNT_DEFAULT): Promise<(key: Key) => number> {
  checkSlotCount(slotCount);
  const { h64, h64Raw } = await loadHasher();
  const shift = 32 - Math.log2(slotCount);
  // h64 returns a BigInt; reading its high half through a typed-array view avoids BigInt shifts.
  const word = new BigUint64Array(1);
  const halves = new Uint32Array(word.buffer);
  const high = endianness() === "LE" ? 1 : 0;
  if (shift === 32) return () => 0;
  return (key: Key): number => {
    word[0] = typeof key === "string" ? h64(key) : h64Raw(key);
    return halves[high]! >>> shift;
  };
}
