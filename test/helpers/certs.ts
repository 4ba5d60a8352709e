/**
 * Certificates for TLS tests, made at test time with Debian's openssl (none are committed): a CA,
 * certificates it signs (for 127.0.0.1 and localhost, usable as server and as client), and a
 * second CA nobody trusts with a certificate of its own. EC P-256 keys: fast to make.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface CertPair {
  cert: string;
  key: string;
}

export interface TestCerts {
  dir: string;
  /** The trusted CA's certificate (PEM path). */
  ca: string;
  /** The engine's (or a worker's) certificate, SAN IP:127.0.0.1 and DNS:localhost, CN=localhost. */
  server: CertPair;
  /** A certificate signed by the trusted CA with subject CN=<cn> (also valid for 127.0.0.1). */
  signed(cn: string): CertPair;
  /** A CA nobody trusts. */
  untrustedCa: string;
  /** A certificate signed by the untrusted CA, for 127.0.0.1 and localhost, CN=intruder. */
  untrusted: CertPair;
}

function openssl(args: string[]): void {
  execFileSync("openssl", args, { stdio: ["ignore", "ignore", "pipe"] });
}

function makeCa(dir: string, name: string): CertPair {
  const pair = { cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) };
  openssl([
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", pair.key, "-out", pair.cert, "-days", "2", "-subj", `/CN=${name}`,
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  return pair;
}

function makeLeaf(dir: string, ca: CertPair, name: string, cn: string): CertPair {
  const pair = { cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) };
  const csr = join(dir, `${name}.csr`);
  const ext = join(dir, `${name}.ext`);
  writeFileSync(
    ext,
    "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
  );
  openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", pair.key, "-out", csr, "-subj", `/CN=${cn}`]);
  openssl(["x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key, "-CAcreateserial", "-out", pair.cert, "-days", "2", "-extfile", ext]);
  return pair;
}

/** A fresh set in a temporary directory of its own. */
export function makeCerts(): TestCerts {
  const dir = mkdtempSync(join(tmpdir(), "keyway-certs-"));
  // Keys and all: gone when the process that made them ends.
  process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
  const ca = makeCa(dir, "ca");
  const other = makeCa(dir, "untrusted-ca");
  const server = makeLeaf(dir, ca, "server", "localhost");
  const untrusted = makeLeaf(dir, other, "intruder", "intruder");
  const made = new Map<string, CertPair>();
  return {
    dir,
    ca: ca.cert,
    server,
    signed(cn) {
      let pair = made.get(cn);
      if (pair === undefined) made.set(cn, (pair = makeLeaf(dir, ca, `client-${made.size}`, cn)));
      return pair;
    },
    untrustedCa: other.cert,
    untrusted,
  };
}
