import { tryDecode } from '../domain/codec.js';
import { readLimits } from '../domain/units.js';
import { codecs, type AppRecord, type Formation, type MachineRecord, type MemoryLimits, type ReleaseRecord, type Restarts } from '../domain/records.js';
import type { KeyValue } from '../store/index.js';
import type { AppView, MachineView } from './types.js';

/**
 * Record → view conversions for the scheduler's state (state.ts). Records come through their
 * codecs, so a malformed one is skipped, never fatal: one bad key must not stop scheduling for
 * everyone else.
 */

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
  const limits = readLimits(p.limits);
  return {
    id,
    name: p.app.name,
    release: p.release,
    formation,
    placementTags: p.tags ?? {},
    memoryLimits: limits.memory,
    ...(Object.keys(limits.disk).length > 0 ? { diskLimits: limits.disk } : {}),
    ...(Object.keys(restarts).length > 0 ? { restarts } : {}),
  };
}

/** Decodes a per-app part; a malformed one reads as absent, as it did before records had codecs. */
export const part = {
  formation: (kv: KeyValue | undefined) => tryDecode(codecs.formation, kv),
  tags: (kv: KeyValue | undefined) => tryDecode(codecs.tags, kv),
  limits: (kv: KeyValue | undefined) => tryDecode(codecs.limits, kv),
  restarts: (kv: KeyValue | undefined) => tryDecode(codecs.restarts, kv),
};
