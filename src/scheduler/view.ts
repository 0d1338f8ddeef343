import { tryDecode } from '../domain/codec.js';
import { codecs, type AppRecord, type Formation, type MachineRecord, type MemoryLimits, type ReleaseRecord, type Restarts } from '../domain/records.js';
import type { KeyValue } from '../store/index.js';
import type { AppView, MachineView } from './types.js';

/**
 * Record → view conversions for the scheduler's state (state.ts). Records come through their
 * codecs, so a malformed one is skipped, never fatal: one bad key must not stop scheduling for
 * everyone else.
 */

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

function memoryLimits(v: MemoryLimits | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [type, raw] of Object.entries(v ?? {})) {
    const bytes = parseMemory(raw);
    if (bytes !== undefined) out[type] = bytes;
  }
  return out;
}

/** The key, not the record, names the machine: it is what /berth/units/<machine>/ uses. */
export function machineView(id: string, r: MachineRecord): MachineView {
  // Only records from before dynos had overlay addresses carry host ports.
  return { id, address: r.address, tags: r.tags, capacity: { memoryBytes: r.capacity.memoryBytes, cpus: r.capacity.cpus }, ...(r.ports ? { ports: { from: r.ports.from, to: r.ports.to } } : {}) };
}

export function releaseView(r: ReleaseRecord | undefined): AppView['release'] {
  return r ? { version: r.version, slugId: r.slug_id, processTypes: r.process_types } : null;
}

/** The release that should run: the newest that succeeded; records from before it existed fall back. */
export function wantedVersion(app: AppRecord): number {
  const v = app.current_version ?? app.release_version;
  return Number.isSafeInteger(v) && v > 0 ? v : 0;
}

export interface AppParts {
  app: AppRecord;
  release: AppView['release'];
  formation?: Formation | undefined;
  tags?: Record<string, string> | undefined;
  limits?: MemoryLimits | undefined;
  restarts?: Restarts | undefined;
}

export function appView(id: string, p: AppParts): AppView {
  const formation: AppView['formation'] = {};
  for (const [type, e] of Object.entries(p.formation ?? {})) formation[type] = { quantity: e.quantity, size: e.size };
  const restarts = Object.fromEntries(Object.entries(p.restarts ?? {}).filter(([, n]) => n > 0));
  return { id, name: p.app.name, release: p.release, formation, placementTags: p.tags ?? {}, memoryLimits: memoryLimits(p.limits), ...(Object.keys(restarts).length > 0 ? { restarts } : {}) };
}

/** Decodes a per-app part; a malformed one reads as absent, as it did before records had codecs. */
export const part = {
  formation: (kv: KeyValue | undefined) => tryDecode(codecs.formation, kv),
  tags: (kv: KeyValue | undefined) => tryDecode(codecs.tags, kv),
  limits: (kv: KeyValue | undefined) => tryDecode(codecs.limits, kv),
  restarts: (kv: KeyValue | undefined) => tryDecode(codecs.restarts, kv),
};
