import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { certsForHosts, type CertRecord } from '../domain/certs.js';
import { tryDecodeValue } from '../domain/codec.js';
import { codecs } from '../domain/records.js';
import { keys } from '../domain/keys.js';
import { effectiveRouterSettings, parseAppRouting, type RouterSettingName } from '../domain/router-settings.js';
import type { TemplateData } from '../templater/index.js';
import { fileUnder, isSafeAppName, isSafeHostname, isSafeId, isSafeSetting } from './conf-values.js';
import type { PemCheck } from './pem-check.js';

/** One nginx server block: some of an app's hostnames on one port, proxied or redirected. */
export interface ServerBlock {
  port: number;
  hosts: string[];
  app: { id: string; name: string };
  /** Files nginx loads the certificate and key from (an HTTPS block). */
  ssl?: { cert: string; key: string };
  /** Plain HTTP redirected to HTTPS (the app asked for it and this host has a certificate). */
  redirect: boolean;
}

export interface Vhosts {
  settings: Record<RouterSettingName, string>;
  servers: ServerBlock[];
  /** Store values left out of nginx.conf because they could not be rendered safely, for the log. */
  refused: { what: string; value: string; key?: string }[];
}

export interface VhostOptions {
  /** Apps are served at <app>.<domain>. */
  domain: string;
  httpPort: number;
  /** No HTTPS at all without one. */
  httpsPort?: number;
  certDir: string;
  /** Leaves out certificates nginx could not load (pem-check.ts). */
  pems?: PemCheck;
}

/**
 * Where a certificate's files go, named by content so a renewal never overwrites files in use;
 * undefined for an id that would not make a plain file name inside `certDir`.
 */
export function certFiles(certDir: string, c: CertRecord): { cert: string; key: string } | undefined {
  if (!isSafeId(c.id)) return undefined;
  const hash = createHash('sha256').update(c.certificate_chain).update('\0').update(c.private_key).digest('hex').slice(0, 16);
  const [cert, key] = [fileUnder(certDir, `${c.id}-${hash}.crt`), fileUnder(certDir, `${c.id}-${hash}.key`)];
  return cert && key ? { cert, key } : undefined;
}

/** The certificates to serve; `refused` hears of each well-formed record left out, by id. */
export function parseCerts(kvs: { key: string; value: string }[], pems?: PemCheck, refused?: (id: string) => void): CertRecord[] {
  const certs: CertRecord[] = [];
  for (const kv of kvs) {
    // Not the controller's writing (a malformed record): serve without it rather than refuse every vhost.
    const c = tryDecodeValue(codecs.cert, kv.value);
    if (!c) continue;
    // The id names files; the PEMs go to nginx, which refuses its whole config over one bad file.
    if (isSafeId(c.id) && isSafeId(c.app_id) && c.certificate_chain.includes('-----BEGIN CERTIFICATE-----') && c.private_key.includes('PRIVATE KEY-----') && (pems?.usable(c) ?? true)) certs.push(c);
    else refused?.(c.id);
  }
  return certs;
}

/**
 * What nginx.conf serves, from the store's vhost keys: each app's hostnames over HTTP (proxied,
 * or redirected where it asked for HTTPS and a certificate covers the host), and over HTTPS
 * grouped by the certificate that covers them. Sorted input gives the same blocks in the same order.
 */
export function planVhosts(it: TemplateData, o: VhostOptions): Vhosts {
  const refused: Vhosts['refused'] = [];
  // Names and ids from keys and values anyone with write access could have put there: one that
  // could break out of its nginx token leaves out its own vhost (or hostname), never the config.
  const apps: ServerBlock['app'][] = [];
  for (const kv of it.gets(keys.appNames())) {
    const name = kv.key.slice(keys.appNames().length);
    if (isSafeAppName(name) && isSafeId(kv.value) && isSafeHostname(`${name}.${o.domain}`)) apps.push({ name, id: kv.value });
    else refused.push({ what: 'app', value: `${name} ${kv.value}`, key: kv.key });
  }
  const customHosts = new Map<string, string[]>();
  for (const kv of it.gets(keys.hostnames())) {
    const host = kv.key.slice(keys.hostnames().length);
    if (!isSafeHostname(host) || !isSafeId(kv.value)) {
      refused.push({ what: 'hostname', value: host, key: kv.key });
      continue;
    }
    customHosts.set(kv.value, [...(customHosts.get(kv.value) ?? []), host]);
  }
  const certsByApp = new Map<string, CertRecord[]>();
  for (const c of parseCerts(it.gets(keys.allCerts()), o.pems, (id) => refused.push({ what: 'certificate', value: id }))) certsByApp.set(c.app_id, [...(certsByApp.get(c.app_id) ?? []), c]);
  const servers: ServerBlock[] = [];
  for (const app of apps) {
    const hosts = [`${app.name}.${o.domain}`, ...(customHosts.get(app.id) ?? [])];
    const chosen = o.httpsPort ? certsForHosts(hosts, certsByApp.get(app.id) ?? []) : new Map<string, CertRecord>();
    const redirected = parseAppRouting(it.get(keys.appRouting(app.id))).redirect_https ? hosts.filter((h) => chosen.has(h)) : [];
    const plain = hosts.filter((h) => !redirected.includes(h));
    if (plain.length) servers.push({ port: o.httpPort, hosts: plain, app, redirect: false });
    if (redirected.length) servers.push({ port: o.httpPort, hosts: redirected, app, redirect: true });
    const byCert = new Map<string, { cert: CertRecord; hosts: string[] }>();
    for (const [host, cert] of chosen) byCert.set(cert.id, { cert, hosts: [...(byCert.get(cert.id)?.hosts ?? []), host] });
    for (const { cert, hosts: served } of byCert.values()) {
      const ssl = certFiles(o.certDir, cert);
      if (ssl) servers.push({ port: o.httpsPort as number, hosts: served, app, ssl, redirect: false });
      else refused.push({ what: 'certificate', value: cert.id });
    }
  }
  const settings = effectiveRouterSettings((name) => {
    const v = it.get(keys.routerSetting(name));
    // effectiveRouterSettings checks each value's syntax; this is the nginx-token check on top.
    if (v !== undefined && !isSafeSetting(v.trim())) {
      refused.push({ what: 'router setting', value: v, key: keys.routerSetting(name) });
      return undefined;
    }
    return v;
  });
  return { settings, servers, refused };
}

/**
 * Writes every certificate's files that are not there yet: the key owner-only (nginx's master
 * reads it as the user Berth runs as), staged and renamed so nginx never reads half a file.
 * Returns the file names that belong to the given certificates.
 */
export function writeCertFiles(certDir: string, certs: CertRecord[]): Set<string> {
  mkdirSync(certDir, { recursive: true, mode: 0o700 });
  const wanted = new Set<string>();
  for (const c of certs) {
    const files = certFiles(certDir, c);
    if (!files) continue;
    for (const [path, content] of [[files.cert, c.certificate_chain], [files.key, c.private_key]] as const) {
      wanted.add(basename(path));
      if (existsSync(path)) continue;
      const stage = `${path}.tmp`;
      writeFileSync(stage, content, { mode: 0o600 });
      renameSync(stage, path);
    }
  }
  return wanted;
}

/** Removes the files of certificates that are gone or renewed (once nginx.conf no longer names them). */
export function pruneCertFiles(certDir: string, keep: Set<string>): void {
  if (!existsSync(certDir)) return;
  for (const name of readdirSync(certDir)) if (!keep.has(name)) rmSync(join(certDir, name), { force: true });
}
