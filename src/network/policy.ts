import { BerthError } from '../domain/errors.js';
import type { Logger } from '../domain/log.js';
import { toAddress, tryToInt } from './cidr.js';
import { runNft } from './nft.js';
import type { PolicyChanges, PolicySnapshot, PolicyTable } from './policy-types.js';

/**
 * The machine's default-deny policy as one nftables table, `table inet <name>`.
 *
 * Routed /32 veths (`<name><8 hex>` on the host side) put every dyno and build behind the host's
 * forward path, so one table sees all their traffic. Isolation between apps is a lookup, not a
 * rule per app: `owner` maps a dyno address to its app's group and `owned` holds the same pairs as
 * `address . group`; a forwarded packet between dynos passes iff `daddr . owner[saddr]` is in
 * `owned`. Two hash lookups per new connection however many apps there are, and a table of 10,000
 * dynos loads as data, not as rules.
 */

export const PolicyErrorCode = {
  /** An address, port, group or name that cannot go into the table (checked before nft sees it). */
  Invalid: 'policy_invalid',
  /** `apply` before `load` (or after `remove`): there is nothing to change. */
  NotLoaded: 'policy_not_loaded',
} as const;

/** Link-local: the dynos' gateway (169.254.1.1) and the cloud metadata services; never reachable. */
const LINK_LOCAL = '169.254.0.0/16';

const NAME = /^[a-z][a-z0-9]{0,5}$/;

const bad = (message: string): BerthError => new BerthError(PolicyErrorCode.Invalid, message);

// --- IPv4 in numbers: every address is checked and re-printed by us, so nothing a record holds can
// --- inject nft syntax, and overlapping entries are merged before the kernel sees them.

/** A single address, canonical (`10.250.0.1`). */
function address(s: string, what: string): string {
  const n = tryToInt(s);
  if (n === undefined) throw bad(`${what}: ${JSON.stringify(s)} is not an IPv4 address`);
  return toAddress(n);
}

interface Range {
  lo: number;
  hi: number;
}

/** An address or CIDR as a range; a CIDR with host bits set is refused (a typo, not a network). */
function range(s: string, what: string): Range {
  const [addr = '', len, ...rest] = s.split('/');
  const n = tryToInt(addr);
  const bits = len === undefined ? 32 : /^(0|[1-9][0-9]?)$/.test(len) ? Number(len) : NaN;
  if (n === undefined || rest.length > 0 || !(bits >= 0 && bits <= 32)) throw bad(`${what}: ${JSON.stringify(s)} is not an IPv4 address or CIDR`);
  const size = 2 ** (32 - bits);
  if (n % size !== 0) throw bad(`${what}: ${s} has host bits set (did you mean ${toAddress(n - (n % size))}/${bits}?)`);
  return { lo: n, hi: n + size - 1 };
}

/** The canonical text of an address or CIDR: the key `apply` adds and deletes by. */
function entry(s: string, what: string): string {
  return show(range(s, what));
}

/**
 * Interval set elements without overlaps: the kernel refuses overlapping intervals, and nft's
 * auto-merge would make a later delete of a merged entry fail. So we merge, and interval sets
 * are rewritten whole (they hold a few hundred machine addresses at most).
 */
function intervals(entries: Iterable<string>, what: string): string[] {
  const ranges = [...entries].map((e) => range(e, what)).sort((a, b) => a.lo - b.lo);
  const merged: Range[] = [];
  for (const r of ranges) {
    const last = merged[merged.length - 1];
    if (last && r.lo <= last.hi + 1) last.hi = Math.max(last.hi, r.hi);
    else merged.push({ ...r });
  }
  return merged.map(show);
}

/** A range as nft prints it back: an address, a CIDR when it is one, else `lo-hi`. */
function show(r: Range): string {
  const size = r.hi - r.lo + 1;
  const bits = 32 - Math.log2(size);
  if (Number.isInteger(bits) && r.lo % size === 0) return bits === 32 ? toAddress(r.lo) : `${toAddress(r.lo)}/${bits}`;
  return `${toAddress(r.lo)}-${toAddress(r.hi)}`;
}

function group(g: number, ip: string): number {
  if (!Number.isInteger(g) || g < 0 || g > 0xffffffff) throw bad(`owner of ${ip}: group ${g} is not a 32-bit unsigned integer`);
  return g;
}

function port(p: number): number {
  if (!Number.isInteger(p) || p < 1 || p > 65535) throw bad(`public port ${p} is not a TCP port`);
  return p;
}

function checkName(name: string): void {
  if (!NAME.test(name)) throw bad(`table name ${JSON.stringify(name)} must match ${NAME.source}`);
}

/** What the kernel holds, in canonical form: `apply` diffs against it (nft 1.0.6 has no `destroy element`). */
interface Loaded {
  overlay: string;
  publicPorts: number[];
  publicEndpoints: string[];
  resolvers: string[];
  vxlanPort: number | undefined;
  internal: Set<string>;
  trusted: Set<string>;
  builds: Set<string>;
  owners: Map<string, number>;
}

function normalise(s: PolicySnapshot): Loaded {
  const owners = new Map<string, number>();
  for (const [ip, g] of s.owners) owners.set(address(ip, 'owner'), group(g, ip));
  return {
    overlay: entry(s.overlay, 'overlay'),
    publicPorts: [...new Set(s.publicPorts.map(port))].sort((a, b) => a - b),
    publicEndpoints: [...new Set(s.publicEndpoints.map(([ip, p]) => `${address(ip, 'public endpoint')} . ${port(p)}`))],
    resolvers: [...new Set(s.resolvers.map((ip) => address(ip, 'resolver')))],
    vxlanPort: s.vxlanPort === undefined ? undefined : port(s.vxlanPort),
    internal: new Set([...s.internal.map((e) => entry(e, 'internal')), LINK_LOCAL]),
    trusted: new Set(s.trusted.map((e) => entry(e, 'trusted'))),
    builds: new Set(s.builds.map((e) => address(e, 'build'))),
    owners,
  };
}

const elements = (xs: (string | number)[]): string => (xs.length > 0 ? `\n    elements = {\n      ${xs.join(',\n      ')}\n    };\n ` : '');

function render(name: string, l: Loaded): string {
  const owners = [...l.owners];
  const veths = `iifname "${name}*" iifname != "${name}.vx"`;
  // Only machines send to the VTEP (an outsider's frame would be decapsulated as overlay traffic).
  const vxlanIn = l.vxlanPort === undefined ? '' : `\n    udp dport ${l.vxlanPort} ip saddr != @trusted drop`;
  const vxlanOut = l.vxlanPort === undefined ? '' : `\n    udp dport ${l.vxlanPort} drop`;
  return `add table inet ${name}
delete table inet ${name}
table inet ${name} {
  set overlay { type ipv4_addr; flags interval;${elements(intervals([l.overlay], 'overlay'))} }
  set internal { type ipv4_addr; flags interval;${elements(intervals(l.internal, 'internal'))} }
  set trusted { type ipv4_addr; flags interval;${elements(intervals(l.trusted, 'trusted'))} }
  set public_ports { type inet_service;${elements(l.publicPorts)} }
  set public_endpoints { type ipv4_addr . inet_service;${elements(l.publicEndpoints)} }
  set resolvers { type ipv4_addr;${elements(l.resolvers)} }
  set builds { type ipv4_addr;${elements([...l.builds])} }
  map owner { type ipv4_addr : mark;${elements(owners.map(([ip, g]) => `${ip} : ${g}`))} }
  set owned { type ipv4_addr . mark;${elements(owners.map(([ip, g]) => `${ip} . ${g}`))} }

  # Anti-spoofing on our veths: a source must route back out of the interface it came in by, so a
  # dyno cannot borrow another app's address or a trusted one. IPv6 from a dyno is dropped: nothing
  # of ours speaks it, and link-local IPv6 would reach the host's services around every rule below.
  # The VXLAN device shares the prefix; its traffic was checked on the machine it came from.
  chain prerouting {
    type filter hook prerouting priority mangle; policy accept;
    ${veths} meta nfproto ipv6 drop
    ${veths} fib saddr . iif oif missing drop
  }

  # The host's own services: an overlay source reaches only the public ports (router, API), and a
  # build nothing at all. Machines (trusted) may use their VXLAN address as a source.
  chain input {
    type filter hook input priority filter; policy accept;${vxlanIn}
    ip saddr @overlay jump overlay_in
  }
  chain overlay_in {
    ct state established,related accept
    ip daddr @resolvers meta l4proto { tcp, udp } th dport 53 accept
    ip saddr @builds drop
    ip saddr @trusted accept
    tcp dport @public_ports accept
    drop
  }

  chain forward {
    type filter hook forward priority filter; policy accept;
    ct state established,related accept
    ip daddr @overlay jump to_overlay
    ip saddr @overlay jump overlay_out
  }
  # Into a dyno: from a machine, or from a dyno of the same app. The mark is scratch space for the
  # source's group: these packets arrive unmarked (leaving a dyno's namespace clears the mark, and
  # nothing on a Berth machine marks overlay traffic), and an accepted one leaves unmarked again.
  # A build or an unknown source has no owner: the map lookup misses and the packet is dropped.
  chain to_overlay {
    ip saddr @trusted accept
    meta mark set ip saddr map @owner ip daddr . meta mark @owned meta mark set 0 accept
    drop
  }
  # Out of the overlay: the outside world, but no machine, store or link-local address except a
  # dyno to a machine's public ports (each machine's own), and the resolvers' port 53; builds get
  # the outside world only. Nothing from a dyno or build may speak VXLAN: a hand-made frame to a
  # peer's VTEP would arrive there as trusted overlay traffic.
  chain overlay_out {${vxlanOut}
    ip daddr @resolvers meta l4proto { tcp, udp } th dport 53 accept
    ip saddr @builds ip daddr @internal drop
    ip saddr @builds accept
    ip daddr . tcp dport @public_endpoints accept
    ip daddr @internal drop
  }

  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr @overlay ip daddr != @overlay masquerade
  }
}
`;
}

/** The table's text, for `nft -f` (exported for tests and `nft -c` checks). */
export function renderTable(name: string, s: PolicySnapshot): string {
  checkName(name);
  return render(name, normalise(s));
}

export class NftPolicy implements PolicyTable {
  private loaded: Loaded | undefined;
  /** load, apply and remove run one at a time: each diffs against what the one before left. */
  private queue: Promise<unknown> = Promise.resolve();
  private readonly log: Logger;

  constructor(private readonly o: { name: string; log: Logger; netns?: string }) {
    checkName(o.name);
    this.log = o.log.child({ component: 'policy', table: o.name });
  }

  load(s: PolicySnapshot): Promise<void> {
    return this.serial(async () => {
      const next = normalise(s);
      const started = Date.now();
      await this.nft(render(this.o.name, next));
      this.loaded = next;
      this.log.info({ owners: next.owners.size, builds: next.builds.size, internal: next.internal.size, trusted: next.trusted.size, ms: Date.now() - started }, 'policy table loaded');
    });
  }

  apply(c: PolicyChanges): Promise<void> {
    return this.serial(async () => {
      const l = this.loaded;
      if (!l) throw new BerthError(PolicyErrorCode.NotLoaded, `apply before load: table inet ${this.o.name} is not loaded`);
      const t = `inet ${this.o.name}`;
      const lines: string[] = [];
      const del = (set: string, xs: string[]): void => void (xs.length > 0 && lines.push(`delete element ${t} ${set} { ${xs.join(', ')} }`));
      const add = (set: string, xs: string[]): void => void (xs.length > 0 && lines.push(`add element ${t} ${set} { ${xs.join(', ')} }`));

      // Owners: the last word per address wins (del first, then set); only real differences reach
      // nft, so deleting an absent owner is a no-op and a moved owner is a delete plus an add.
      const owners = new Map<string, number | undefined>();
      for (const ip of c.owners?.del ?? []) owners.set(address(ip, 'owner'), undefined);
      for (const [ip, g] of c.owners?.set ?? []) owners.set(address(ip, 'owner'), group(g, ip));
      for (const [ip, g] of owners) if (l.owners.get(ip) === g) owners.delete(ip);
      const gone = [...owners.keys()].filter((ip) => l.owners.has(ip));
      const come = [...owners].filter((o): o is [string, number] => o[1] !== undefined);
      del('owner', gone);
      del('owned', gone.map((ip) => `${ip} . ${l.owners.get(ip)}`));
      add('owner', come.map(([ip, g]) => `${ip} : ${g}`));
      add('owned', come.map(([ip, g]) => `${ip} . ${g}`));

      const builds = new Map<string, boolean>();
      for (const ip of c.builds?.del ?? []) builds.set(address(ip, 'build'), false);
      for (const ip of c.builds?.add ?? []) builds.set(address(ip, 'build'), true);
      for (const [ip, on] of builds) if (l.builds.has(ip) === on) builds.delete(ip);
      del('builds', [...builds].filter(([, on]) => !on).map(([ip]) => ip));
      add('builds', [...builds].filter(([, on]) => on).map(([ip]) => ip));

      const internal = this.rewrite(lines, 'internal', l.internal, c.internal);
      const trusted = this.rewrite(lines, 'trusted', l.trusted, c.trusted);

      if (lines.length === 0) return;
      const started = Date.now();
      await this.nft(lines.join('\n') + '\n');
      // Only now, with the kernel changed, does the record of what it holds change.
      for (const [ip, g] of owners) {
        if (g === undefined) l.owners.delete(ip);
        else l.owners.set(ip, g);
      }
      for (const [ip, on] of builds) {
        if (on) l.builds.add(ip);
        else l.builds.delete(ip);
      }
      if (internal) l.internal = internal;
      if (trusted) l.trusted = trusted;
      this.log.debug({ owners: owners.size, builds: builds.size, internal: !!internal, trusted: !!trusted, ms: Date.now() - started }, 'policy changes applied');
    });
  }

  remove(): Promise<void> {
    return this.serial(async () => {
      // `add` first so that removing an absent table succeeds.
      await this.nft(`add table inet ${this.o.name}\ndelete table inet ${this.o.name}\n`);
      this.loaded = undefined;
      this.log.info('policy table removed');
    });
  }

  /** An interval set's new contents and the lines that rewrite it whole, if they differ. */
  private rewrite(lines: string[], set: 'internal' | 'trusted', now: Set<string>, change: { add: string[]; del: string[] } | undefined): Set<string> | undefined {
    if (!change || (change.add.length === 0 && change.del.length === 0)) return undefined;
    const next = new Set(now);
    for (const e of change.del) next.delete(entry(e, set));
    for (const e of change.add) next.add(entry(e, set));
    if (set === 'internal') next.add(LINK_LOCAL); // always, whatever a change says
    const before = intervals(now, set);
    const after = intervals(next, set);
    if (before.join() === after.join()) return next;
    lines.push(`flush set inet ${this.o.name} ${set}`);
    if (after.length > 0) lines.push(`add element inet ${this.o.name} ${set} { ${after.join(', ')} }`);
    return next;
  }

  private nft(script: string): Promise<void> {
    return runNft(script, this.o.netns ? { netns: this.o.netns } : {});
  }

  private serial<T>(f: () => Promise<T>): Promise<T> {
    const run = this.queue.then(f, f);
    this.queue = run.catch(() => undefined);
    return run;
  }
}
