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
  /** The app's placement tags when the unit was placed. */
  tags?: Record<string, string>;
}

/** Units of two releases coexist during a rollout: the design's `<app>.<type>.<n>@vN`. */
export const unitKey = (u: Pick<UnitSpec, 'name' | 'release'>): string => `${u.name}@v${u.release}`;
