/** Shared domain vocabulary: coded errors, the store key layout, logging. */
export * from './errors.js';
export * from './keys.js';
export * from './log.js';
export * from './units.js';
export * from './routers.js';
export * from './codec.js';
export * from './records.js';
export * from './peers.js';
