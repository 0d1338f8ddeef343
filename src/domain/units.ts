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
