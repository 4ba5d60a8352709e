/**
 * Just enough of JSON Schema 2020-12 to hold the conformance case and fixture files to their
 * schemas (no validator is a dependency of this project): type, const, enum, pattern, minimum,
 * minLength, minItems, uniqueItems, properties, required, additionalProperties, items, anyOf,
 * oneOf, allOf, if/then/else and local $ref.
 */
type Schema = Record<string, unknown> | boolean;

export function validate(schema: Schema, value: unknown): string[] {
  const root = schema;
  const errors: string[] = [];
  const check = (s: Schema, v: unknown, path: string): boolean => {
    const before = errors.length;
    walk(s, v, path);
    return errors.length === before;
  };
  const quietly = (s: Schema, v: unknown): boolean => {
    const saved = errors.length;
    const ok = check(s, v, "");
    errors.length = saved;
    return ok;
  };
  const resolve = (ref: string): Schema => {
    let node: unknown = root;
    for (const part of ref.replace(/^#\//, "").split("/")) node = (node as Record<string, unknown>)[part];
    if (node === undefined) throw new Error(`unresolved $ref ${ref}`);
    return node as Schema;
  };
  const typeOf = (v: unknown): string => (v === null ? "null" : Array.isArray(v) ? "array" : Number.isInteger(v) ? "integer" : typeof v);
  function walk(s: Schema, v: unknown, path: string): void {
    if (s === true) return;
    if (s === false) return void errors.push(`${path}: not allowed`);
    if (typeof s.$ref === "string") walk(resolve(s.$ref), v, path);
    if (typeof s.type === "string") {
      const t = typeOf(v);
      const ok = s.type === t || (s.type === "number" && t === "integer");
      if (!ok) return void errors.push(`${path}: expected ${s.type}, got ${t}`);
    }
    if ("const" in s && JSON.stringify(s.const) !== JSON.stringify(v)) errors.push(`${path}: expected ${JSON.stringify(s.const)}`);
    if (Array.isArray(s.enum) && !s.enum.some((e) => JSON.stringify(e) === JSON.stringify(v))) errors.push(`${path}: ${JSON.stringify(v)} is not one of ${JSON.stringify(s.enum)}`);
    if (typeof v === "string") {
      if (typeof s.pattern === "string" && !new RegExp(s.pattern, "u").test(v)) errors.push(`${path}: "${v}" does not match ${s.pattern}`);
      if (typeof s.minLength === "number" && v.length < s.minLength) errors.push(`${path}: shorter than ${s.minLength}`);
    }
    if (typeof v === "number" && typeof s.minimum === "number" && v < s.minimum) errors.push(`${path}: below ${s.minimum}`);
    if (Array.isArray(v)) {
      if (typeof s.minItems === "number" && v.length < s.minItems) errors.push(`${path}: fewer than ${s.minItems} items`);
      if (s.uniqueItems === true && new Set(v.map((x) => JSON.stringify(x))).size !== v.length) errors.push(`${path}: items not unique`);
      if (s.items !== undefined) v.forEach((item, i) => walk(s.items as Schema, item, `${path}[${i}]`));
    }
    if (typeOf(v) === "object") {
      const obj = v as Record<string, unknown>;
      const props = (s.properties ?? {}) as Record<string, Schema>;
      for (const r of (s.required as string[] | undefined) ?? []) if (!(r in obj)) errors.push(`${path}: missing "${r}"`);
      for (const [k, item] of Object.entries(obj)) {
        if (k in props) walk(props[k]!, item, `${path}.${k}`);
        else if (s.additionalProperties === false) errors.push(`${path}: unexpected "${k}"`);
        else if (typeof s.additionalProperties === "object") walk(s.additionalProperties as Schema, item, `${path}.${k}`);
      }
    }
    if (Array.isArray(s.allOf)) for (const sub of s.allOf) walk(sub as Schema, v, path);
    if (Array.isArray(s.anyOf) && !s.anyOf.some((sub) => quietly(sub as Schema, v))) errors.push(`${path}: matches none of anyOf`);
    if (Array.isArray(s.oneOf)) {
      const n = s.oneOf.filter((sub) => quietly(sub as Schema, v)).length;
      if (n !== 1) errors.push(`${path}: matches ${n} of oneOf (${describe(v)})`);
    }
    if (s.if !== undefined) {
      if (quietly(s.if as Schema, v)) {
        if (s.then !== undefined) walk(s.then as Schema, v, path);
      } else if (s.else !== undefined) walk(s.else as Schema, v, path);
    }
  }
  check(schema, value, "$");
  return errors;
}

function describe(v: unknown): string {
  const text = JSON.stringify(v);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}
