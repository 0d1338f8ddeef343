import type { DynoState, MachineInfo, StatusRecord, UnitSpec } from './records.js';

export type { MachineInfo, UnitSpec };

/**
 * Units of two releases coexist during a rollout: the design's `<app>.<type>.<n>@vN`, with `-R`
 * after a restart (`web.1@v5-2`), since a restart is rolled out the same way as a release.
 */
export const unitKey = (u: Pick<UnitSpec, 'name' | 'release' | 'restart'>): string => `${u.name}@v${u.release}${u.restart ? `-${u.restart}` : ''}`;

/** The unit name in a unit key (`shop.web.1@v5-2` → `shop.web.1`): unitKey's inverse, for readers of keys. */
export const unitNameOf = (key: string): string => {
  const at = key.lastIndexOf('@v');
  return at > 0 ? key.slice(0, at) : key;
};

/** Which of two units of one name is the later one: release first, then restart generation. */
export const compareGeneration = (a: Pick<UnitSpec, 'release' | 'restart'>, b: Pick<UnitSpec, 'release' | 'restart'>): number =>
  a.release - b.release || (a.restart ?? 0) - (b.restart ?? 0);

/**
 * The one way a formation dyno's status record is built, by the agent (starting/up/crashed) and
 * by the scheduler (pending, with the placement's reason), so both say the same things alike.
 */
export function dynoStatus(
  u: UnitSpec,
  s: { state: DynoState; reason?: string | null; restarts: number; command: string; release: { id?: string; version: number }; machine: string | null; port: number | null; address?: string | null; createdAt?: string },
): StatusRecord {
  return {
    app_id: u.appId,
    unit: unitKey(u),
    name: `${u.type}.${u.index}`,
    type: u.type,
    state: s.state,
    reason: s.reason ?? null,
    restarts: s.restarts,
    command: s.command,
    release: s.release,
    machine: s.machine,
    port: s.port,
    address: s.address ?? null,
    // A pending report is the scheduler's note, not a dyno's life: it carries no timestamps.
    ...(s.createdAt ? { created_at: s.createdAt, updated_at: new Date().toISOString() } : {}),
  };
}

const UNIT_BYTES: Record<string, number> = { '': 1, b: 1, k: 1024, kb: 1024, kib: 1024, m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gb: 1024 ** 3, gib: 1024 ** 3 };

/** Limits are bytes, but accept Deis' spelling ("512M", "1G") too, since that is what users type. */
export function parseBytes(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) && v > 0 ? v : undefined;
  if (typeof v !== 'string') return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(v);
  const factor = m ? UNIT_BYTES[(m[2] ?? '').toLowerCase()] : undefined;
  if (!m || factor === undefined) return undefined;
  const bytes = Math.round(Number(m[1]) * factor);
  return bytes > 0 ? bytes : undefined;
}

/** A dyno's writable space (/app and /tmp together) unless `limits:set TYPE.disk=SIZE` says otherwise. */
export const DEFAULT_DISK_BYTES = 1024 ** 3;
/** What `limits:set TYPE.disk=` may ask for: a tenant sets it, and the host's disk pays for it. */
export const DISK_LIMIT_RANGE = { min: 64 * 1024 ** 2, max: 10 * 1024 ** 3 } as const;
/** Concurrent one-off dynos per app unless `limits:set run.max=N` says otherwise. */
export const DEFAULT_MAX_RUNS = 5;
export const MAX_RUNS_LIMIT = 20;

/**
 * An app's limits map (`/berth/apps/<app>/limits`, what `berth limits:set` writes), read: `TYPE`
 * is a process type's memory, `TYPE.disk` its writable space, `run.max` how many one-off dynos
 * may run at once (`run` is the one-off dynos' type). Values come from the store: anything
 * malformed or out of range reads as absent, so the default applies.
 */
export interface AppLimits {
  memory: Record<string, number>;
  disk: Record<string, number>;
  maxRuns: number;
}

export function readLimits(map: Record<string, unknown> | undefined): AppLimits {
  // No prototype: a process type named `constructor` must not find Object's.
  const out: AppLimits = { memory: Object.create(null) as Record<string, number>, disk: Object.create(null) as Record<string, number>, maxRuns: DEFAULT_MAX_RUNS };
  for (const [name, raw] of Object.entries(map ?? {})) {
    const dot = name.indexOf('.');
    if (dot < 0) {
      const bytes = parseBytes(raw);
      if (bytes !== undefined) out.memory[name] = bytes;
      continue;
    }
    const type = name.slice(0, dot);
    const what = name.slice(dot + 1);
    if (what === 'disk') {
      const bytes = parseBytes(raw);
      if (bytes !== undefined && bytes >= DISK_LIMIT_RANGE.min && bytes <= DISK_LIMIT_RANGE.max) out.disk[type] = bytes;
    } else if (type === 'run' && what === 'max') {
      const n = Number(raw);
      if (Number.isInteger(n) && n >= 1 && n <= MAX_RUNS_LIMIT) out.maxRuns = n;
    }
  }
  return out;
}

/** A process type's disk from its limits. */
export const diskFor = (limits: Pick<AppLimits, 'disk'>, type: string): number => limits.disk[type] ?? DEFAULT_DISK_BYTES;
