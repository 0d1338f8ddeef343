/**
 * The scheduler's read-only view of the cluster and the plan it derives from it (Nomad's split:
 * `ClusterState` keeps the state from the leader's watch, `plan` is a pure function over its view, the leader applies the result).
 */

import { DEFAULT_DISK_BYTES, type UnitSpec } from '../domain/units.js';

export type { UnitSpec };

/** What an agent registers at /berth/machines/<id> under its lease. */
export type { MachineRecord } from '../domain/records.js';

export interface MachineView {
  id: string;
  address: string;
  tags: Record<string, string>;
  capacity: { memoryBytes: number; cpus: number };
  /** When known, a web unit also needs a free port in [from, to] on the machine. */
  ports?: { from: number; to: number };
}

/**
 * One dyno that should run: the value the scheduler writes at /berth/units/<machine>/<unit>, and
 * what the agent reads back (src/agent/agent.ts `UnitAssignment` is the agent's copy of it).
 */

export interface Assignment {
  machine: string;
  unit: UnitSpec;
}

export interface AppView {
  id: string;
  name: string;
  /** The release that should run (the app's `current_version`), null if it cannot be read. */
  release: { version: number; slugId: string | null; processTypes: Record<string, string> } | null;
  formation: Record<string, { quantity: number; size: string }>;
  /** A machine must carry every one of these tags to run the app's units. */
  placementTags: Record<string, string>;
  /** Per process type memory in bytes (`berth limits:set`), overriding the size's default. */
  memoryLimits: Record<string, number>;
  /** Per process type writable space in bytes (`berth limits:set TYPE.disk=`); the default when absent. */
  diskLimits?: Record<string, number>;
  /** Restart counters (`ps:restart`) by type (`web`) and dyno (`web.1`). */
  restarts?: Record<string, number>;
  /**
   * A record of the app (or its current release) cannot be read: its units stay exactly where and
   * as they are (still counted on their machines), nothing is added, nothing removed.
   */
  frozen?: boolean;
}

export interface StateView {
  machines: MachineView[];
  apps: AppView[];
  assignments: Assignment[];
  /** The store revision the view was read at, when it came from a store. */
  revision?: number;
}

export interface PendingUnit {
  unit: UnitSpec;
  reason: string;
}

export interface Plan {
  /** New assignments to write. */
  place: Assignment[];
  /** Assignments to delete now: undesired units, and units on machines that are gone. */
  remove: Assignment[];
  /**
   * Assignments of an older release whose unit has a newer-release replacement desired. They keep
   * running until the caller's rollout handshake sees the replacement up; plan never deletes them.
   */
  superseded: Assignment[];
  /** Desired units that could not be placed, with why. */
  pending: PendingUnit[];
}

const MiB = 1024 * 1024;

/** Heroku's dyno sizes, as memory. */
export const SIZE_MEMORY: Readonly<Record<string, number>> = {
  eco: 512 * MiB,
  basic: 512 * MiB,
  'standard-1x': 512 * MiB,
  'standard-2x': 1024 * MiB,
  'performance-m': 2.5 * 1024 * MiB,
  'performance-l': 14 * 1024 * MiB,
};

/** The controller only accepts known sizes; an unknown one (older data) runs as standard-1x. */
export const DEFAULT_MEMORY = 512 * MiB;

export function unitMemory(app: Pick<AppView, 'memoryLimits'>, type: string, size: string): number {
  const limit = app.memoryLimits[type];
  if (limit !== undefined && Number.isFinite(limit) && limit > 0) return limit;
  return SIZE_MEMORY[size.toLowerCase()] ?? DEFAULT_MEMORY;
}

export function unitDisk(app: Pick<AppView, 'diskLimits'>, type: string): number {
  const limit = app.diskLimits?.[type];
  return limit !== undefined && Number.isSafeInteger(limit) && limit > 0 ? limit : DEFAULT_DISK_BYTES;
}

/** "512 MiB", "1 GiB", "2.5 GiB": how reasons and logs name amounts of memory. */
export function formatBytes(bytes: number): string {
  if (bytes >= 1024 * MiB) return `${Number((bytes / (1024 * MiB)).toFixed(2))} GiB`;
  return `${Number((bytes / MiB).toFixed(2))} MiB`;
}
