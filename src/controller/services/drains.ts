import { randomUUID } from 'node:crypto';
import { conflict, invalid, notFound } from '../../domain/errors.js';
import { deleteOp as del, list, putOp } from '../../domain/codec.js';
import { keys } from '../../domain/keys.js';
import { codecs, type DrainRecord } from '../../domain/records.js';
import type { Store } from '../../store/index.js';
import type { DrainTargets } from '../drains/targets.js';
import type { AppAccess, Apps } from './apps.js';
import type { UserRecord } from './types.js';

export type { DrainRecord };

/** Enough for any sane setup, and a bound on the connections one app can make a controller open. */
const MAX_DRAINS = 10;

/** Where a `syslog://host:port` drain delivers: RFC 5424 over TCP, octet-counted. */
export function parseDrainUrl(url: string): { host: string; port: number } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw invalid(`${url} is not a valid URL. Use syslog://host:port.`);
  }
  if (u.protocol !== 'syslog:') throw invalid(`Unsupported drain URL ${url}: only syslog://host:port (syslog over TCP) drains are supported for now.`);
  const port = Number(u.port);
  if (!u.hostname || !u.port || !Number.isInteger(port) || port < 1 || port > 65535) throw invalid(`Drain URL ${url} must name a host and a port: syslog://host:port.`);
  if (u.username || u.password || (u.pathname !== '' && u.pathname !== '/') || u.search || u.hash) throw invalid(`Drain URL ${url} may only name a host and a port: syslog://host:port.`);
  return { host: u.hostname.replace(/^\[(.*)\]$/, '$1'), port };
}

/** An app's log drains. Every change rewrites the app record too, as every change under an app does. */
export class LogDrains {
  constructor(
    private readonly store: Store,
    private readonly apps: Apps,
    /** What a tenant's drain may not reach: special ranges and the cluster's own addresses. */
    private readonly targets: DrainTargets,
  ) {}

  async list(access: AppAccess): Promise<DrainRecord[]> {
    return (await list(this.store, keys.drains(access.app.id), codecs.drain)).map((e) => e.value);
  }

  async add(access: AppAccess, url: string, user: UserRecord): Promise<DrainRecord> {
    const normalised = url.trim();
    const target = parseDrainUrl(normalised);
    // Checked here and again at every connect (the name may resolve elsewhere by then).
    const problem = await this.targets.problem(target.host);
    if (problem && !user.admin) throw invalid(`${problem}; drains must go to a log service on the internet, outside this cluster.`);
    const internal = problem !== undefined;
    const existing = await this.list(access);
    if (existing.some((d) => d.url === normalised)) throw invalid(`${normalised} is already a drain of ${access.app.name}.`);
    if (existing.length >= MAX_DRAINS) throw invalid(`${access.app.name} already has ${MAX_DRAINS} drains; remove one first.`);
    const now = new Date().toISOString();
    const drain: DrainRecord = { id: randomUUID(), url: normalised, token: `d.${randomUUID()}`, ...(internal ? { internal: true } : {}), created_at: now, updated_at: now };
    // The compare on the app's mod revision (in touch) also serialises concurrent adds: the list
    // above cannot go stale between the duplicate check and the write.
    if (!(await this.apps.touch(access, [putOp(keys.drain(access.app.id, drain.id), codecs.drain, drain)]))) throw conflict('The app changed while adding the drain; try again.');
    return drain;
  }

  /** By id, URL or token, as `heroku drains:remove` takes either. */
  async get(access: AppAccess, idOrUrl: string): Promise<DrainRecord> {
    const d = (await this.list(access)).find((x) => x.id === idOrUrl || x.url === idOrUrl || x.token === idOrUrl);
    if (!d) throw notFound('drain');
    return d;
  }

  async remove(access: AppAccess, idOrUrl: string): Promise<DrainRecord> {
    const d = await this.get(access, idOrUrl);
    if (!(await this.apps.touch(access, [del(keys.drain(access.app.id, d.id))]))) throw conflict('The app changed while removing the drain; try again.');
    return d;
  }
}
