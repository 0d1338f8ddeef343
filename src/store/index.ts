/**
 * The store: Berth's single source of truth and event bus, with etcd v3 semantics on every backend.
 * Everything else in Berth reads and writes platform state only through `Store`.
 */
export * from './types.js';
export { StoreError, StoreErrorCode, isStoreError } from './errors.js';
export { openStore, supportedStoreUrls, type OpenStoreOptions } from './registry.js';
export { Election, Leadership, type Leader } from './election.js';
export { LeaseKeeper, type LeaseKeeperOptions } from './lease-keeper.js';
export { follow, type Following, type FollowHandlers } from './follow.js';
export { SqliteStore } from './sqlite/index.js';
export { EtcdStore, REVISION_PROBE_KEY, type EtcdStoreOptions, type EtcdTls } from './etcd/index.js';
