import type { ReleaseRecord } from '../domain/records.js';
import type { Logger } from '../domain/log.js';
import type { MachineInfo } from '../domain/units.js';
import type { Networks } from '../network/index.js';
import type { Store } from '../store/index.js';
import type { Runtime } from './runtime/types.js';

export interface AgentOptions {
  store: Store;
  log: Logger;
  machine: MachineInfo;
  runtime: Runtime;
  /** A namespace and an address per dyno (the overlay; the loopback network on the fake runtime). */
  network: Networks;
  /** Host path of a slug's tarball (fetched and checksum-verified if need be). */
  slugPath: (slugId: string) => Promise<string>;
  /** Where dyno output and platform lines go (the app's log stream). */
  appLog: (appId: string, source: string, dyno: string, message: string) => void;
  /**
   * A release of one of this machine's units. Default: read from the store; an agent machine of a
   * secured cluster, whose certificate reads releases sealed, asks a server (`ControllerLink`).
   */
  release?: (appId: string, version: number) => Promise<ReleaseRecord | undefined>;
  /** The app's uid. Default: allocated in the store; from the same server as `release` otherwise. */
  uidOf?: (appId: string) => Promise<number>;
  ttl?: number;
  bootTimeoutMs?: number;
  /** The most a web dyno's startup checks may take together, after the largest initialDelay, before it fails to boot (R10; default 10 min). */
  startupTimeoutMs?: number;
  /** A pass from memory this often (crash backoffs end; default 5 s). */
  reconcileMs?: number;
  /** A full re-read of the assignments this often (default 60 s). */
  repairMs?: number;
  /** The first crash restart's delay, doubled per crash up to 5 min (default 1 s, as Heroku). */
  crashBackoffMs?: number;
}
