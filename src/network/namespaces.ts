import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { exec, ipBatch } from './commands.js';

/**
 * A dyno's or build's network namespace: one routed /32 veth (no bridge, so no br_netfilter and
 * no ARP between tenants), the host side named `<prefix><8 hex>` and unique per incarnation
 * because `ip netns del` returns before the kernel lets go of the name. Two `ip` runs make it.
 */

/** The dyno's gateway: link-local, answered by a permanent neighbour entry (proxy ARP did not). */
export const GATEWAY = '169.254.1.1';
const NETNS_DIR = '/run/netns';

export interface Wired {
  /** Namespace name (`<prefix>-<kind><8 hex>`) and its path, which the sandbox joins. */
  name: string;
  path: string;
  hostVeth: string;
}

export interface WireOptions {
  /** This node's object prefix (`OverlayNetworkOptions.name`). */
  prefix: string;
  /** `d` for a dyno, `b` for a build: visible in `ip netns list`. */
  kind: 'd' | 'b';
  address: string;
  mtu: number;
  /** The source the host uses towards the namespace (VXLAN's gateway), if any. */
  src?: string;
}

export async function wireNamespace(o: WireOptions): Promise<Wired> {
  const id = randomBytes(4).toString('hex');
  const name = `${o.prefix}-${o.kind}${id}`;
  const hostVeth = `${o.prefix}${id}`;
  // Locally administered, so the namespace's neighbour entry can name it before the link exists.
  const mac = `02:${randomBytes(5).toString('hex').match(/../g)?.join(':') ?? ''}`;
  // A veth takes at most 65535 (loopback's 65536, on a node whose public address is 127.0.0.1,
  // would be refused); 9000 is as far as any real underlay goes.
  const mtu = Math.min(o.mtu, 9000);
  try {
    await ipBatch([
      `netns add ${name}`,
      `link add ${hostVeth} address ${mac} mtu ${mtu} type veth peer name eth0 netns ${name} mtu ${mtu}`,
      `link set ${hostVeth} up`,
      `route add ${o.address}/32 dev ${hostVeth}${o.src ? ` src ${o.src}` : ''}`,
    ]);
    await ipBatch(
      [
        'link set lo up',
        'link set eth0 up',
        `addr add ${o.address}/32 dev eth0`,
        `route add ${GATEWAY} dev eth0 scope link`,
        `route add default via ${GATEWAY} dev eth0`,
        `neigh add ${GATEWAY} lladdr ${mac} dev eth0 nud permanent`,
      ],
      { namespace: name },
    );
  } catch (err) {
    await removeNamespace(name);
    throw err;
  }
  return { name, path: `${NETNS_DIR}/${name}`, hostVeth };
}

/**
 * The veth first (the host route goes with it), then the namespace: a process still holding the
 * namespace open would otherwise keep the veth, and its address's route, alive after the delete.
 */
export async function removeNamespace(name: string): Promise<void> {
  const m = /^(.+)-[db]([0-9a-f]{8})$/.exec(name);
  const lines = [...(m ? [`link del ${m[1]}${m[2]}`] : []), `netns del ${name}`];
  // -force: a veth already gone (or a namespace) is not a reason to leave the rest.
  await exec('ip', ['-force', '-batch', '-'], { input: `${lines.join('\n')}\n` }).catch(() => undefined);
}

/** Namespaces this node made (by prefix): what a crashed predecessor left behind. */
export function ownNamespaces(prefix: string): string[] {
  let entries: string[];
  try {
    entries = readdirSync(NETNS_DIR);
  } catch {
    return [];
  }
  const pattern = new RegExp(`^${prefix}-[db][0-9a-f]{8}$`);
  return entries.filter((e) => pattern.test(e));
}
