/**
 * The high 32 bits of xxhash64 (seed 0) of a short ASCII string, in plain JavaScript on 32-bit
 * halves. Most keys are short words: for them this skips what the WASM path costs per key (the
 * copy of the string into WASM memory and a BigInt result): 75-90 ns a word of the benchmark
 * corpus against 105-170. Equal to xxhash-wasm's h64 for every string it accepts; it returns -1
 * for one it does not (not ASCII, or longer than SHORT_KEY_MAX), which the caller hashes in WASM.
 *
 * Halves are kept in locals and products written out in place: module-level scratch variables or
 * a helper returning two halves made it three times slower.
 */

// The xxhash64 primes as high and low 32-bit halves.
const P1_HI = 0x9e3779b1 | 0;
const P1_LO = 0x85ebca87 | 0;
const P2_HI = 0xc2b2ae3d | 0;
const P2_LO = 0x27d4eb4f | 0;
const P3_HI = 0x165667b1 | 0;
const P3_LO = 0x9e3779f9 | 0;
const P4_HI = 0x85ebca77 | 0;
const P4_LO = 0xc2b2ae63;
const P5_HI = 0x27d4eb2f | 0;
const P5_LO = 0x165667c5;

/** Longer keys take xxhash64's 32-byte stripes, which this does not implement. */
export const SHORT_KEY_MAX = 31;

/** The high 32 bits of the 64-bit product of two 32-bit numbers taken as unsigned. */
function mulHigh32(a: number, b: number): number {
  const a0 = a & 0xffff;
  const a1 = a >>> 16;
  const b0 = b & 0xffff;
  const b1 = b >>> 16;
  const carry = ((a0 * b0) >>> 16) + a1 * b0 + a0 * b1;
  return (a1 * b1 + carry / 65536) | 0;
}

/** Four characters from i as a little-endian 32-bit lane, or -1 if any is not ASCII. */
function lane32(key: string, i: number): number {
  const a = key.charCodeAt(i);
  const b = key.charCodeAt(i + 1);
  const c = key.charCodeAt(i + 2);
  const d = key.charCodeAt(i + 3);
  return (a | b | c | d) > 0x7f ? -1 : a | (b << 8) | (c << 16) | (d << 24);
}

// Products below are (xHi, xLo) * (P_HI, P_LO) mod 2^64, written out:
//   high = imul(xHi, P_LO) + imul(xLo, P_HI) + mulHigh32(xLo, P_LO), low = imul(xLo, P_LO).

export function xxh64HighShortAscii(key: string): number {
  const length = key.length;
  if (length > SHORT_KEY_MAX) return -1;
  let hHi = P5_HI;
  let hLo = (P5_LO + length) | 0;
  let i = 0;
  for (; i + 8 <= length; i += 8) {
    const lo = lane32(key, i);
    const hi = lane32(key, i + 4);
    if (lo === -1 || hi === -1) return -1;
    // h ^= rotl(lane * P2, 31) * P1
    const mHi = (Math.imul(hi, P2_LO) + Math.imul(lo, P2_HI) + mulHigh32(lo, P2_LO)) | 0;
    const mLo = Math.imul(lo, P2_LO);
    const kHi = (mHi << 31) | (mLo >>> 1);
    const kLo = (mLo << 31) | (mHi >>> 1);
    hHi ^= Math.imul(kHi, P1_LO) + Math.imul(kLo, P1_HI) + mulHigh32(kLo, P1_LO);
    hLo ^= Math.imul(kLo, P1_LO);
    // h = rotl(h, 27) * P1 + P4
    const rHi = (hHi << 27) | (hLo >>> 5);
    const rLo = (hLo << 27) | (hHi >>> 5);
    const sum = (Math.imul(rLo, P1_LO) >>> 0) + P4_LO;
    hHi = (Math.imul(rHi, P1_LO) + Math.imul(rLo, P1_HI) + mulHigh32(rLo, P1_LO) + P4_HI + (sum > 0xffffffff ? 1 : 0)) | 0;
    hLo = sum | 0;
  }
  if (i + 4 <= length) {
    const lane = lane32(key, i);
    if (lane === -1) return -1;
    // h ^= lane * P1; h = rotl(h, 23) * P2 + P3
    hHi ^= Math.imul(lane, P1_HI) + mulHigh32(lane, P1_LO);
    hLo ^= Math.imul(lane, P1_LO);
    const rHi = (hHi << 23) | (hLo >>> 9);
    const rLo = (hLo << 23) | (hHi >>> 9);
    const sum = (Math.imul(rLo, P2_LO) >>> 0) + (P3_LO >>> 0);
    hHi = (Math.imul(rHi, P2_LO) + Math.imul(rLo, P2_HI) + mulHigh32(rLo, P2_LO) + P3_HI + (sum > 0xffffffff ? 1 : 0)) | 0;
    hLo = sum | 0;
    i += 4;
  }
  for (; i < length; i++) {
    const byte = key.charCodeAt(i);
    if (byte > 0x7f) return -1;
    // h ^= byte * P5; h = rotl(h, 11) * P1
    hHi ^= Math.imul(byte, P5_HI) + mulHigh32(byte, P5_LO);
    hLo ^= Math.imul(byte, P5_LO);
    const rHi = (hHi << 11) | (hLo >>> 21);
    const rLo = (hLo << 11) | (hHi >>> 21);
    hHi = (Math.imul(rHi, P1_LO) + Math.imul(rLo, P1_HI) + mulHigh32(rLo, P1_LO)) | 0;
    hLo = Math.imul(rLo, P1_LO);
  }
  // Avalanche: h ^= h >> 33; h *= P2; h ^= h >> 29; h *= P3; h ^= h >> 32 (which keeps the high half).
  hLo ^= hHi >>> 1;
  const mHi = (Math.imul(hHi, P2_LO) + Math.imul(hLo, P2_HI) + mulHigh32(hLo, P2_LO)) | 0;
  const mLo = Math.imul(hLo, P2_LO);
  hHi = mHi ^ (mHi >>> 29);
  hLo = mLo ^ ((mHi << 3) | (mLo >>> 29));
  return (Math.imul(hHi, P3_LO) + Math.imul(hLo, P3_HI) + mulHigh32(hLo, P3_LO)) >>> 0;
}
