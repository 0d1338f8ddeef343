import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { certsForHosts, type CertRecord } from '../domain/certs.js';
import { tryDecodeValue } from '../domain/codec.js';
import { codecs } from '../domain/records.js';
import { keys } from '../domain/keys.js';
import { effectiveRouterSettings, parseAppRouting, type RouterSettingName } from '../domain/router-settings.js';
import type { TemplateData } from '../templater/index.js';

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
}

export interface VhostOptions {
  /** Apps are served at <app>.<domain>. */
  domain: string;
  httpPort: number;
  /** No HTTPS at all without one. */
  httpsPort?: number;
  certDir: string;
}

/** Where a certificate's files go, named by content so a renewal never overwrites files in use. */
export function certFiles(certDir: string, c: CertRecord): { cert: string; key: string } {
  const hash = createHash('sha256').update(c.certificate_chain).update('\0').update(c.private_key).digest('hex').slice(0, 16);
  return { cert: join(certDir, `${c.id}-${hash}.crt`), key: join(certDir, `${c.id}-${hash}.key`) };
}

export function parseCerts(kvs: { key: string; value: string }[]): CertRecord[] {
  // Not the controller's writing (a malformed record): serve without it rather than refuse every vhost.
  return kvs
    .map((kv) => tryDecodeValue(codecs.cert, kv.value))
    .filter((c): c is CertRecord => c !== undefined)
    // The id names files; the PEMs go to nginx, which refuses its whole config over one bad file.
    .filter((c) => /^[A-Za-z0-9-]{1,64}$/.test(c.id) && c.app_id && c.certificate_chain.includes('-----BEGIN CERTIFICATE-----') && c.private_key.includes('PRIVATE KEY-----'));
}

/**
 * What nginx.conf serves, from the store's vhost keys: each app's hostnames over HTTP (proxied,
 * or redirected where it asked for HTTPS and a certificate covers the host), and over HTTPS
 * grouped by the certificate that covers them. Sorted input gives the same blocks in the same order.
 */
export function planVhosts(it: TemplateData, o: VhostOptions): Vhosts {
  const apps = it.gets(keys.appNames()).map((kv) => ({ name: kv.key.slice(keys.appNames().length), id: kv.value }));
  const customHosts = new Map<string, string[]>();
  for (const kv of it.gets(keys.hostnames())) customHosts.set(kv.value, [...(customHosts.get(kv.value) ?? []), kv.key.slice(keys.hostnames().length)]);
  const certsByApp = new Map<string, CertRecord[]>();
  for (const c of parseCerts(it.gets(keys.allCerts()))) certsByApp.set(c.app_id, [...(certsByApp.get(c.app_id) ?? []), c]);
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
    for (const { cert, hosts: served } of byCert.values()) servers.push({ port: o.httpsPort as number, hosts: served, app, ssl: certFiles(o.certDir, cert), redirect: false });
  }
  return { settings: effectiveRouterSettings((name) => it.get(keys.routerSetting(name))), servers };
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
