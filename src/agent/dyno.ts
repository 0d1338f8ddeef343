import type { ReleaseRecord } from '../domain/records.js';
import type { UnitSpec } from '../domain/units.js';
import type { Attachment } from '../network/index.js';
import type { HealthMonitor } from './health.js';
import type { RunningDyno } from './runtime/types.js';

/** One assigned unit as this agent runs it: shared by the reconcile loop and its store records (endpoints.ts). */
export interface Dyno {
  unit: UnitSpec;
  /** Its namespace and address, from the first start until it is stopped for good (crash restarts keep it). */
  attachment: Attachment | undefined;
  /** The revision of the latest removal of its endpoint: its address is freed once routers applied it. */
  unpublishedAt?: number;
  running: RunningDyno | undefined;
  state: 'starting' | 'up' | 'crashed' | 'stopping';
  restarts: number;
  /** Crashes since the dyno last stayed up a while: what the backoff grows with. */
  failures: number;
  nextStart: number;
  upSince: number;
  /** Why the process exited while it was still starting (the start reports it). */
  exitReason?: string;
  createdAt: string;
  /** Bumped on every start, so a stale exit handler can tell it is stale. */
  generation: number;
  /** The start in flight, if any: a stop waits for it before it releases the namespace. */
  starting?: Promise<void>;
  release?: ReleaseRecord;
  /** Its liveness and readiness checks while it is up; `unready` while one fails (it is unpublished then). */
  monitor?: HealthMonitor;
  unready?: boolean;
  /**
   * Whether its endpoint is in the store, as the last endpoint write that landed left it
   * (undefined: unknown, after a new lease). The timer pass writes only where this differs from
   * what the dyno should be, so a write that failed is made again and one that is in sync costs nothing.
   */
  published?: boolean;
  /** Its endpoint writes, one after another: they land in the order they were decided, so `published` follows the store. */
  endpointWrites?: Promise<unknown>;
  /** A timer pass's endpoint write is under way: the next pass does not queue another. */
  syncing?: boolean;
}

export const dynoName = (u: UnitSpec): string => `${u.type}.${u.index}`;
/** Only web dynos listen on $PORT and are published. */
export const webPort = (d: Dyno): number | undefined => (d.unit.type === 'web' ? d.attachment?.port : undefined);
