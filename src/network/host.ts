import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BerthError, invalid } from '../domain/errors.js';
import { formatCidr, isIPv4, overlaps, parseCidr, type Range } from './cidr.js';
import { ipJson, run } from './commands.js';

/** What the network needs of the host, checked before it touches anything. */

export async function preflight(): Promise<void> {
  if (process.getuid?.() !== 0) throw new BerthError('network_needs_root', 'The overlay network needs root (namespaces, routes, nftables): run berth as root.');
  for (const [cmd, pkg] of [['ip', 'iproute2'], ['nft', 'nftables'], ['nsenter', 'util-linux'], ['bridge', 'iproute2']] as const) {
    await run(cmd, ['-V']).catch(() => {
      throw new BerthError('network_tool_missing', `The overlay network needs \`${cmd}\`: install the Debian package ${pkg} (./scripts/setup.sh does).`);
    });
  }
}

/** Routing between dynos and peers is forwarding; the kernel's default is off. */
export async function enableForwarding(): Promise<void> {
  writeFileSync('/proc/sys/net/ipv4/ip_forward', '1');
  await Promise.resolve();
}

interface IpAddr {
  ifname: string;
  addr_info?: { family: string; local: string; prefixlen: number }[];
}
interface IpRoute {
  dst: string;
  dev?: string;
  protocol?: string;
}

/**
 * The overlay must not shadow anything the host reaches already: one of its addresses, a route
 * (other than ours: routes of this node's devices or inside the overlay with our protocol), or
 * the resolver (pitfall: this VM's sits in 10.0.0.0/8).
 */
export async function checkOverlap(network: Range, name: string): Promise<void> {
  const clash = (what: string, cidr: string): never => {
    throw invalid(`The overlay ${formatCidr(network)} overlaps ${what} (${cidr}); choose another range with --overlay.`);
  };
  const ours = new RegExp(`^${name}([0-9a-f]{8}|\\.vx)$`);
  for (const link of await ipJson<IpAddr>(['addr', 'show'])) {
    // The policy matches our veths by `<name>*`: a host interface with that prefix would match too.
    if (link.ifname.startsWith(name) && !ours.test(link.ifname)) throw invalid(`The network name "${name}" is a prefix of this host's interface ${link.ifname}; choose another --network-name.`);
    if (link.ifname.startsWith(name)) continue;
    for (const a of link.addr_info ?? []) {
      if (a.family !== 'inet') continue;
      const base = parseCidr(`${a.local}/32`);
      if (overlaps(base, network)) clash(`the address of ${link.ifname}`, `${a.local}/${a.prefixlen}`);
    }
  }
  for (const r of await ipJson<IpRoute>(['route', 'show', 'table', 'main'])) {
    if (r.dst === 'default' || (r.dev && r.dev.startsWith(name))) continue;
    const dst = r.dst.includes('/') ? r.dst : `${r.dst}/32`;
    let range: Range;
    try {
      range = parseCidr(dst);
    } catch {
      continue;
    }
    // Peer routes a previous incarnation of this node left (host-gw puts them on the underlay).
    if (r.protocol === '66' || r.protocol === 'berth') continue;
    if (overlaps(range, network)) clash(`a route on ${r.dev ?? 'this host'}`, dst);
  }
  for (const ns of nameservers(readText('/etc/resolv.conf'))) {
    if (overlaps(parseCidr(`${ns}/32`), network)) clash('the resolver', ns);
  }
}

/** The host's IPv4 addresses outside loopback and the overlay: what peers must keep dynos from. */
export async function hostAddresses(network: Range, name: string): Promise<string[]> {
  const out = new Set<string>();
  for (const link of await ipJson<IpAddr>(['-4', 'addr', 'show'])) {
    if (link.ifname === 'lo' || link.ifname.startsWith(name)) continue;
    for (const a of link.addr_info ?? []) {
      if (a.family === 'inet' && isIPv4(a.local) && !a.local.startsWith('127.') && !overlaps(parseCidr(`${a.local}/32`), network)) out.add(a.local);
    }
  }
  return [...out].slice(0, 256);
}

function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

function nameservers(text: string): string[] {
  return [...text.matchAll(/^\s*nameserver\s+(\S+)/gm)].map((m) => m[1] ?? '').filter(isIPv4);
}

/**
 * A resolv.conf a namespace can use: the host's, unless it names only loopback resolvers (which
 * a namespace cannot reach); then systemd-resolved's upstream list, if there is one.
 */
export function resolverFile(dir: string): { file: string; servers: string[] } {
  // 0711: a dyno's uid binds the file by its path, and must pass through the dir (not list it).
  mkdirSync(dir, { recursive: true, mode: 0o711 });
  chmodSync(dir, 0o711);
  const reachable = (ns: string): boolean => !ns.startsWith('127.');
  let servers = nameservers(readText('/etc/resolv.conf')).filter(reachable);
  const upstream = '/run/systemd/resolve/resolv.conf';
  if (servers.length === 0 && existsSync(upstream)) servers = nameservers(readText(upstream)).filter(reachable);
  const search = /^\s*search\s+(.+)$/m.exec(readText('/etc/resolv.conf'))?.[1]?.trim();
  const file = join(dir, 'resolv.conf');
  writeFileSync(file, `# Written by berth for dynos and builds.\n${servers.map((s) => `nameserver ${s}\n`).join('')}${search ? `search ${search}\n` : ''}options timeout:2 attempts:2\n`, { mode: 0o644 });
  return { file, servers };
}

const LOCK_DIR = '/run/berth';

/**
 * One node per network name per kernel: a second would reap the first's namespaces, reload its
 * table with its own ports and tear its device down on stop. The lock names the holder's pid;
 * a dead holder's lock is taken over.
 */
export function lockName(name: string): () => void {
  mkdirSync(LOCK_DIR, { recursive: true, mode: 0o755 });
  const file = join(LOCK_DIR, `network-${name}.pid`);
  const holder = Number(readText(file).trim());
  if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && alive(holder)) {
    throw invalid(`Another berth node (pid ${holder}) runs the network "${name}" on this machine. Run one node per machine, or give each its own --network-name.`);
  }
  writeFileSync(file, `${process.pid}\n`, { mode: 0o644 });
  return () => {
    if (Number(readText(file).trim()) === process.pid) rmSync(file, { force: true });
  };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
