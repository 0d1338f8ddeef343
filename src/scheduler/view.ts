import type { AppRecord, Formation, ReleaseRecord } from '../controller/model/types.js';
import { keys, ROOT } from '../domain/keys.js';
import type { KeyValue, Store } from '../store/index.js';
import type { AppView, Assignment, MachineRecord, MachineView, StateView, UnitSpec } from './types.js';

/**
 * Builds the scheduler's state view from the store. Every read is pinned to the revision of the
 * first one, so the view is one consistent snapshot (a unit written between two reads cannot show
 * up without the machine or release it refers to). Malformed records are skipped, not fatal: one
 * bad key must not stop scheduling for everyone else.
 */

const UNITS = `${ROOT}/units/`;
// Not yet in src/domain/keys.ts: written by `berth tags:set` / `berth limits:set`.
const tagsKey = keys.appTags;
const limitsKey = keys.appLimits;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function json(kv: KeyValue | undefined): unknown {
  if (!kv) return undefined;
  try {
    return JSON.parse(kv.value) as unknown;
  } catch {
    return undefined;
  }
}

function stringRecord(v: unknown): Record<string, string> {
  if (!isObject(v)) return {};
  return Object.fromEntries(Object.entries(v).filter((e): e is [string, string] => typeof e[1] === 'string'));
}

const UNIT_BYTES: Record<string, number> = { '': 1, b: 1, k: 1024, kb: 1024, kib: 1024, m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gb: 1024 ** 3, gib: 1024 ** 3 };

/** Limits are bytes, but accept Deis' spelling ("512M", "1G") too, since that is what users type. */
export function parseMemory(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) && v > 0 ? v : undefined;
  if (typeof v !== 'string') return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(v);
  const factor = m ? UNIT_BYTES[(m[2] ?? '').toLowerCase()] : undefined;
  if (!m || factor === undefined) return undefined;
  const bytes = Math.round(Number(m[1]) * factor);
  return bytes > 0 ? bytes : undefined;
}

function memoryLimits(v: unknown): Record<string, number> {
  if (!isObject(v)) return {};
  const out: Record<string, number> = {};
  for (const [type, raw] of Object.entries(v)) {
    const bytes = parseMemory(raw);
    if (bytes !== undefined) out[type] = bytes;
  }
  return out;
}

function machineView(id: string, v: unknown): MachineView | undefined {
  if (!isObject(v)) return undefined;
  const r = v as Partial<MachineRecord>;
  const memoryBytes = Number(r.capacity?.memoryBytes);
  if (!Number.isFinite(memoryBytes)) return undefined;
  const cpus = Number(r.capacity?.cpus);
  const view: MachineView = { id, address: typeof r.address === 'string' ? r.address : '', tags: stringRecord(r.tags), capacity: { memoryBytes, cpus: Number.isFinite(cpus) ? cpus : 0 } };
  if (isObject(r.ports) && Number.isInteger(r.ports.from) && Number.isInteger(r.ports.to)) view.ports = { from: r.ports.from, to: r.ports.to };
  return view;
}

function unitSpec(v: unknown): UnitSpec | undefined {
  if (!isObject(v)) return undefined;
  const u = v as Partial<UnitSpec>;
  const ok =
    typeof u.name === 'string' &&
    typeof u.appId === 'string' &&
    typeof u.appName === 'string' &&
    typeof u.type === 'string' &&
    Number.isInteger(u.index) &&
    Number.isInteger(u.release) &&
    (u.restart === undefined || Number.isInteger(u.restart)) &&
    typeof u.memoryBytes === 'number';
  return ok ? (u as UnitSpec) : undefined;
}

function restartsOf(v: unknown): Pick<AppView, 'restarts'> {
  if (!isObject(v)) return {};
  const restarts = Object.fromEntries(Object.entries(v).filter((e): e is [string, number] => Number.isSafeInteger(e[1]) && (e[1] as number) > 0));
  return Object.keys(restarts).length > 0 ? { restarts } : {};
}

function formation(v: unknown): AppView['formation'] {
  const out: AppView['formation'] = {};
  if (!isObject(v)) return out;
  for (const [type, e] of Object.entries(v as Partial<Formation>)) {
    if (!isObject(e)) continue;
    out[type] = { quantity: typeof e.quantity === 'number' ? e.quantity : 0, size: typeof e.size === 'string' ? e.size : 'standard-1x' };
  }
  return out;
}

async function appView(store: Store, id: string, revision: number): Promise<AppView | undefined> {
  const at = { revision };
  const [appKv, formationKv, tagsKv, limitsKv, restartsKv] = await Promise.all([
    store.get(keys.app(id), at),
    store.get(keys.formation(id), at),
    store.get(tagsKey(id), at),
    store.get(limitsKey(id), at),
    store.get(keys.restarts(id), at),
  ]);
  const app = json(appKv);
  if (!isObject(app)) return undefined;
  const rec = app as Partial<AppRecord>;
  if (typeof rec.name !== 'string') return undefined;
  // current_version is the newest release that succeeded; records from before it existed fall back.
  const version = rec.current_version ?? rec.release_version;
  let release: AppView['release'] = null;
  if (typeof version === 'number' && Number.isSafeInteger(version) && version > 0) {
    const r = json(await store.get(keys.release(id, version), at));
    if (isObject(r)) {
      const rel = r as Partial<ReleaseRecord>;
      release = { version, slugId: typeof rel.slug_id === 'string' ? rel.slug_id : null, processTypes: stringRecord(rel.process_types) };
    }
  }
  return { id, name: rec.name, release, formation: formation(json(formationKv)), placementTags: stringRecord(json(tagsKv)), memoryLimits: memoryLimits(json(limitsKv)), ...restartsOf(json(restartsKv)) };
}

export async function readState(store: Store): Promise<StateView> {
  const names = await store.range(keys.appNames(), { prefix: true });
  const revision = names.revision;
  const [machinesR, unitsR] = await Promise.all([
    store.range(keys.machines(), { prefix: true, revision }),
    store.range(UNITS, { prefix: true, revision }),
  ]);

  const machines: MachineView[] = [];
  for (const kv of machinesR.kvs) {
    // The key, not the record, names the machine: it is what /berth/units/<machine>/ uses.
    const view = machineView(kv.key.slice(keys.machines().length), json(kv));
    if (view) machines.push(view);
  }

  const assignments: Assignment[] = [];
  for (const kv of unitsR.kvs) {
    const machine = kv.key.slice(UNITS.length).split('/')[0];
    const unit = unitSpec(json(kv));
    if (machine && unit) assignments.push({ machine, unit });
  }

  // A value that is not a key segment would make the key builders throw; no app lives there anyway.
  const ids = [...new Set(names.kvs.map((kv) => kv.value))].filter((id) => id.length > 0 && !id.includes('/')).sort();
  const apps = (await Promise.all(ids.map((id) => appView(store, id, revision)))).filter((a): a is AppView => a !== undefined);
  return { machines, apps, assignments, revision };
}
