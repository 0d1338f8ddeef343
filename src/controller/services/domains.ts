import { randomUUID } from 'node:crypto';
import { conflict, invalid, notFound } from '../../domain/errors.js';
import { deleteOp as del, list, putOp } from '../../domain/codec.js';
import { keys } from '../../domain/keys.js';
import { codecs } from '../../domain/records.js';
import type { Store } from '../../store/index.js';
import type { AppAccess, Apps } from './apps.js';
import type { DomainRecord } from './types.js';

// RFC 1123 labels, at least two of them, optional leading wildcard label.
const HOSTNAME = /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$/;

/** Custom domains. A hostname belongs to at most one app across the platform. */
export class Domains {
  constructor(
    private readonly store: Store,
    private readonly apps: Apps,
    private readonly platformDomain: string,
  ) {}

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

  async add(access: AppAccess, hostname: string): Promise<DomainRecord> {
    const host = hostname.trim().toLowerCase().replace(/\.$/, '');
    if (host.length > 253 || !HOSTNAME.test(host)) throw invalid(`${hostname} is not a valid hostname.`);
    if (host === this.platformDomain || host.endsWith(`.${this.platformDomain}`)) {
      throw invalid(`${host} is under the platform domain ${this.platformDomain} and cannot be added as a custom domain.`);
    }
    const now = new Date().toISOString();
    const domain: DomainRecord = { id: randomUUID(), hostname: host, kind: 'custom', created_at: now, updated_at: now };
    const ok = await this.apps.touch(
      access,
      [putOp(keys.domain(access.app.id, host), codecs.domain, domain), putOp(keys.hostname(host), codecs.appId, access.app.id)],
      [{ key: keys.hostname(host), target: 'create', op: '=', value: 0 }],
    );
    if (!ok) {
      if (await this.store.get(keys.hostname(host))) throw conflict(`${host} is already in use by another app.`);
      throw conflict('The app changed while adding the domain; try again.');
    }
    return domain;
  }

  async get(access: AppAccess, hostnameOrId: string): Promise<DomainRecord> {
    const d = (await this.list(access)).find((x) => x.hostname === hostnameOrId.toLowerCase() || x.id === hostnameOrId);
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
