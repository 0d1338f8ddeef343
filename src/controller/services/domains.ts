import { randomUUID } from 'node:crypto';
import { isIP } from 'node:net';
import { getPublicSuffix } from 'tldts';
import { conflict, invalid, notFound } from '../../domain/errors.js';
import { deleteOp as del, get, list, putOp } from '../../domain/codec.js';
import { keys } from '../../domain/keys.js';
import { codecs } from '../../domain/records.js';
import type { Store } from '../../store/index.js';
import type { AppAccess, Apps } from './apps.js';
import type { DomainRecord, PlatformSettings } from './types.js';

// RFC 1123 labels, at least two of them, optional leading wildcard label.
const HOSTNAME = /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$/;

/** Lowercase, without surrounding space or the trailing dot of a fully qualified name: one spelling per name. */
export function normaliseHostname(hostname: string): string {
  return hostname.trim().toLowerCase().replace(/\.$/, '');
}

/** The API's hostname from its URL, when it is a name (an IP address cannot be claimed as a domain anyway). */
function apiHostname(apiUrl: string): string | undefined {
  let host: string;
  try {
    host = normaliseHostname(new URL(apiUrl).hostname);
  } catch {
    return undefined;
  }
  return host && !isIP(host.replace(/^\[(.*)\]$/, '$1')) ? host : undefined;
}

/**
 * Whether `pattern` (an exact name, or `*.rest`) would route `host` in the router. nginx's
 * `server_name *.rest` matches names under `rest` at any depth (`a.b.rest` too), so a tenant's
 * `*.example.com` would take every unclaimed name under a platform domain `apps.corp.example.com`.
 */
function covers(pattern: string, host: string): boolean {
  if (pattern === host) return true;
  if (!pattern.startsWith('*.')) return false;
  return host.endsWith(`.${pattern.slice(2)}`);
}

/**
 * Custom domains. A hostname belongs to at most one app across the platform, and a tenant may not
 * claim a name the platform answers for: its apps' domain, the API's host, or a wildcard over a
 * public suffix (every customer of a registry at once). Ownership is not proven by DNS (a TXT
 * record) yet: the first app to add a name holds it.
 */
export class Domains {
  private readonly platformDomain: string;
  private readonly apiHost: string | undefined;

  constructor(
    private readonly store: Store,
    private readonly apps: Apps,
    settings: Pick<PlatformSettings, 'domain' | 'apiUrl'>,
  ) {
    this.platformDomain = normaliseHostname(settings.domain);
    this.apiHost = apiHostname(settings.apiUrl);
  }

  /** The app's built-in hostname, as Heroku lists its herokuapp.com domain. */
  defaultHost(appName: string): string {
    return `${appName}.${this.platformDomain}`;
  }

  async list(access: AppAccess): Promise<DomainRecord[]> {
    const builtIn: DomainRecord = {
      id: access.app.id,
      hostname: this.defaultHost(access.app.name),
      kind: 'heroku',
      created_at: access.app.created_at,
      updated_at: access.app.updated_at,
    };
    return [builtIn, ...(await list(this.store, keys.domains(access.app.id), codecs.domain)).map((e) => e.value)];
  }

  /** Throws `invalid_params` naming the rule a hostname breaks; returns it normalised. */
  check(hostname: string): string {
    const host = normaliseHostname(hostname);
    if (host.length > 253 || !HOSTNAME.test(host)) throw invalid(`${hostname} is not a valid hostname.`);
    const d = this.platformDomain;
    if (host === d || host.endsWith(`.${d}`)) throw invalid(`${host} is under the platform domain ${d}, whose names Berth gives to apps itself; it cannot be added as a custom domain.`);
    // `*.localhost` would take `berth.localhost` itself, `*.example.com` every name under
    // `apps.corp.example.com` no app holds (a deleted app's name, say).
    if (covers(host, d)) throw invalid(`${host} would cover the platform domain ${d}; it cannot be added as a custom domain.`);
    if (this.apiHost && covers(host, this.apiHost)) throw invalid(`${host} would take ${this.apiHost}, the platform API's hostname; it cannot be added as a custom domain.`);
    // Private suffixes count too: `*.github.io` is every GitHub Pages site.
    const name = host.startsWith('*.') ? host.slice(2) : host;
    if (getPublicSuffix(name, { allowPrivateDomains: true }) === name) {
      throw invalid(host === name ? `${host} is a public suffix (anyone may register names under it), not a domain; add a name registered under it.` : `${host} is a wildcard over the public suffix ${name}, which would take every name registered under it; add your own domain (e.g. *.example.${name}).`);
    }
    return host;
  }

  async add(access: AppAccess, hostname: string): Promise<DomainRecord> {
    const host = this.check(hostname);
    const now = new Date().toISOString();
    const domain: DomainRecord = { id: randomUUID(), hostname: host, kind: 'custom', created_at: now, updated_at: now };
    const ok = await this.apps.touch(
      access,
      [putOp(keys.domain(access.app.id, host), codecs.domain, domain), putOp(keys.hostname(host), codecs.appId, access.app.id)],
      [{ key: keys.hostname(host), target: 'create', op: '=', value: 0 }],
    );
    if (!ok) {
      const holder = await get(this.store, keys.hostname(host), codecs.appId);
      // Heroku answers a taken domain with 422 invalid_params, as any other refused name.
      if (holder) {
        const mine = holder.value === access.app.id;
        throw invalid(mine ? `${host} is already a domain of ${access.app.name}.` : `${host} is already in use by another app: a hostname can belong to one app only. Remove it from that app first.`);
      }
      throw conflict('The app changed while adding the domain; try again.');
    }
    return domain;
  }

  async get(access: AppAccess, hostnameOrId: string): Promise<DomainRecord> {
    const wanted = normaliseHostname(hostnameOrId);
    const d = (await this.list(access)).find((x) => x.hostname === wanted || x.id === hostnameOrId);
    if (!d) throw notFound('domain');
    return d;
  }

  async remove(access: AppAccess, hostnameOrId: string): Promise<DomainRecord> {
    const d = await this.get(access, hostnameOrId);
    if (d.kind === 'heroku') throw invalid(`${d.hostname} is the app's built-in hostname and cannot be removed.`);
    const ok = await this.apps.touch(access, [del(keys.domain(access.app.id, d.hostname)), del(keys.hostname(d.hostname))]);
    if (!ok) throw conflict('The app changed while removing the domain; try again.');
    return d;
  }
}
