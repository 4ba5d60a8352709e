/** A seeded generator (sfc32): every choice the simulator makes comes from one, so a seed replays exactly. */
export interface Random {
  /** A float in [0, 1). */
  next(): number;
  /** An integer in [lo, hi]. */
  int(lo: number, hi: number): number;
  chance(p: number): boolean;
  pick<T>(items: readonly T[]): T;
  /** An independent generator for one concern, so drawing more for one does not shift another's draws. */
  fork(): Random;
}

export function createRandom(seed: number): Random {
  let a = 0x9e3779b9 ^ seed;
  let b = 0x243f6a88 + seed * 7;
  let c = 0xb7e15162 ^ (seed >>> 3);
  let d = seed | 1;
  const next = (): number => {
    a |= 0;
    b |= 0;
    c |= 0;
    d |= 0;
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return (t >>> 0) / 4294967296;
  };
  // The first outputs of sfc32 correlate with the seed: discard them.
  for (let i = 0; i < 15; i++) next();
  const random: Random = {
    next,
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
    chance: (p) => next() < p,
    pick: (items) => items[Math.floor(next() * items.length)]!,
    fork: () => createRandom(Math.floor(next() * 2 ** 31)),
  };
  return random;
}
