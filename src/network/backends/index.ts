import { invalid } from '../../domain/errors.js';
import { HostGwDriver } from './host-gw.js';
import type { OverlayBackendDriver } from './types.js';
import { VxlanDriver } from './vxlan.js';

export type { BackendDevice, BackendSetup, OverlayBackendDriver, Peer } from './types.js';
export { BERTH_ROUTE_PROTO, IpCommandError, IpRunner } from './ip.js';
export { HostGwDriver } from './host-gw.js';
export { VxlanDriver, vtepMacFor } from './vxlan.js';

export interface BackendDriverOptions {
  /** VXLAN: the network's VNI and UDP port (from the network config). */
  vni?: number;
  port?: number;
  /** Run every command inside this namespace (`/run/netns/X`); tests only. */
  netns?: string;
}

/** The driver for the network config's backend. */
export function backendDriver(type: OverlayBackendDriver['type'], o: BackendDriverOptions = {}): OverlayBackendDriver {
  const netns = o.netns ? { netns: o.netns } : {};
  switch (type) {
    case 'host-gw':
      return new HostGwDriver(netns);
    case 'vxlan':
      if (o.vni === undefined || o.port === undefined) throw invalid('The vxlan backend needs a VNI and a port.');
      return new VxlanDriver({ vni: o.vni, port: o.port, ...netns });
    default:
      throw invalid(`Unknown overlay backend ${JSON.stringify(type)}.`);
  }
}
