import { z } from 'zod';
import { int, str } from './schema.js';

/**
 * Records of the overlay network (src/network/), flannel's model: one range for the cluster, one
 * subnet leased per machine, one address per dyno.
 */

export type OverlayBackend = { type: 'vxlan'; vni: number; port: number } | { type: 'host-gw' };

/** `/berth/network/config`: written once (create-only) by the first node that starts a network. */
export interface NetworkConfigRecord {
  /** The overlay range, e.g. `10.244.0.0/16`. */
  network: string;
  /** Prefix length of each machine's subnet (24). */
  subnet_len: number;
  backend: OverlayBackend;
  created_at: string;
}
const backendSchema: z.ZodType<OverlayBackend> = z.union([
  z.looseObject({ type: z.literal('vxlan'), vni: int.min(1).max(16_777_215), port: int.min(1).max(65_535) }),
  z.looseObject({ type: z.literal('host-gw') }),
]);
const OCTET = '(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)';
const ipv4 = z.string().regex(new RegExp(`^(${OCTET}\\.){3}${OCTET}$`));
const cidr = z.string().regex(new RegExp(`^(${OCTET}\\.){3}${OCTET}/(3[0-2]|[12]?\\d)$`));
export const networkConfigSchema: z.ZodType<NetworkConfigRecord> = z.looseObject({ network: cidr, subnet_len: int.min(8).max(30), backend: backendSchema, created_at: str });

/**
 * `/berth/network/subnets/<a.b.c.d>-<len>`: a machine's subnet, under a long lease of its own
 * (24 h, renewed), so an agent that blinks keeps its routes everywhere.
 */
export interface SubnetRecord {
  machine: string;
  /** The underlay address peers send this subnet's traffic to. */
  public_ip: string;
  /** Every other IPv4 address of the machine: no dyno may reach any of them either. */
  addresses?: string[];
  /** Its public router and API ports: the only ones of its addresses a dyno may open. */
  public_ports?: number[];
  backend: { type: OverlayBackend['type']; /** VXLAN: the VTEP's MAC, for peers' ARP and FDB entries. */ vtep_mac?: string };
  acquired_at: string;
}
export const subnetSchema: z.ZodType<SubnetRecord> = z.looseObject({
  machine: str,
  public_ip: ipv4,
  addresses: z.array(ipv4).max(256).optional(),
  public_ports: z.array(int.min(1).max(65_535)).max(64).optional(),
  backend: z.looseObject({ type: z.enum(['vxlan', 'host-gw']), vtep_mac: z.string().regex(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/).optional() }),
  acquired_at: str,
});

/**
 * `/berth/network/ips/<a.b.c.d>`: an overlay address in use, by whom. Every machine's policy
 * follows these: `group` is the app's uid, the number its nftables elements carry.
 */
export interface IpRecord {
  app_id: string;
  group: number;
  /** The unit or one-off dyno it belongs to. */
  owner: string;
  machine: string;
}
export const ipSchema: z.ZodType<IpRecord> = z.looseObject({ app_id: str, group: int.positive().max(0xffffffff), owner: str, machine: str });
