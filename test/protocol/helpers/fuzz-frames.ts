/**
 * Pure building blocks of the protocol fuzzer (test/protocol/fuzz.test.ts): seeded generators, a
 * minimal protobuf wire-format walker, and mutators that turn a good serialised message into a bad
 * one. Every mutator says what it did in words, so a failing case can be read and replayed.
 *
 * A mutation lands at a random depth: the walker may descend into a length-delimited field whose
 * payload parses as fields (a nested message, or by chance a string), mutate that payload, and
 * re-encode the lengths of every enclosing field, so the outer frames stay well formed and the
 * damage reaches the engine's checks of the inner message instead of failing the outermost parse.
 */
import { prng } from "../../helpers/text.ts";

/** A float in [0, 1). */
export type Rng = () => number;

/** The generator of one fuzz case: depends on the run's seed and the case's index only, not on timing. */
export function caseRng(seed: number, index: number): Rng {
  // A splitmix-style mix, so neighbouring (seed, index) pairs give unrelated streams.
  let h = (seed ^ Math.imul(index + 1, 0x9e3779b9)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return prng((h ^ (h >>> 16)) >>> 0);
}

/** An integer in [lo, hi]. */
export const int = (rng: Rng, lo: number, hi: number): number => lo + Math.floor(rng() * (hi - lo + 1));
export const pick = <T>(rng: Rng, items: readonly T[]): T => items[Math.floor(rng() * items.length)]!;
export const chance = (rng: Rng, p: number): boolean => rng() < p;

export function randomBytes(rng: Rng, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = Math.floor(rng() * 256);
  return out;
}

export function hex(bytes: Uint8Array, max = 160): string {
  const shown = Buffer.from(bytes.subarray(0, max)).toString("hex");
  return bytes.length > max ? `${shown}... (${bytes.length} bytes)` : shown;
}

// ---- the wire format ----

export const WIRE = { varint: 0, fixed64: 1, len: 2, startGroup: 3, endGroup: 4, fixed32: 5 } as const;

export function varint(value: bigint | number): Uint8Array {
  let v = BigInt.asUintN(64, BigInt(value));
  const out: number[] = [];
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return Uint8Array.from(out);
}

export function tag(fieldNumber: number, wireType: number): Uint8Array {
  return varint((BigInt(fieldNumber) << 3n) | BigInt(wireType & 7));
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function readVarint(bytes: Uint8Array, at: number): { value: bigint; next: number } | undefined {
  let value = 0n;
  for (let i = 0; i < 10; i++) {
    if (at + i >= bytes.length) return undefined;
    const b = bytes[at + i]!;
    value |= BigInt(b & 0x7f) << BigInt(7 * i);
    if ((b & 0x80) === 0) return { value, next: at + i + 1 };
  }
  return undefined;
}

/** One field of a message body, as offsets into it. */
export interface WireField {
  number: number;
  wireType: number;
  /** Where the tag starts. */
  start: number;
  /** Where the tag ends (and the value, or the length prefix, starts). */
  tagEnd: number;
  /** Where the value starts: after the length prefix for a length-delimited field. */
  valueStart: number;
  /** Where the field ends. */
  end: number;
}

/** The fields of a message body, or undefined when it does not parse (groups are not walked). */
export function parseFields(bytes: Uint8Array): WireField[] | undefined {
  const fields: WireField[] = [];
  let at = 0;
  while (at < bytes.length) {
    const t = readVarint(bytes, at);
    if (t === undefined || t.value > 0xffffffffn) return undefined;
    const number = Number(t.value >> 3n);
    const wireType = Number(t.value & 7n);
    if (number === 0) return undefined;
    let valueStart = t.next;
    let end: number;
    switch (wireType) {
      case WIRE.varint: {
        const v = readVarint(bytes, t.next);
        if (v === undefined) return undefined;
        end = v.next;
        break;
      }
      case WIRE.fixed64:
        end = t.next + 8;
        break;
      case WIRE.fixed32:
        end = t.next + 4;
        break;
      case WIRE.len: {
        const n = readVarint(bytes, t.next);
        if (n === undefined) return undefined;
        valueStart = n.next;
        end = n.next + Number(n.value);
        if (n.value > BigInt(bytes.length)) return undefined;
        break;
      }
      default:
        return undefined;
    }
    if (end > bytes.length) return undefined;
    fields.push({ number, wireType, start: at, tagEnd: t.next, valueStart, end });
    at = end;
  }
  return fields;
}

// ---- mutators ----

export interface MutationContext {
  /** The engine's max_message_bytes: oversized frames are built around it. */
  maxMessageBytes: number;
  /** The engine's gRPC receive limit (twice max_message_bytes plus 1 MiB). */
  grpcReceiveLimit: number;
  /** True at the top level of a frame (whole-frame mutations apply only there). */
  top: boolean;
}

export interface Mutated {
  body: Uint8Array;
  what: string;
}

type Mutator = (rng: Rng, body: Uint8Array, ctx: MutationContext) => Mutated | undefined;

const fieldName = (f: WireField) => `field ${f.number} (wire type ${f.wireType}) at byte ${f.start}`;

const splice = (body: Uint8Array, from: number, to: number, insert: Uint8Array): Uint8Array =>
  concat(body.subarray(0, from), insert, body.subarray(to));

/** Field boundaries of a body (every offset where a field may be inserted), or just its end. */
function boundaries(body: Uint8Array): number[] {
  const fields = parseFields(body);
  return fields === undefined ? [body.length] : [0, ...fields.map((f) => f.end)];
}

const HUGE_VARINTS: ReadonlyArray<{ name: string; bytes: Uint8Array }> = [
  { name: "2^64-1", bytes: varint(2n ** 64n - 1n) },
  { name: "2^63", bytes: varint(2n ** 63n) },
  { name: "2^32", bytes: varint(2n ** 32n) },
  { name: "2^32-1", bytes: varint(2n ** 32n - 1n) },
  { name: "2^31", bytes: varint(2n ** 31n) },
  { name: "-1 as int64", bytes: varint(-1n) },
  { name: "an overlong 10-byte 0", bytes: Uint8Array.from([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00]) },
  { name: "an 11-byte varint", bytes: Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]) },
  { name: "a 10-byte varint with high bits past 64", bytes: Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]) },
];

const UNKNOWN_NUMBERS = [9, 12, 15, 16, 100, 2047, 2048, 19000, 262143, 536870911];

function unknownFieldBytes(rng: Rng): { bytes: Uint8Array; what: string } {
  const number = pick(rng, UNKNOWN_NUMBERS);
  const wireType = pick(rng, [WIRE.varint, WIRE.fixed64, WIRE.len, WIRE.fixed32, WIRE.startGroup]);
  let value: Uint8Array;
  switch (wireType) {
    case WIRE.varint:
      value = pick(rng, [varint(int(rng, 0, 300)), ...HUGE_VARINTS.slice(0, 7).map((h) => h.bytes)]);
      break;
    case WIRE.fixed64:
      value = randomBytes(rng, 8);
      break;
    case WIRE.fixed32:
      value = randomBytes(rng, 4);
      break;
    case WIRE.len: {
      const payload = randomBytes(rng, int(rng, 0, 24));
      value = concat(varint(payload.length), payload);
      break;
    }
    default:
      // A group holding a varint field, closed by its end-group tag.
      value = concat(tag(1, WIRE.varint), varint(int(rng, 0, 1000)), tag(number, WIRE.endGroup));
  }
  return { bytes: concat(tag(number, wireType), value), what: `unknown field ${number} (wire type ${wireType}, ${value.length} bytes)` };
}

export const MUTATORS: Readonly<Record<string, Mutator>> = {
  "bit-flip": (rng, body) => {
    if (body.length === 0) return undefined;
    const out = body.slice();
    const flips: string[] = [];
    for (let n = int(rng, 1, 4); n > 0; n--) {
      const at = int(rng, 0, out.length - 1);
      const bit = int(rng, 0, 7);
      out[at]! ^= 1 << bit;
      flips.push(`${at}:${bit}`);
    }
    return { body: out, what: `bit flips (byte:bit) ${flips.join(" ")}` };
  },

  truncate: (rng, body) => {
    if (body.length === 0) return undefined;
    const keep = int(rng, 0, body.length - 1);
    return { body: body.slice(0, keep), what: `truncated to ${keep} of ${body.length} bytes` };
  },

  "unknown-field": (rng, body) => {
    const at = pick(rng, boundaries(body));
    const field = unknownFieldBytes(rng);
    return { body: splice(body, at, at, field.bytes), what: `${field.what} inserted at byte ${at}` };
  },

  "duplicate-field": (rng, body) => {
    const fields = parseFields(body);
    if (fields === undefined || fields.length === 0) return undefined;
    const f = pick(rng, fields);
    const copy = body.slice(f.start, f.end);
    const at = chance(rng, 0.5) ? f.end : body.length;
    return { body: splice(body, at, at, copy), what: `${fieldName(f)} duplicated at byte ${at}` };
  },

  "huge-varint": (rng, body) => {
    const huge = pick(rng, HUGE_VARINTS);
    const fields = (parseFields(body) ?? []).filter((f) => f.wireType === WIRE.varint);
    if (fields.length > 0) {
      const f = pick(rng, fields);
      return { body: splice(body, f.tagEnd, f.end, huge.bytes), what: `${fieldName(f)} set to ${huge.name}` };
    }
    const number = int(rng, 1, 8);
    const at = pick(rng, boundaries(body));
    return { body: splice(body, at, at, concat(tag(number, WIRE.varint), huge.bytes)), what: `varint field ${number} = ${huge.name} inserted at byte ${at}` };
  },

  "wrong-wire-type": (rng, body) => {
    const fields = parseFields(body);
    if (fields === undefined || fields.length === 0) return undefined;
    const f = pick(rng, fields);
    const wireType = pick(rng, [0, 1, 2, 3, 4, 5, 6, 7].filter((w) => w !== f.wireType));
    return { body: splice(body, f.start, f.tagEnd, tag(f.number, wireType)), what: `${fieldName(f)} retagged as wire type ${wireType}` };
  },

  "oversized-length": (rng, body) => {
    const fields = (parseFields(body) ?? []).filter((f) => f.wireType === WIRE.len);
    const choices = (n: number) => [
      { name: `${n + 1} (1 past the data)`, v: BigInt(n + 1) },
      { name: `${n + 1000}`, v: BigInt(n + 1000) },
      { name: "2^31-1", v: 2n ** 31n - 1n },
      { name: "2^32-1", v: 2n ** 32n - 1n },
      { name: "2^32+1", v: 2n ** 32n + 1n },
      { name: "2^64-1", v: 2n ** 64n - 1n },
    ];
    if (fields.length > 0) {
      const f = pick(rng, fields);
      const length = pick(rng, choices(f.end - f.valueStart));
      return { body: splice(body, f.tagEnd, f.valueStart, varint(length.v)), what: `${fieldName(f)} length set to ${length.name}` };
    }
    const number = int(rng, 1, 8);
    const payload = randomBytes(rng, int(rng, 0, 8));
    const length = pick(rng, choices(payload.length));
    return { body: concat(body, tag(number, WIRE.len), varint(length.v), payload), what: `field ${number} appended with length ${length.name} over ${payload.length} bytes` };
  },

  "field-number": (rng, body) => {
    const fields = parseFields(body);
    if (fields === undefined || fields.length === 0) return undefined;
    const f = pick(rng, fields);
    const number = pick(rng, [0, 1, 2, 3, 4, 5, 6, 7, 8, 19000, 536870911, f.number + 1]);
    // Field 0 and numbers past 2^29-1 are invalid tags: encode the tag varint directly.
    return { body: splice(body, f.start, f.tagEnd, varint((BigInt(number) << 3n) | BigInt(f.wireType))), what: `${fieldName(f)} renumbered to ${number}` };
  },

  "random-bytes": (rng, body) => {
    if (chance(rng, 0.5)) {
      const bytes = randomBytes(rng, int(rng, 0, 40));
      return { body: bytes, what: `replaced by ${bytes.length} random bytes` };
    }
    const at = int(rng, 0, body.length);
    const bytes = randomBytes(rng, int(rng, 1, 12));
    return { body: splice(body, at, at, bytes), what: `${bytes.length} random bytes inserted at byte ${at}` };
  },

  empty: (_rng, body) => (body.length === 0 ? undefined : { body: new Uint8Array(0), what: "emptied" }),

  "deep-groups": (rng, body) => {
    const depth = pick(rng, [99, 100, 101, 1000, 20000]);
    const closed = chance(rng, 0.7);
    const number = pick(rng, UNKNOWN_NUMBERS.slice(0, 6));
    const open = tag(number, WIRE.startGroup);
    const close = tag(number, WIRE.endGroup);
    const parts: Uint8Array[] = [];
    for (let i = 0; i < depth; i++) parts.push(open);
    if (closed) for (let i = 0; i < depth; i++) parts.push(close);
    const at = pick(rng, boundaries(body));
    return { body: splice(body, at, at, concat(...parts)), what: `${depth} nested ${closed ? "closed" : "unclosed"} groups of field ${number} at byte ${at}` };
  },

  "oversized-frame": (rng, body, ctx) => {
    if (!ctx.top) return undefined;
    // Pad with an unknown length-delimited field to a total size around a limit.
    const targets = [
      { name: "exactly max_message_bytes", size: ctx.maxMessageBytes },
      { name: "max_message_bytes + 1", size: ctx.maxMessageBytes + 1 },
      { name: "max_message_bytes + a little", size: ctx.maxMessageBytes + int(rng, 2, 5000) },
      { name: "over the gRPC receive limit", size: ctx.grpcReceiveLimit + int(rng, 1, 1000) },
    ];
    // The limit well past: rarely, it is a megabyte on the wire.
    const target = pick(rng, chance(rng, 0.15) ? targets : targets.slice(0, 3));
    const head = tag(15, WIRE.len);
    let pad = target.size - body.length - head.length - 1;
    while (head.length + varint(pad).length + pad + body.length > target.size) pad--;
    if (pad < 0) return undefined;
    const fill = new Uint8Array(pad).fill(0x61);
    return { body: concat(body, head, varint(pad), fill), what: `padded to ${target.size} bytes (${target.name})` };
  },
};

export const MUTATOR_NAMES = Object.keys(MUTATORS);

/** Where a mutation landed: top level, or inside which fields. */
function describePath(path: readonly WireField[]): string {
  return path.length === 0 ? "top level" : `inside ${path.map((f) => `field ${f.number}`).join(" > ")}`;
}

/**
 * Applies one mutation at a random depth of frame and re-encodes the lengths of the enclosing
 * fields. Returns the new frame and what was done.
 */
export function mutateOnce(rng: Rng, frame: Uint8Array, ctx: Omit<MutationContext, "top">, only?: string): Mutated {
  // Walk down: each level descends with probability 1/2 into a length-delimited field that parses.
  const levels: Array<{ bytes: Uint8Array; field: WireField }> = [];
  let body = frame;
  for (;;) {
    if (!chance(rng, 0.5)) break;
    const nested = (parseFields(body) ?? []).filter((f) => {
      if (f.wireType !== WIRE.len || f.end === f.valueStart) return false;
      const inner = parseFields(body.subarray(f.valueStart, f.end));
      return inner !== undefined && inner.length > 0;
    });
    if (nested.length === 0) break;
    const f = pick(rng, nested);
    levels.push({ bytes: body, field: f });
    body = body.subarray(f.valueStart, f.end);
  }
  const top = levels.length === 0;
  let mutated: Mutated | undefined;
  for (let tries = 0; mutated === undefined; tries++) {
    const name = only ?? pick(rng, MUTATOR_NAMES);
    mutated = MUTATORS[name]!(rng, body, { ...ctx, top });
    if (mutated !== undefined) mutated = { body: mutated.body, what: `${name}: ${mutated.what} (${describePath(levels.map((l) => l.field))})` };
    // Some mutators need fields or a top level: fall back to one that always applies.
    if (mutated === undefined && tries > 8) mutated = MUTATORS["random-bytes"]!(rng, body, { ...ctx, top })!;
  }
  let out = mutated.body;
  for (let i = levels.length - 1; i >= 0; i--) {
    const { bytes, field } = levels[i]!;
    out = concat(bytes.subarray(0, field.tagEnd), varint(out.length), out, bytes.subarray(field.end));
  }
  return { body: out, what: mutated.what };
}

/** One to three mutations of frame. */
export function mutate(rng: Rng, frame: Uint8Array, ctx: Omit<MutationContext, "top">): { frame: Uint8Array; mutations: string[] } {
  const count = pick(rng, [1, 1, 1, 1, 2, 2, 3]);
  const mutations: string[] = [];
  let out = frame;
  for (let i = 0; i < count; i++) {
    const m = mutateOnce(rng, out, ctx);
    out = m.body;
    mutations.push(m.what);
  }
  return { frame: out, mutations };
}
