/**
 * Berth's flannel: an overlay range in the store, a subnet leased per machine, a namespace and an
 * overlay address per dyno, routes to every peer (VXLAN or host-gw), and one nftables table per
 * machine that denies whatever a dyno or build must not reach.
 */
export type { Attachment, BackendName, DynoAttachRequest, Networks, OverlayNetworkOptions } from './types.js';
export { LoopbackNetwork } from './loopback.js';
export { OverlayNetwork, DYNO_PORT } from './network.js';
