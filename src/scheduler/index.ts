/**
 * The scheduler: leader-elected; turns apps' current releases and formations into unit
 * assignments on machines. The placement itself is the pure `plan` over a read-only state view.
 */
export { Scheduler, type SchedulerOptions } from './scheduler.js';
export { unitKey } from '../domain/units.js';
export { plan } from './placement.js';
export { readState, ClusterState } from './state.js';
export type * from './types.js';
