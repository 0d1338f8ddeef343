import type { FastifyInstance } from 'fastify';
import { forbidden, invalid } from '../../../domain/errors.js';
import { keys } from '../../../domain/keys.js';
import { getJson, listJson } from '../../model/json-store.js';
import type { Services } from '../../services.js';

const TAG = /^[A-Za-z0-9_.-]{1,63}$/;
const LIMIT = /^\d+(\.\d+)?[KMG]?$/i;

/** Parses "256M", "1.5G", "512000": what `berth limits:set web=256M` sends. */
export function parseMemory(value: string): number {
  if (!LIMIT.test(value)) throw invalid(`Memory limit "${value}" must be a number of bytes or like 256M / 1G.`);
  const unit = value.slice(-1).toUpperCase();
  const n = parseFloat(value);
  const bytes = Math.round(n * (unit === 'K' ? 1024 : unit === 'M' ? 1024 ** 2 : unit === 'G' ? 1024 ** 3 : 1));
  if (bytes < 64 * 1024 ** 2 || bytes > 64 * 1024 ** 3) throw invalid(`Memory limit ${value} must be between 64M and 64G.`);
  return bytes;
}

/** Berth's own placement controls: app tags and memory limits (read by the scheduler), and nodes. */
export function registerPlacementRoutes(api: FastifyInstance, s: Services): void {
  /**
   * A small `{name: value}` map kept under an app (tags, limits): GET it, PATCH it (null removes
   * a name). `check` validates one entry and returns the value to store.
   */
  const appMap = (path: string, key: (appId: string) => string, check: (name: string, value: string) => string): void => {
    api.get(`/apps/:app/${path}`, async (req) => {
      const access = await s.apps.resolve(req.user, (req.params as { app: string }).app);
      return (await getJson<Record<string, string>>(s.store, key(access.app.id)))?.value ?? {};
    });
    api.patch(`/apps/:app/${path}`, { schema: { body: { type: 'object', additionalProperties: { type: ['string', 'null'] } } } }, async (req) => {
      const access = await s.apps.resolve(req.user, (req.params as { app: string }).app);
      const current = (await getJson<Record<string, string>>(s.store, key(access.app.id)))?.value ?? {};
      for (const [name, value] of Object.entries(req.body as Record<string, string | null>)) {
        if (value === null) {
          check(name, '');
          delete current[name];
        } else current[name] = check(name, value);
      }
      await s.apps.touch(access, [{ type: 'put', key: key(access.app.id), value: JSON.stringify(current) }]);
      return current;
    });
  };

  appMap('tags', keys.appTags, (k, v) => {
    if (!TAG.test(k) || (v !== '' && !TAG.test(v))) throw invalid(`Tag ${k}=${v} may only use letters, digits, "_", "." and "-".`);
    return v;
  });

  appMap('limits', keys.appLimits, (type, v) => {
    if (!/^[A-Za-z0-9_-]+$/.test(type)) throw invalid(`"${type}" is not a process type.`);
    if (v === '') return v;
    parseMemory(v);
    return v.toUpperCase();
  });

  api.get('/berth/machines', async (req) => {
    if (!req.user.admin) throw forbidden('Listing machines needs an admin account.');
    const machines = await listJson<{ id: string; name: string; address: string; tags: Record<string, string>; capacity: { memoryBytes: number; cpus: number } }>(s.store, keys.machines());
    const units = (await s.store.range('/berth/units/', { prefix: true })).kvs.map((kv) => {
      let memory = 0;
      try {
        memory = Number((JSON.parse(kv.value) as { memoryBytes?: number }).memoryBytes) || 0;
      } catch {
        // A malformed unit counts, without memory.
      }
      return { machine: kv.key.split('/')[3] ?? '', memory };
    });
    // Only live machines are listed: a dead one's registration went with its lease.
    return machines.map((m) => {
      const mine = units.filter((u) => u.machine === m.id);
      const assigned = mine.reduce((a, u) => a + u.memory, 0);
      return { ...m, state: 'up', units: mine.length, memory_assigned: assigned, load: m.capacity.memoryBytes > 0 ? Math.round((assigned / m.capacity.memoryBytes) * 100) / 100 : null };
    });
  });
}
