import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync } from 'node:fs';
import { lookup } from 'node:dns/promises';
import { isIP, isIPv4 } from 'node:net';
import { invalid } from '../domain/errors.js';
import { join } from 'node:path';
import type { Logger } from '../domain/log.js';
import { OverlayNetwork } from '../network/index.js';
import type { Store } from '../store/index.js';
import type { NetworkRole } from './types.js';

/** The kernel object prefix when none is given: namespaces `berth-…`, veths `berth…`, table `berth`. */
export const DEFAULT_NETWORK_NAME = 'berth';

/**
 * The address this host's traffic to the world leaves from (the source of its default route), or
 * undefined without one. What peers reach this machine at when nothing more specific is given.
 */
export function defaultSourceAddress(): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile('ip', ['-j', 'route', 'get', '1.1.1.1'], { timeout: 5000, env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } }, (err, stdout) => {
      if (err) return resolve(undefined);
      try {
        const [route] = JSON.parse(stdout) as { prefsrc?: string }[];
        resolve(route?.prefsrc && isIPv4(route.prefsrc) ? route.prefsrc : undefined);
      } catch {
        resolve(undefined);
      }
    });
  });
}

/**
 * The hosts of the store's servers (`etcd://h1:p,h2:p` → their IPv4 addresses, names resolved):
 * a dyno must reach none of them. A sqlite or memory store has no server to keep dynos from.
 */
export async function storeAddresses(url: string): Promise<string[]> {
  const m = /^etcd:\/\/(.+)$/.exec(url);
  if (!m?.[1]) return [];
  const hosts = (m[1].split('/')[0] ?? '')
    .split(',')
    .map((h) => h.replace(/^[^@]*@/, '').replace(/:\d+$/, '').replace(/^\[|\]$/g, ''))
    .filter(Boolean);
  const out = new Set<string>();
  for (const host of hosts) {
    if (isIPv4(host)) out.add(host);
    else if (isIP(host) === 6) {
      // The overlay and its policy are IPv4; dynos have no IPv6 at all (the policy drops it).
      continue;
    } else {
      // Every address the name has: a dyno must not reach the store by any of them. A name that
      // does not resolve now would leave the store open to dynos: refuse to start instead.
      const found = await lookup(host, { all: true, family: 4 }).catch(() => []);
      if (found.length === 0) throw invalid(`The store's host ${host} does not resolve to an IPv4 address; the network cannot keep dynos away from it. Fix DNS or name the store by address.`);
      for (const a of found) out.add(a.address);
    }
  }
  return [...out];
}

export interface NodeNetworkOptions {
  store: Store;
  /** The store's URL, for the addresses dynos must never reach. */
  storeUrl: string;
  log: Logger;
  dataDir: string;
  machine: string;
  role: NetworkRole;
  /** An agent's `--address`: its public IP when given. */
  address?: string;
  /** This node's public router and API ports: the only ones of it a dyno may open. */
  publicPorts: number[];
  /** The agent's lease TTL (s): how long a predecessor's endpoints can outlive it. */
  agentTtl?: number;
}

/**
 * This node's overlay network, made by the composition root (not started). Its public IP is the
 * agent's address, else the one given, else the source of the host's default route.
 */
export async function nodeNetwork(o: NodeNetworkOptions): Promise<OverlayNetwork> {
  const dir = join(o.dataDir, 'network');
  // The dynos' resolv.conf lives here and bwrap binds it as the dyno's uid: traversable, not listable.
  mkdirSync(dir, { recursive: true, mode: 0o711 });
  chmodSync(dir, 0o711);
  const publicIp = o.address ?? o.role.publicIp ?? (await defaultSourceAddress()) ?? '127.0.0.1';
  const request = { ...(o.role.overlay ? { network: o.role.overlay } : {}), ...(o.role.backend ? { backend: o.role.backend } : {}) };
  return new OverlayNetwork({
    store: o.store,
    log: o.log.child({ component: 'network' }),
    machine: o.machine,
    dir,
    name: o.role.name ?? DEFAULT_NETWORK_NAME,
    publicIp,
    ...(Object.keys(request).length > 0 ? { request } : {}),
    publicPorts: [...new Set(o.publicPorts)],
    internalAddresses: await storeAddresses(o.storeUrl),
    // A restarted node's predecessor's addresses stay out of use until its endpoints' lease is gone.
    holdMs: ((o.agentTtl ?? 5) + 5) * 1000,
  });
}
