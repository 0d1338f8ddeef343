import { X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync, chmodSync, renameSync } from 'node:fs';
import { request } from 'node:http';
import { isIP } from 'node:net';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline/promises';
import { checkServerIdentity, connect, rootCertificates, type DetailedPeerCertificate } from 'node:tls';
import { BerthError, errorMessage, invalid } from '../domain/errors.js';
import { configFile, type CliContext } from './context.js';
import { knownDataDirs } from './paths.js';

/**
 * Trust on first use for an API whose certificate no CA vouches for (the self-signed one `berth
 * up` makes), as ssh pins a host key: `berth login` shows the certificate's SHA-256 and keeps it
 * only once the user has vouched for it (--fingerprint, a y at a terminal, or the very file the
 * platform on this machine serves). The kept PEM is then trusted for that host:port only, in
 * addition to the system's CAs, by the CLI and (through http.<url>.sslCAInfo) by git.
 */

const PROBE_TIMEOUT_MS = 10_000;

/** `~/.config/berth/certs/<host>_<port>.pem`: one file per API, whatever path the URL has. */
export function pinFile(ctx: CliContext, url: string): string {
  const u = new URL(url);
  const host = u.hostname.replace(/^\[|\]$/g, '').replace(/[^A-Za-z0-9.-]/g, '_');
  return join(dirname(configFile(ctx)), 'certs', `${host}_${u.port || '443'}.pem`);
}

/** The PEM pinned for an https URL, if `berth login` kept one. */
export function pinnedCa(ctx: CliContext, url: string): string | undefined {
  if (!url.toLowerCase().startsWith('https://')) return undefined;
  const file = pinFile(ctx, url);
  if (!existsSync(file)) return undefined;
  const pem = readFileSync(file, 'utf8');
  try {
    new X509Certificate(pem);
  } catch (err) {
    throw new BerthError('bad_pin', `${file} is not a PEM certificate (${errorMessage(err)}): remove it and run berth login again.`);
  }
  return pem;
}

/** What a TLS client given `ca` trusts: Node replaces its CA list with `ca`, so the system's go first. */
export function caWith(pem: string): string[] {
  return [...rootCertificates, pem];
}

/** `AB:CD:…` (as Node and `openssl x509 -fingerprint -sha256` print it) from hex with or without separators, any case, or ssh's `SHA256:<base64>`. */
export function normaliseFingerprint(input: string): string | undefined {
  const text = input.trim().replace(/^sha-?256[:=]?\s*/i, '');
  const hex = text.replace(/[\s:-]/g, '');
  let bytes: Buffer | undefined;
  if (/^[0-9a-f]{64}$/i.test(hex)) bytes = Buffer.from(hex, 'hex');
  else if (/^[A-Za-z0-9+/]{43}=?$/.test(text)) bytes = Buffer.from(text, 'base64');
  if (bytes?.length !== 32) return undefined;
  return [...bytes].map((b) => b.toString(16).padStart(2, '0').toUpperCase()).join(':');
}

export function fingerprintOf(pem: string): string {
  return new X509Certificate(pem).fingerprint256;
}

/** What an https URL presents, before anyone trusts it. */
export interface Presented {
  /** The certificate to pin: the self-signed one, or the top of the chain the server sent. */
  pem: string;
  fingerprint: string;
  /** Every certificate of the chain, leaf first (a fingerprint the user gives may name any). */
  chain: string[];
  /** Trusted as things stand (Node's CAs, NODE_EXTRA_CA_CERTS). */
  trusted: boolean;
  /** Why not, as OpenSSL says it. */
  reason?: string;
}

function pemOf(der: Buffer): string {
  const pem = new X509Certificate(der).toString();
  return pem.endsWith('\n') ? pem : `${pem}\n`;
}

/** Leaf to root as the server sent it; a self-signed certificate is its own issuer. */
function chainOf(leaf: DetailedPeerCertificate): DetailedPeerCertificate[] {
  const chain = [leaf];
  for (let c = leaf; chain.length < 10; ) {
    const next = c.issuerCertificate as DetailedPeerCertificate | undefined;
    if (!next?.raw || next === c || next.fingerprint256 === c.fingerprint256) break;
    chain.push(next);
    c = next;
  }
  return chain;
}

/** Whether host:port answers plain HTTP: a TLS handshake that failed may have met an HTTP server. */
function speaksHttp(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ host, port, path: '/health', method: 'GET', timeout: PROBE_TIMEOUT_MS }, (res) => {
      res.resume();
      resolve(true);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
    req.end();
  });
}

function plainHttpError(url: URL): BerthError {
  const http = `http://${url.host}`;
  return new BerthError(
    'plain_http',
    `${url.origin} answers plain HTTP, not HTTPS (the platform runs with --no-tls, or behind a proxy that does): to send the token in clear anyway, log in with --api-url ${http}.`,
  );
}

/**
 * Connects without verifying, to show the user what the server presents. Nothing is sent over
 * this connection. A server that answers plain HTTP is reported as such: a https URL is never
 * quietly turned into an http one.
 */
export async function presentedCertificate(raw: string): Promise<Presented> {
  const url = new URL(raw);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const port = Number(url.port || 443);
  const peer = await new Promise<{ leaf: DetailedPeerCertificate; authorized: boolean; reason?: string }>((resolve, reject) => {
    const socket = connect({ host, port, ...(isIP(host) ? {} : { servername: host }), rejectUnauthorized: false, timeout: PROBE_TIMEOUT_MS }, () => {
      const leaf = socket.getPeerCertificate(true);
      const reason = socket.authorizationError ? String(socket.authorizationError) : undefined;
      socket.end();
      if (!leaf?.raw) reject(new BerthError('unreachable', `${url.origin} presented no certificate.`));
      else resolve({ leaf, authorized: socket.authorized, ...(reason ? { reason } : {}) });
    });
    socket.on('timeout', () => socket.destroy(new Error(`no TLS handshake within ${PROBE_TIMEOUT_MS / 1000} s`)));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED' || err.code === 'ENOTFOUND' || err.code === 'EHOSTUNREACH') {
        reject(new BerthError('unreachable', `Cannot reach the Berth API at ${url.origin}: ${err.code}.`));
        return;
      }
      void speaksHttp(host, port).then((http) => reject(http ? plainHttpError(url) : new BerthError('unreachable', `No TLS handshake with ${url.origin}: ${err.message}`)));
    });
  });
  const chain = chainOf(peer.leaf);
  const top = chain[chain.length - 1] as DetailedPeerCertificate;
  const pem = pemOf(top.raw);
  // Pinning trusts the certificate, not the name: a name it does not carry would still fail every later connection.
  const nameError = checkServerIdentity(host, peer.leaf);
  if (nameError) throw new BerthError('tls_name', `The certificate of ${url.origin} is not valid for ${host} (${nameError.message}); use an --api-url with a name it carries.`);
  return { pem, fingerprint: fingerprintOf(pem), chain: chain.map((c) => pemOf(c.raw)), trusted: peer.authorized, ...(peer.reason ? { reason: peer.reason } : {}) };
}

/** A readable `api-tls/cert.pem` of a data dir on this machine, identical to `pem`: the platform here serves it. */
function localMatch(ctx: CliContext, pem: string): string | undefined {
  const wanted = fingerprintOf(pem);
  for (const dir of knownDataDirs(ctx.home)) {
    const file = join(dir, 'api-tls', 'cert.pem');
    try {
      if (fingerprintOf(readFileSync(file, 'utf8')) === wanted) return file;
    } catch {
      // Missing, unreadable (root's 0700 data dir to a user), or not a certificate: no proof here.
    }
  }
  return undefined;
}

async function confirm(ctx: CliContext, question: string): Promise<boolean> {
  if (!ctx.interactive || !ctx.terminal) return false;
  const rl = createInterface({ input: ctx.terminal.stdin, output: ctx.terminal.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(question)).trim());
  } finally {
    rl.close();
  }
}

/**
 * The PEM `berth login` should pin for `url` (undefined: the system already trusts the server),
 * once the user has vouched for it; otherwise a refusal that shows the fingerprint to check.
 */
export async function vouchedCertificate(ctx: CliContext, url: string, fingerprint: string | undefined): Promise<string | undefined> {
  const wanted = fingerprint === undefined ? undefined : normaliseFingerprint(fingerprint);
  if (fingerprint !== undefined && !wanted) throw invalid(`--fingerprint must be a SHA-256 fingerprint (64 hex digits, colons optional), got "${fingerprint}".`);
  const seen = await presentedCertificate(url);
  const origin = new URL(url).origin;
  if (wanted) {
    if (!seen.chain.some((pem) => fingerprintOf(pem) === wanted)) {
      throw new BerthError(
        'fingerprint_mismatch',
        `The certificate of ${origin} has SHA-256 fingerprint ${seen.fingerprint}, not ${wanted}: it was not trusted and nothing was saved. Check the fingerprint berth up printed; a different one can mean someone is in between.`,
      );
    }
    return seen.trusted ? undefined : seen.pem;
  }
  if (seen.trusted) return undefined;
  let pinned: string | undefined;
  try {
    pinned = pinnedCa(ctx, url);
  } catch {
    pinned = undefined;
  }
  if (pinned && fingerprintOf(pinned) === seen.fingerprint) return seen.pem;
  const local = localMatch(ctx, seen.pem);
  if (local) {
    ctx.err(`The certificate of ${origin} (SHA-256 ${seen.fingerprint}) is the one in ${local}.`);
    return seen.pem;
  }
  if (pinned) {
    // As ssh does for a changed host key: a y is not enough, the new fingerprint must be given.
    throw new BerthError(
      'fingerprint_changed',
      `The certificate of ${origin} CHANGED since you logged in: it now has SHA-256 fingerprint ${seen.fingerprint}. If the platform made a new one, run berth login again with --fingerprint ${seen.fingerprint}; otherwise someone may be in between.`,
    );
  }
  const what = `The certificate of ${origin} is not trusted by this system (${seen.reason ?? 'unknown issuer'}).\nIts SHA-256 fingerprint is ${seen.fingerprint}`;
  if (await confirm(ctx, `${what}\nCompare it with the fingerprint berth up printed. Trust it? [y/N] `)) return seen.pem;
  throw new BerthError('untrusted_certificate', `${what}.\nCompare it with the fingerprint berth up printed and, if they are the same, run berth login again with --fingerprint ${seen.fingerprint}.`);
}

/** Keeps `pem` as the certificate trusted for `url` (0644: a certificate is no secret). */
export function savePin(ctx: CliContext, url: string, pem: string): string {
  const file = pinFile(ctx, url);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(`${file}.tmp`, pem, { mode: 0o644 });
  chmodSync(`${file}.tmp`, 0o644);
  renameSync(`${file}.tmp`, file);
  return file;
}

export function removePin(ctx: CliContext, url: string): void {
  rmSync(pinFile(ctx, url), { force: true });
}
