/** Deterministic test text and an independent word counter to check the engine against. */

/** mulberry32: a tiny seeded PRNG, so a failing run can be reproduced exactly. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "ze", "qu", "ä", "ß", "é", "ø", "ж", "λ", "7", "42"];
const SEPARATORS = [" ", " ", " ", ", ", ". ", " - ", "; ", "!  ", " (", ") ", "'"];

/** Lines of words drawn with a skewed distribution, mixed case, Unicode letters, digits and punctuation. */
export function generateText(words: number, seed: number, vocabulary = 20_000): string {
  const random = prng(seed);
  const vocab: string[] = [];
  for (let i = 0; i < vocabulary; i++) {
    let w = "";
    const n = 1 + Math.floor(random() * 4);
    for (let j = 0; j < n; j++) w += SYLLABLES[Math.floor(random() * SYLLABLES.length)];
    vocab.push(random() < 0.2 ? w.toUpperCase() : w);
  }
  const lines: string[] = [];
  let line = "";
  for (let i = 0; i < words; i++) {
    // Squaring the uniform draw skews towards the head of the vocabulary, like real text.
    const r = random();
    line += vocab[Math.floor(r * r * vocabulary)];
    line += SEPARATORS[Math.floor(random() * SEPARATORS.length)];
    if (random() < 0.08) {
      lines.push(line);
      line = "";
    }
  }
  lines.push(line);
  return lines.join("\n") + "\n";
}

/** The word splitting of examples/word-count, written again here so the test checks it independently. */
export function countWords(text: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const line of text.split("\n")) {
    for (const word of line.toLowerCase().split(/[^\p{L}\p{N}]+/u)) {
      if (word !== "") counts.set(word, (counts.get(word) ?? 0) + 1);
    }
  }
  return counts;
}
