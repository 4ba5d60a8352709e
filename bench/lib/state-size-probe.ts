/**
 * Measures heap bytes per key of the engine's keyed state store against a plain Map holding the
 * same keys and the same state objects. Runs as its own process under --expose-gc so forced full
 * collections make heapUsed deltas exact enough, and so the orchestrator's heap does not blur them.
 *
 * The key strings are allocated before either measurement and shared by both, so the figures are
 * the structure plus the state object per key; the key strings' own size is reported apart.
 *
 * With `--only engine|map N`, it fills just that side with N keys and exits, so the caller can
 * read the process's peak RSS from outside (the keys' strings are in both sides' figure).
 *
 * usage: node --expose-gc --import tsx bench/lib/state-size-probe.ts N [N...]   (prints JSON)
 *        node --expose-gc --import tsx bench/lib/state-size-probe.ts --only engine|map N
 */
import { createKeyHash, SLOT_COUNT_DEFAULT } from "../../src/routing/hash.ts";
import { createStageStore, stateFor, dropSlot } from "../../src/runtime/state-store.ts";
import { buildVocabulary } from "./text-gen.ts";

export interface StateSizeSample {
  keys: number;
  slotCount: number;
  keyStringBytesPerKey: number;
  engineBytesPerKey: number;
  mapBytesPerKey: number;
}

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) {
  process.stderr.write("state-size-probe: run with node --expose-gc\n");
  process.exit(2);
}
const forceGc = gc;

function heapAfterFullGc(): number {
  // Several passes: the first can leave garbage that only the next finalises (weak refs, maps).
  for (let i = 0; i < 4; i++) forceGc();
  return process.memoryUsage().heapUsed;
}

const args = process.argv.slice(2);
const only = args[0] === "--only" ? args[1] : undefined;
const sizes = (only === undefined ? args : args.slice(2)).map(Number);
if (sizes.length === 0 || sizes.some((n) => !Number.isSafeInteger(n) || n <= 0) || (only !== undefined && only !== "engine" && only !== "map")) {
  process.stderr.write("usage: state-size-probe.ts N [N...] | --only engine|map N\n");
  process.exit(2);
}

const hashOf = await createKeyHash();
const init = () => ({ count: 0 });
const samples: StateSizeSample[] = [];

if (only !== undefined) {
  const n = sizes[0]!;
  const keys = buildVocabulary(n, 7);
  let held: number;
  if (only === "engine") {
    const store = createStageStore(SLOT_COUNT_DEFAULT, hashOf);
    for (let i = 0; i < n; i++) (stateFor(store, hashOf(keys[i]!), keys[i]!, init) as { count: number }).count = (i % 1000) + 1;
    held = store.keyCount;
  } else {
    const map = new Map<string, { count: number }>();
    for (let i = 0; i < n; i++) map.set(keys[i]!, { count: (i % 1000) + 1 });
    held = map.size;
  }
  if (held !== n) throw new Error(`${only} holds ${held} keys, expected ${n}`);
  process.stdout.write(`${JSON.stringify({ keys: n, side: only })}\n`);
  process.exit(0);
}

for (const n of sizes) {
  let before = heapAfterFullGc();
  // Vocabulary words, so key lengths are those of the word-count corpus's long tail.
  const keys = buildVocabulary(n, 7);
  const hashes = Int32Array.from(keys, (k) => hashOf(k));
  const keyStringBytesPerKey = (heapAfterFullGc() - before) / n;

  before = heapAfterFullGc();
  const store = createStageStore(SLOT_COUNT_DEFAULT, hashOf);
  for (let i = 0; i < n; i++) (stateFor(store, hashes[i]!, keys[i]!, init) as { count: number }).count = (i % 1000) + 1;
  const engineBytesPerKey = (heapAfterFullGc() - before) / n;
  if (store.keyCount !== n) throw new Error(`store holds ${store.keyCount} keys, expected ${n}`);

  // Same process, same keys: the only difference left is the structure holding them.
  for (let slot = 0; slot < store.slotCount; slot++) dropSlot(store, slot);
  before = heapAfterFullGc();
  const map = new Map<string, { count: number }>();
  for (let i = 0; i < n; i++) map.set(keys[i]!, { count: (i % 1000) + 1 });
  const mapBytesPerKey = (heapAfterFullGc() - before) / n;
  if (map.size !== n) throw new Error(`map holds ${map.size} keys, expected ${n}`);
  map.clear();

  samples.push({ keys: n, slotCount: SLOT_COUNT_DEFAULT, keyStringBytesPerKey, engineBytesPerKey, mapBytesPerKey });
}

process.stdout.write(`${JSON.stringify(samples)}\n`);
