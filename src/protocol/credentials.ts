/**
 * Who may open which connector sessions (issue 15 item 3). A credential is a token, or a client
 * certificate's subject (under mutual TLS), with a scope: the roles and targets it may use, and
 * for sources the stream-name prefixes it may open. `--credentials FILE` holds them as JSON and is
 * read again on SIGHUP; `--token` is one more credential, with every scope.
 *
 *   {"credentials": [
 *     {"name": "lines-feed", "token": "s3cret", "allow": [{"role": "source", "targets": ["lines"], "streamPrefixes": ["feed/"]}]},
 *     {"name": "counts-writer", "subject": "CN=counts-sink", "allow": [{"role": "sink", "targets": ["counts"]}]},
 *     {"name": "ops", "tokenSha256": "<hex of sha256(token)>", "allow": "*"}
 *   ]}
 *
 * Tokens are kept and compared as SHA-256 digests, in constant time (timingSafeEqual over equal
 * lengths), against every token credential whatever matches first, so neither timing nor order
 * tells a guess how close it came. A file may hold the digest instead of the token.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import type { PeerCertificate } from "node:tls";
import { ErrorCode, KeywayError } from "../errors.ts";

export type Role = "source" | "sink" | "partitioner";
const ROLES: readonly Role[] = ["source", "sink", "partitioner"];

/** One line of a credential's scope. */
export interface Grant {
  role: Role;
  /** Target names, or every target. */
  targets: readonly string[] | "*";
  /** Source only: the stream names it may open start with one of these; every name when absent. */
  streamPrefixes?: readonly string[];
}

/** What a session authenticated as. */
export interface Credential {
  /** For logs and errors; never the token. */
  readonly name: string;
  /** Every scope (the `--token` credential, a trusted certificate without a credentials file, or "allow": "*"). */
  readonly all: boolean;
  readonly grants: readonly Grant[];
}

/** Whether the credential may open a session of this role on this target. */
export function allowsTarget(credential: Credential, role: Role, target: string): boolean {
  return credential.all || credential.grants.some((g) => g.role === role && (g.targets === "*" || g.targets.includes(target)));
}

/** Whether a source session of this credential on `target` may open `stream`. */
export function allowsStream(credential: Credential, target: string, stream: string): boolean {
  if (credential.all) return true;
  return credential.grants.some(
    (g) => g.role === "source" && (g.targets === "*" || g.targets.includes(target)) && (g.streamPrefixes === undefined || g.streamPrefixes.some((p) => stream.startsWith(p))),
  );
}

/** The stream prefixes a credential allows on a source target, for an error message. */
export function streamPrefixesOf(credential: Credential, target: string): string[] {
  return credential.grants.filter((g) => g.role === "source" && (g.targets === "*" || g.targets.includes(target))).flatMap((g) => g.streamPrefixes ?? []);
}

/** Decides who a session is: from its Hello's token, or its client certificate. */
export interface Authenticator {
  /** Whether a Hello must carry a token (DescribeResponse.token_required): some credential is a token, and none is a certificate's subject. */
  readonly tokenRequired: boolean;
  /** Whether some credential is a token (a token given is then checked). */
  readonly hasTokens: boolean;
  /**
   * The session's credential, or undefined (UNAUTHENTICATED). When the engine has token
   * credentials, a token given must match one (without a credentials file, one must be given);
   * without a token, the client certificate's subject must match a subject credential (the first
   * in the file's order). With no token and no file, a certificate the engine's CA signed (mutual
   * TLS) has every scope.
   */
  authenticate(token: string, peer: PeerCertificate | undefined): Credential | undefined;
  /** Called after every reload; returns the unsubscribe. */
  onChange(listener: () => void): () => void;
}

const digest = (token: string): Buffer => createHash("sha256").update(token, "utf8").digest();

interface TokenEntry {
  digest: Buffer;
  credential: Credential;
}

interface SubjectEntry {
  /** Every attribute must equal the certificate subject's. */
  attributes: ReadonlyArray<readonly [string, string]>;
  credential: Credential;
}

interface Parsed {
  tokens: TokenEntry[];
  subjects: SubjectEntry[];
}

const ALL: Omit<Credential, "name"> = { all: true, grants: [] };
/** The `--token` credential's name in logs. */
export const TOKEN_CREDENTIAL = "--token";
/** The credential of a client certificate the engine's CA signed, when no token nor credentials file says more. */
export const CERTIFICATE_CREDENTIAL = "client certificate";

type Fail = (where: string, problem: string) => never;

/**
 * Parses a credentials file's text; every problem is a USAGE error naming the file, the entry and
 * the field.
 */
export function parseCredentials(text: string, source: string): Parsed {
  const fail: Fail = (where, problem) => {
    throw new KeywayError(ErrorCode.USAGE, `--credentials ${source}: ${where === "" ? "" : `${where}: `}${problem}`);
  };
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    fail("", `not JSON (${(err as Error).message})`);
  }
  if (!isObject(json)) return fail("", 'expected an object {"credentials": [...]}');
  unknownKeys(json, ["credentials"], "", fail);
  const list = json.credentials;
  if (!Array.isArray(list)) return fail("", '"credentials" must be an array of credentials');
  const parsed: Parsed = { tokens: [], subjects: [] };
  const names = new Set<string>();
  list.forEach((entry: unknown, i) => {
    const at = `credentials[${i}]`;
    if (!isObject(entry)) return fail(at, "expected an object");
    const name = entry.name;
    if (typeof name !== "string" || name === "") return fail(at, '"name" must be a non-empty string');
    const where = `${at} ("${name}")`;
    if (names.has(name)) fail(where, "a second credential of this name");
    names.add(name);
    unknownKeys(entry, ["name", "token", "tokenSha256", "subject", "allow"], where, fail);
    const kinds = ["token", "tokenSha256", "subject"].filter((k) => entry[k] !== undefined);
    if (kinds.length !== 1) fail(where, 'give exactly one of "token", "tokenSha256" or "subject"');
    const credential: Credential = { name, ...parseAllow(entry.allow, where, fail) };
    if (entry.subject !== undefined) {
      parsed.subjects.push({ attributes: parseSubject(entry.subject, where, fail), credential });
      return;
    }
    let d: Buffer;
    if (entry.token !== undefined) {
      if (typeof entry.token !== "string" || entry.token === "") return fail(where, '"token" must be a non-empty string');
      d = digest(entry.token);
    } else {
      if (typeof entry.tokenSha256 !== "string" || !/^[0-9a-fA-F]{64}$/.test(entry.tokenSha256)) return fail(where, '"tokenSha256" must be 64 hexadecimal digits (the SHA-256 of the token)');
      d = Buffer.from(entry.tokenSha256, "hex");
    }
    const twin = parsed.tokens.find((t) => t.digest.equals(d));
    if (twin !== undefined) fail(where, `the same token as "${twin.credential.name}": one token names one credential`);
    parsed.tokens.push({ digest: d, credential });
  });
  return parsed;
}

function parseAllow(allow: unknown, where: string, fail: Fail): Omit<Credential, "name"> {
  if (allow === "*") return ALL;
  if (!Array.isArray(allow) || allow.length === 0) return fail(where, '"allow" must be "*" (every scope) or a non-empty array of {"role", "targets", "streamPrefixes"}');
  const grants = allow.map((g: unknown, j): Grant => {
    const at = `${where}: allow[${j}]`;
    if (!isObject(g)) return fail(at, "expected an object");
    unknownKeys(g, ["role", "targets", "streamPrefixes"], at, fail);
    if (typeof g.role !== "string" || !ROLES.includes(g.role as Role)) return fail(at, `"role" must be one of ${ROLES.join(", ")}`);
    const role = g.role as Role;
    let targets: readonly string[] | "*";
    if (g.targets === "*") targets = "*";
    else if (Array.isArray(g.targets) && g.targets.length > 0 && g.targets.every((t) => typeof t === "string" && t !== "")) targets = g.targets as string[];
    else return fail(at, '"targets" must be "*" or a non-empty array of target names');
    if (g.streamPrefixes === undefined) return { role, targets };
    if (role !== "source") return fail(at, '"streamPrefixes" applies to the source role only');
    if (!Array.isArray(g.streamPrefixes) || g.streamPrefixes.length === 0 || !g.streamPrefixes.every((p) => typeof p === "string")) {
      return fail(at, '"streamPrefixes" must be a non-empty array of strings (leave it out for every stream)');
    }
    return { role, targets, streamPrefixes: g.streamPrefixes as string[] };
  });
  return { all: false, grants };
}

/** "CN=counts-sink" or "CN=counts-sink,O=Acme": attribute names as a certificate's subject shows them. */
function parseSubject(subject: unknown, where: string, fail: Fail): Array<readonly [string, string]> {
  if (typeof subject !== "string" || subject.trim() === "") return fail(where, '"subject" must be a string such as "CN=counts-sink" or "CN=counts-sink,O=Acme"');
  return subject.split(",").map((part) => {
    const eq = part.indexOf("=");
    const key = part.slice(0, Math.max(eq, 0)).trim();
    const value = part.slice(eq + 1).trim();
    if (eq <= 0 || !/^[A-Za-z][A-Za-z0-9.]*$/.test(key) || value === "") return fail(where, `"subject": "${part.trim()}" is not ATTRIBUTE=VALUE (e.g. CN=counts-sink)`);
    return [key, value] as const;
  });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function unknownKeys(o: Record<string, unknown>, known: readonly string[], where: string, fail: Fail): void {
  const extra = Object.keys(o).filter((k) => !known.includes(k));
  if (extra.length > 0) fail(where, `unknown field${extra.length > 1 ? "s" : ""} ${extra.map((k) => `"${k}"`).join(", ")} (known: ${known.join(", ")})`);
}

function subjectMatches(attributes: SubjectEntry["attributes"], peer: PeerCertificate): boolean {
  const subject = peer.subject as unknown as Record<string, string | string[] | undefined> | undefined;
  if (subject === undefined) return false;
  return attributes.every(([key, value]) => {
    const actual = subject[key];
    return Array.isArray(actual) ? actual.includes(value) : actual === value;
  });
}

export interface CredentialStoreOptions {
  /** The `--token` credential, with every scope, beside the file's. */
  token?: string;
  /** A credentials file, read now and again at each reload(). */
  path?: string;
  /** Whether the engine asks connectors for certificates (mutual TLS): without, a subject credential could never match. */
  clientCertificates: boolean;
}

/** The engine's credentials: `--token` and `--credentials FILE`, reloadable. */
export class CredentialStore implements Authenticator {
  private parsed: Parsed;
  private readonly listeners = new Set<() => void>();

  /** Reads the file: throws a USAGE error for one that cannot be read or parsed. */
  constructor(private readonly options: CredentialStoreOptions) {
    this.parsed = this.read();
  }

  get path(): string | undefined {
    return this.options.path;
  }

  get tokenRequired(): boolean {
    return this.parsed.tokens.length > 0 && this.parsed.subjects.length === 0;
  }

  get hasTokens(): boolean {
    return this.parsed.tokens.length > 0;
  }

  /** The number of credentials in force. */
  get size(): number {
    return this.parsed.tokens.length + this.parsed.subjects.length;
  }

  authenticate(token: string, peer: PeerCertificate | undefined): Credential | undefined {
    const { tokens, subjects } = this.parsed;
    // A token is checked when the engine has token credentials (and ignored when it has none, as
    // before credentials); a wrong one is refused even if the certificate would match a subject.
    if (tokens.length > 0 && (token !== "" || this.options.path === undefined)) {
      // Every digest is compared, whichever matches: the time taken says nothing of which did.
      const given = digest(token);
      let found: Credential | undefined;
      for (const t of tokens) if (timingSafeEqual(given, t.digest) && found === undefined) found = t.credential;
      return found;
    }
    if (peer === undefined) return undefined;
    // No file and no token: a certificate the engine's CA signed has every scope (TLS authenticates).
    if (this.options.path === undefined) return this.options.clientCertificates ? { name: CERTIFICATE_CREDENTIAL, ...ALL } : undefined;
    return subjects.find((s) => subjectMatches(s.attributes, peer))?.credential;
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Reads the file again. A file that cannot be read or parsed changes nothing (the credentials
   * in force stay) and the error is returned; otherwise the new credentials apply to every new
   * session, and the listeners re-check the live ones.
   */
  reload(): { ok: true; credentials: number } | { ok: false; error: Error } {
    try {
      this.parsed = this.read();
    } catch (err) {
      return { ok: false, error: err as Error };
    }
    for (const listener of this.listeners) listener();
    return { ok: true, credentials: this.size };
  }

  private read(): Parsed {
    const { path, token } = this.options;
    const parsed: Parsed = path === undefined ? { tokens: [], subjects: [] } : parseCredentials(readCredentialsFile(path), path);
    if (parsed.subjects.length > 0 && !this.options.clientCertificates) {
      throw new KeywayError(
        ErrorCode.USAGE,
        `--credentials ${path}: "${parsed.subjects[0]!.credential.name}" names a certificate subject, but the engine does not ask connectors for certificates: give --tls-client-ca (mutual TLS) too`,
      );
    }
    if (token !== undefined && token !== "") {
      const d = digest(token);
      const twin = parsed.tokens.find((t) => t.digest.equals(d));
      if (twin !== undefined) throw new KeywayError(ErrorCode.USAGE, `--credentials ${path}: "${twin.credential.name}" has the same token as --token, which already has every scope`);
      parsed.tokens.unshift({ digest: d, credential: { name: TOKEN_CREDENTIAL, ...ALL } });
    }
    return parsed;
  }
}

function readCredentialsFile(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    throw new KeywayError(ErrorCode.USAGE, `--credentials: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}

/**
 * The engine's credentials from its flags, or undefined when sessions need no authentication (no
 * token, no credentials file, no client certificates: as the engine was before credentials).
 */
export function credentialStoreFor(options: CredentialStoreOptions): CredentialStore | undefined {
  const token = options.token === "" ? undefined : options.token;
  if (token === undefined && options.path === undefined && !options.clientCertificates) return undefined;
  return new CredentialStore({ clientCertificates: options.clientCertificates, ...(options.path === undefined ? {} : { path: options.path }), ...(token === undefined ? {} : { token }) });
}
