/** A machine as its agent registers it at /berth/machines/<id> (under the agent's lease). */
export interface MachineInfo {
  id: string;
  name: string;
  address: string;
  tags: Record<string, string>;
  capacity: { memoryBytes: number; cpus: number };
  /** Host ports the agent hands to web dynos. */
  ports: { from: number; to: number };
}

/**
 * A unit: one dyno the scheduler wants somewhere, as written at /berth/units/<machine>/<key>.
 * Shared by the scheduler (which writes it) and agents (which run it).
 */
export interface UnitSpec {
  /** `<app-name>.<type>.<n>` */
  name: string;
  appId: string;
  appName: string;
  type: string;
  index: number;
  /** Release version the unit runs; two releases of one unit coexist during a rollout. */
  release: number;
  memoryBytes: number;
  /** Restart generation (`ps:restart`): same release, new dynos. Absent means 0. */
  restart?: number;
  /** The app's placement tags when the unit was placed. */
  tags?: Record<string, string>;
}

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
