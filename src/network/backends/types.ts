import type { Logger } from '../../domain/log.js';

/** A peer machine's subnet, as its lease in the store describes it. */
export interface Peer {
  /** `10.244.3.0/24` */
  subnet: string;
  /** Its underlay address. */
  publicIp: string;
  /** VXLAN only: its VTEP's MAC. */
  vtepMac?: string;
}

export interface BackendSetup {
  /** Prefix of this node's kernel objects (see OverlayNetworkOptions.name). */
  name: string;
  /** This machine's subnet, e.g. `10.244.3.0/24`. */
  subnet: string;
  /** The whole overlay, e.g. `10.244.0.0/16`. */
  network: string;
  publicIp: string;
  log: Logger;
}

export interface BackendDevice {
  /** What goes into this machine's subnet lease for peers (VXLAN: its VTEP's MAC). */
  vtepMac?: string;
  /** The MTU dyno veths must use (VXLAN: the underlay's less 50). */
  mtu: number;
  /**
   * The address this machine's own traffic to remote dynos leaves with, when the backend gives it
   * one (VXLAN: the subnet's `.0` on the VTEP, as flannel does); peers' policy trusts it.
   */
  gateway?: string;
}

/**
 * How packets for a peer's subnet get there: flannel's backends, with no daemon on the packet
 * path. `setup` makes this machine's device (if any); `sync` makes the kernel's routes (and ARP
 * and FDB entries) match the peers given, in a few batched commands, removing what is ours and no
 * longer wanted; it is idempotent and cheap enough to re-run as a periodic re-diff.
 */
export interface OverlayBackendDriver {
  readonly type: 'vxlan' | 'host-gw';
  setup(o: BackendSetup): Promise<BackendDevice>;
  sync(peers: Peer[]): Promise<void>;
  /** Removes this machine's device and routes (a node leaving the network for good). */
  teardown(): Promise<void>;
}
