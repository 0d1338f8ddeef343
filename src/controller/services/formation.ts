import { randomUUID } from 'node:crypto';
import { conflict, invalid, notFound } from '../../domain/errors.js';
import { get, putOp } from '../../domain/codec.js';
import { keys } from '../../domain/keys.js';
import { codecs, type Restarts } from '../../domain/records.js';
import type { Store } from '../../store/index.js';
import type { AppAccess, Apps } from './apps.js';
import type { Releases } from './releases.js';
import type { Formation, FormationEntry, UserRecord } from './types.js';

export const MAX_QUANTITY = 100;
const SIZES = new Set(['eco', 'basic', 'standard-1x', 'standard-2x', 'performance-m', 'performance-l']);
export const DEFAULT_SIZE = 'standard-1x';

export interface FormationUpdate {
  type: string;
  /** Absolute (3) or relative ("+1", "-2") as the CLI's `ps:scale web+1` sends it. */
  quantity?: number | string;
  size?: string;
}

export type { Restarts } from '../../domain/records.js';

/**
 * How many dynos of each process type should run. Types must exist in the current release (or be
 * `web` before any build), quantities stay within 0..100, and a batch applies all or nothing.
 */
export class Formations {
  constructor(
    private readonly store: Store,
    private readonly apps: Apps,
    private readonly releases: Releases,
  ) {}

  async list(access: AppAccess): Promise<FormationEntry[]> {
    const f = (await get(this.store, keys.formation(access.app.id), codecs.formation))?.value ?? {};
    return Object.values(f).sort((a, b) => a.type.localeCompare(b.type));
  }

  async get(access: AppAccess, type: string): Promise<FormationEntry> {
    const entry = (await this.list(access)).find((e) => e.type === type || e.id === type);
    if (!entry) throw notFound('formation');
    return entry;
  }

  async update(user: UserRecord, access: AppAccess, updates: FormationUpdate[]): Promise<FormationEntry[]> {
    if (updates.length === 0) throw invalid('No formation updates given.');
    let fresh = access;
    for (let attempt = 0; attempt < 20; attempt++) {
      const release = await this.releases.current(fresh);
      const known = Object.keys(release.process_types);
      const stored = await get(this.store, keys.formation(fresh.app.id), codecs.formation);
      const formation: Formation = { ...(stored?.value ?? {}) };
      const now = new Date().toISOString();
      const changed: FormationEntry[] = [];
      for (const u of updates) {
        const allowed = known.length === 0 ? u.type === 'web' : known.includes(u.type);
        if (!allowed) {
          throw invalid(
            known.length === 0
              ? `No such process type ${u.type} defined; before the first build only web can be scaled.`
              : `No such process type ${u.type} defined in Procfile (types: ${known.join(', ')}).`,
          );
        }
        const prev = formation[u.type];
        const base = prev?.quantity ?? 0;
        const quantity = u.quantity === undefined ? base : resolveQuantity(u.type, u.quantity, base);
        const size = u.size ?? prev?.size ?? DEFAULT_SIZE;
        if (!SIZES.has(size.toLowerCase())) throw invalid(`Size ${size} is not one of ${[...SIZES].join(', ')}.`);
        const entry: FormationEntry = { id: prev?.id ?? randomUUID(), type: u.type, quantity, size: size.toLowerCase(), created_at: prev?.created_at ?? now, updated_at: now };
        formation[u.type] = entry;
        changed.push(entry);
      }
      const ok = await this.apps.touch(fresh, [putOp(keys.formation(fresh.app.id), codecs.formation, formation)], [
        { key: keys.formation(fresh.app.id), target: 'mod', op: '=', value: stored?.mod ?? 0 },
      ]);
      if (ok) return changed;
      fresh = await this.apps.resolve(user, access.app.id);
    }
    throw conflict(`Too many concurrent changes to ${access.app.name}; try again.`);
  }

  /**
   * What a restart target names: a dyno (`web.1`), a process type (`web`), or everything. Heroku's
   * ps:stop on a formation dyno also ends in a fresh dyno (the formation still wants it), so stop
   * and restart are one operation here, done as a rolling replacement, not a kill.
   */
  async restart(user: UserRecord, access: AppAccess, target: string | undefined): Promise<string[]> {
    const entries = (await this.list(access)).filter((e) => e.type !== 'release');
    let bumps: string[];
    if (target === undefined) bumps = entries.map((e) => e.type);
    else {
      // Procfile types are [A-Za-z0-9_-]+ (procfile.ts): `ps:restart Worker` must find `Worker`.
      const m = /^([A-Za-z0-9_-]{1,63})(?:\.(\d{1,3}))?$/.exec(target);
      const entry = entries.find((e) => e.type === m?.[1]);
      if (!m || !entry || (m[2] !== undefined && (Number(m[2]) < 1 || Number(m[2]) > entry.quantity))) throw notFound('process');
      bumps = [m[2] !== undefined ? `${entry.type}.${Number(m[2])}` : entry.type];
    }
    let fresh = access;
    for (let attempt = 0; attempt < 20; attempt++) {
      const stored = await get(this.store, keys.restarts(fresh.app.id), codecs.restarts);
      const next: Restarts = { ...(stored?.value ?? {}) };
      for (const b of bumps) next[b] = (next[b] ?? 0) + 1;
      const ok = await this.apps.touch(fresh, [putOp(keys.restarts(fresh.app.id), codecs.restarts, next)], [{ key: keys.restarts(fresh.app.id), target: 'mod', op: '=', value: stored?.mod ?? 0 }]);
      if (ok) return bumps;
      fresh = await this.apps.resolve(user, access.app.id);
    }
    throw conflict(`Too many concurrent changes to ${access.app.name}; try again.`);
  }
}

function resolveQuantity(type: string, q: number | string, base: number): number {
  let n: number;
  if (typeof q === 'number') n = q;
  else if (/^[+-]\d+$/.test(q.trim())) n = base + Number(q.trim());
  else if (/^\d+$/.test(q.trim())) n = Number(q.trim());
  else throw invalid(`Quantity for ${type} must be a whole number or +N/-N, got "${q}".`);
  if (!Number.isInteger(n) || n < 0 || n > MAX_QUANTITY) throw invalid(`Quantity for ${type} must be between 0 and ${MAX_QUANTITY}, got ${n}.`);
  return n;
}
