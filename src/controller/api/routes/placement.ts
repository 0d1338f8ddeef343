import type { FastifyInstance } from 'fastify';
import { get, list, putOp, tryDecode, type Codec, type Key } from '../../../domain/codec.js';
import { forbidden, invalid } from '../../../domain/errors.js';
import { keys } from '../../../domain/keys.js';
import { codecs } from '../../../domain/records.js';
import { DISK_LIMIT_RANGE, MAX_RUNS_LIMIT, parseBytes } from '../../../domain/units.js';
import type { Services } from '../../services/index.js';

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

/** Parses a disk limit ("2G"): a tenant sets it, and the host's disk pays, so it has a ceiling. */
export function parseDisk(value: string): number {
  if (!LIMIT.test(value)) throw invalid(`Disk limit "${value}" must be a number of bytes or like 512M / 2G.`);
  const bytes = parseBytes(value) ?? 0;
  const { min, max } = DISK_LIMIT_RANGE;
  if (bytes < min || bytes > max) throw invalid(`Disk limit ${value} must be between ${min / 1024 ** 2}M and ${max / 1024 ** 3}G.`);
  return bytes;
}

function parseMaxRuns(value: string): number {
  const n = /^\d{1,3}$/.test(value) ? Number(value) : NaN;
  if (!(n >= 1 && n <= MAX_RUNS_LIMIT)) throw invalid(`run.max must be a whole number from 1 to ${MAX_RUNS_LIMIT}, not "${value}".`);
  return n;
}

/** Berth's own placement controls: app tags and memory limits (read by the scheduler), and nodes. */
export function registerPlacementRoutes(api: FastifyInstance, s: Services): void {
  /**
   * A small `{name: value}` map kept under an app (tags, limits): GET it, PATCH it (null removes
   * a name). `check` validates one entry and returns the value to store.
   */
  const appMap = <T extends Record<string, string | number>>(path: string, key: (appId: string) => Key<T>, codec: Codec<T>, check: (name: string, value: string) => string): void => {
    api.get(`/apps/:app/${path}`, async (req) => {
      const access = await s.apps.resolve(req.user, (req.params as { app: string }).app);
      return (await get(s.store, key(access.app.id), codec))?.value ?? {};
    });
    api.patch(`/apps/:app/${path}`, { schema: { body: { type: 'object', additionalProperties: { type: ['string', 'null'] } } } }, async (req) => {
      const access = await s.apps.resolve(req.user, (req.params as { app: string }).app);
      const current: Record<string, string | number> = (await get(s.store, key(access.app.id), codec))?.value ?? {};
      for (const [name, value] of Object.entries(req.body as Record<string, string | null>)) {
        if (value === null) {
          check(name, '');
          delete current[name];
        } else current[name] = check(name, value);
      }
      await s.apps.touch(access, [putOp(key(access.app.id), codec, current as T)]);
      return current;
    });
  };

  appMap('tags', keys.appTags, codecs.tags, (k, v) => {
    if (!TAG.test(k) || (v !== '' && !TAG.test(v))) throw invalid(`Tag ${k}=${v} may only use letters, digits, "_", "." and "-".`);
    return v;
  });

  // `web` is web's memory, `web.disk` its writable space, `run.max` how many one-off dynos may run at once.
  appMap('limits', keys.appLimits, codecs.limits, (name, v) => {
    const m = /^([A-Za-z0-9_-]+)(?:\.(disk|max))?$/.exec(name);
    if (!m?.[1]) throw invalid(`"${name}" is not a limit: use TYPE (memory), TYPE.disk (disk space) or run.max (concurrent one-off dynos).`);
    if (m[2] === 'max' && m[1] !== 'run') throw invalid(`Only one-off dynos have a count limit: run.max, not ${name}.`);
    if (v === '') return v;
    if (m[2] === 'max') return String(parseMaxRuns(v));
    if (m[2] === 'disk') parseDisk(v);
    else parseMemory(v);
    return v.toUpperCase();
  });

  api.get('/berth/machines', async (req) => {
    if (!req.user.admin) throw forbidden('Listing machines needs an admin account.');
    const machines = (await list(s.store, keys.machines(), codecs.machine)).map((e) => e.value);
    // Each machine's overlay subnet, read once: the key names the subnet, the record its machine.
    const subnets = new Map((await list(s.store, keys.subnets(), codecs.subnet)).map((e) => [e.value.machine, { subnet: e.key.slice(keys.subnets().length).replace('-', '/'), backend: e.value.backend.type }]));
    // Servers (the control plane) by id, and which machines run a router that reports.
    const servers = new Map((await list(s.store, keys.servers(), codecs.server)).map((e) => [e.value.id, e.value]));
    const routers = new Map((await list(s.store, keys.routers(), codecs.router)).map((e) => [e.value.id, e.value.revision]));
    // A malformed unit counts, without memory.
    const units = (await s.store.range(keys.allUnits(), { prefix: true })).kvs.map((kv) => ({ machine: kv.key.split('/')[3] ?? '', memory: tryDecode(codecs.unit, kv)?.memoryBytes || 0 }));
    // Only live machines are listed: a dead one's registration went with its lease.
    return machines.map((m) => {
      const mine = units.filter((u) => u.machine === m.id);
      const assigned = mine.reduce((a, u) => a + u.memory, 0);
      const net = subnets.get(m.id);
      const server = servers.get(m.id);
      return { ...m, state: 'up', role: server ? 'server' : 'agent', etcd_member: server?.etcd?.name ?? null, router_revision: routers.get(m.id) ?? null, units: mine.length, memory_assigned: assigned, load: m.capacity.memoryBytes > 0 ? Math.round((assigned / m.capacity.memoryBytes) * 100) / 100 : null, subnet: net?.subnet ?? null, backend: net?.backend ?? null };
    });
  });
}
