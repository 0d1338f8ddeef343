/**
 * TLS certificates as the controller stores them (/berth/certs/<app>/<id>, Heroku's SNI endpoints)
 * and the rule both the controller and the router use to decide which hostnames a certificate
 * serves: the app's own hostnames that one of its names covers.
 */

import type { CertRecord, SslCertInfo } from './records.js';

export type { CertRecord, SslCertInfo };

/** A name from a certificate covers a host: equal, or a `*.` wildcard standing for one label. */
export function certNameCovers(name: string, host: string): boolean {
  if (name === host) return true;
  if (!name.startsWith('*.')) return false;
  const dot = host.indexOf('.');
  return dot > 0 && host.slice(dot + 1) === name.slice(2);
}

/**
 * For each host, the certificate that serves it, if any. A name naming the host exactly beats a
 * wildcard; then the most recently updated certificate; then the id, so every router and the API
 * agree on the choice.
 */
export function certsForHosts(hosts: string[], certs: CertRecord[]): Map<string, CertRecord> {
  const rank = (c: CertRecord, host: string): number => (c.ssl_cert.cert_domains.includes(host) ? 2 : c.ssl_cert.cert_domains.some((n) => certNameCovers(n, host)) ? 1 : 0);
  const chosen = new Map<string, CertRecord>();
  for (const host of hosts) {
    const best = certs
      .filter((c) => rank(c, host) > 0)
      .sort((a, b) => rank(b, host) - rank(a, host) || b.updated_at.localeCompare(a.updated_at) || a.id.localeCompare(b.id))[0];
    if (best) chosen.set(host, best);
  }
  return chosen;
}
