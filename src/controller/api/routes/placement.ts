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
  api.get('/apps/:app/tags', async (req) => {
    const access = await s.apps.resolve(req.user, (req.params as { app: string }).app);
    return (await getJson<Record<string, string>>(s.store, keys.appTags(access.app.id)))?.value ?? {};
  });

  api.patch('/apps/:app/tags', { schema: { body: { type: 'object', additionalProperties: { type: ['string', 'null'] } } } }, async (req) => {
    const access = await s.apps.resolve(req.user, (req.params as { app: string }).app);
    const current = (await getJson<Record<string, string>>(s.store, keys.appTags(access.app.id)))?.value ?? {};
    for (const [k, v] of Object.entries(req.body as Record<string, string | null>)) {
      if (!TAG.test(k) || (v !== null && !TAG.test(v))) throw invalid(`Tag ${k}=${v ?? ''} may only use letters, digits, "_", "." and "-".`);
      if (v === null) delete current[k];
      else current[k] = v;
    }
    await s.apps.touch(access, [{ type: 'put', key: keys.appTags(access.app.id), value: JSON.stringify(current) }]);
    return current;
  });

  api.get('/apps/:app/limits', async (req) => {
    const access = await s.apps.resolve(req.user, (req.params as { app: string }).app);
    return (await getJson<Record<string, string>>(s.store, keys.appLimits(access.app.id)))?.value ?? {};
  });

  api.patch('/apps/:app/limits', { schema: { body: { type: 'object', additionalProperties: { type: ['string', 'null'] } } } }, async (req) => {
    const access = await s.apps.resolve(req.user, (req.params as { app: string }).app);
    const current = (await getJson<Record<string, string>>(s.store, keys.appLimits(access.app.id)))?.value ?? {};
    for (const [type, v] of Object.entries(req.body as Record<string, string | null>)) {
      if (!/^[A-Za-z0-9_-]+$/.test(type)) throw invalid(`"${type}" is not a process type.`);
      if (v === null) delete current[type];
      else {
        parseMemory(v);
        current[type] = v.toUpperCase();
      }
    }
    await s.apps.touch(access, [{ type: 'put', key: keys.appLimits(access.app.id), value: JSON.stringify(current) }]);
    return current;
  });

  api.get('/berth/machines', async (req) => {
    if (!req.user.admin) throw forbidden('Listing machines needs an admin account.');
    const machines = await listJson<{ id: string; name: string; address: string; tags: Record<string, string>; capacity: { memoryBytes: number; cpus: number } }>(s.store, keys.machines());
    const units = (await s.store.range('/berth/units/', { prefix: true })).kvs.map((kv) => kv.key.split('/')[3] ?? '');
    return machines.map((m) => ({ ...m, state: 'up', units: units.filter((u) => u === m.id).length }));
  });
}
