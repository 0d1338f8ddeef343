// @peculiar/x509 resolves its algorithm classes through tsyringe, which needs the Reflect metadata API.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { X509Certificate, createPrivateKey, randomBytes, webcrypto } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { isIP, type AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { errorMessage, invalid } from '../domain/errors.js';

/** The API's TLS: an operator's certificate, or one Berth makes for itself once per data dir. */
export type ApiTlsRole = { certFile: string; keyFile: string } | { selfSigned: true };

export interface ApiTls {
  cert: string;
  key: string;
  /** The certificate file clients trust (NODE_EXTRA_CA_CERTS, GIT_SSL_CAINFO). */
  certPath: string;
  /** SHA-256 of the certificate, `AB:CD:…`, as `openssl x509 -fingerprint -sha256` prints it. */
  fingerprint: string;
  selfSigned: boolean;
}

const EC = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const DAY_MS = 86_400_000;

function readPem(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw invalid(`${what} ${path} cannot be read: ${errorMessage(err)}`);
  }
}

/** Refuses a pair that cannot serve, here rather than as a TLS failure on the first connection. */
function checked(cert: string, key: string, certPath: string, selfSigned: boolean): ApiTls {
  let parsed: X509Certificate;
  try {
    parsed = new X509Certificate(cert);
  } catch (err) {
    throw invalid(`${certPath} is not a PEM certificate: ${errorMessage(err)}`);
  }
  let matches = false;
  try {
    matches = parsed.checkPrivateKey(createPrivateKey(key));
  } catch (err) {
    throw invalid(`the API's TLS key is not a PEM private key: ${errorMessage(err)}`);
  }
  if (!matches) throw invalid(`the API's TLS key does not belong to the certificate ${certPath}.`);
  return { cert, key, certPath, fingerprint: parsed.fingerprint256, selfSigned };
}

/**
 * A self-signed certificate for the API, valid for the names clients use: loopback, this
 * machine's name and the API URL's host. It is its own CA (as `openssl req -x509` makes them), so
 * one file is all a client trusts, whether OpenSSL (Node) or GnuTLS (Debian's git) checks it.
 */
async function selfSigned(names: string[]): Promise<{ cert: string; key: string }> {
  const crypto = webcrypto;
  const keys = (await crypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const dns = [...new Set(names.filter((n) => !isIP(n)).map((n) => n.toLowerCase()))];
  const ips = [...new Set(names.filter((n) => isIP(n)))];
  const serial = randomBytes(16);
  serial[0] = ((serial[0] ?? 0) & 0x7f) | 0x01;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: serial.toString('hex'),
      name: [{ CN: ['Berth API'] }],
      notBefore: new Date(now - 5 * 60_000),
      notAfter: new Date(now + 825 * DAY_MS),
      keys,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyCertSign, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
        new x509.SubjectAlternativeNameExtension([...dns.map((value) => ({ type: 'dns' as const, value })), ...ips.map((value) => ({ type: 'ip' as const, value }))], false),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
      ],
    },
    crypto,
  );
  const der = await crypto.subtle.exportKey('pkcs8', keys.privateKey);
  const key = `-----BEGIN PRIVATE KEY-----\n${Buffer.from(der).toString('base64').replace(/.{1,64}/g, '$&\n')}-----END PRIVATE KEY-----\n`;
  return { cert: cert.toString('pem'), key };
}

/**
 * The API's certificate and key. An operator's are read as given; a self-signed one is made once
 * under `<data-dir>/api-tls/` and kept, so clients that trusted it keep trusting it across
 * restarts (`extraNames`: the hosts the API URL and `--advertise` name, besides loopback and this
 * machine's name).
 */
export async function apiTls(dataDir: string, role: ApiTlsRole, extraNames: string[] = []): Promise<ApiTls> {
  if ('certFile' in role) return checked(readPem(role.certFile, '--tls-cert'), readPem(role.keyFile, '--tls-key'), role.certFile, false);
  const dir = join(dataDir, 'api-tls');
  const certPath = join(dir, 'cert.pem');
  const keyPath = join(dir, 'key.pem');
  const names = ['localhost', '127.0.0.1', '::1', hostname(), ...extraNames].filter((n) => (isIP(n) ? n !== '0.0.0.0' && n !== '::' : /^[a-z0-9]([a-z0-9.-]{0,252})$/i.test(n)));
  if (existsSync(certPath) && existsSync(keyPath)) {
    const kept = checked(readFileSync(certPath, 'utf8'), readFileSync(keyPath, 'utf8'), certPath, true);
    // A name the API is now reached at (a new --api-url or --advertise) that the kept certificate
    // lacks would fail every client's host check: make a new one (clients trust it afresh).
    // Only the names the operator gave count: a host name that changes between runs (a
    // container's) must not change the certificate every client pinned.
    if (extraNames.filter((n) => names.includes(n)).every((n) => coversName(kept.cert, n))) return kept;
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const made = await selfSigned(names);
  // The key is owner-only from its first byte; both land by rename, so a crash leaves no half pair.
  writeFileSync(`${keyPath}.tmp`, made.key, { mode: 0o600 });
  chmodSync(`${keyPath}.tmp`, 0o600);
  writeFileSync(`${certPath}.tmp`, made.cert, { mode: 0o644 });
  renameSync(`${keyPath}.tmp`, keyPath);
  renameSync(`${certPath}.tmp`, certPath);
  return checked(made.cert, made.key, certPath, true);
}

/** Whether the certificate names `name` (DNS or IP) among its subject alternative names. */
function coversName(cert: string, name: string): boolean {
  const x = new X509Certificate(cert);
  return isIP(name) ? x.checkIP(name) !== undefined : x.checkHost(name, { wildcards: false }) !== undefined;
}

/** Where the git hook reaches a TLS API: a plain listener on loopback that passes on that one route. */
export interface HookRelay {
  /** `http://127.0.0.1:<port>`. */
  base: string;
  /** Hands requests to the API once it is built (before that: 503). */
  attach(api: { routing(req: IncomingMessage, res: ServerResponse): void }): void;
  close(): Promise<void>;
}

/**
 * The pre-receive hook speaks plain HTTP to loopback and cannot know the API's certificate. Rather
 * than open the whole API in the clear there, this relay takes only the hook's route (which a
 * per-push secret guards anyway) and hands it to the API's own router in this process.
 */
export async function startHookRelay(path: string): Promise<HookRelay> {
  let api: { routing(req: IncomingMessage, res: ServerResponse): void } | undefined;
  const server = createServer((req, res) => {
    if (req.method !== 'POST' || req.url?.split('?')[0] !== path || !api) {
      res.writeHead(api ? 404 : 503, { 'content-type': 'application/json' }).end(JSON.stringify({ id: api ? 'not_found' : 'unavailable', message: 'Only the git hook is served here.' }));
      return;
    }
    api.routing(req, res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return {
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    attach: (a) => (api = a),
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
