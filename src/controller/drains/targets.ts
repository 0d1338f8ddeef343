import { lookup, type LookupAddress, type LookupOptions } from 'node:dns';
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';
import { list, tryDecode } from '../../domain/codec.js';
import { errorMessage } from '../../domain/errors.js';
import { keys } from '../../domain/keys.js';
import type { Logger } from '../../domain/log.js';
import { codecs } from '../../domain/records.js';
import type { Store } from '../../store/index.js';

/**
 * Where a tenant's drain may not go. A drain is a TCP client the controller runs on the tenant's
 * behalf; pointed inside, it would write bytes the tenant controls into services the tenant cannot
 * otherwise reach (the store, other apps' dynos, cloud metadata, the LAN behind the cluster). Only
 * globally routable unicast addresses pass: ipaddr.js names every other IANA special range
 * (private 10/8, 172.16/12, 192.168/16, carrier-grade NAT 100.64/10, loopback, link-local,
 * unspecified, multicast, reserved; fc00::/7, fe80::/10, ::1, and the IPv6 forms that carry an
 * IPv4 address to a translator: 6to4, NAT64, Teredo). IPv4-mapped IPv6 is judged as its IPv4.
 * Admins may still add such drains (a collector on the operator's own network).
 */
export function isInternalAddress(address: string): boolean {
  if (!ipaddr.isValid(address)) return false;
  let addr: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    // `process` turns ::ffff:a.b.c.d into a.b.c.d.
    addr = ipaddr.process(address);
  } catch {
    return true;
  }
  return addr.range() !== 'unicast';
}

/** Every address `host` resolves to (itself, for an IP literal). */
export function resolveAll(host: string): Promise<string[]> {
  if (isIP(host)) return Promise.resolve([host]);
  return new Promise((resolve, reject) => lookup(host, { all: true }, (err, addresses) => (err ? reject(err) : resolve(addresses.map((a) => a.address)))));
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;
export type LookupFunction = (hostname: string, options: LookupOptions, callback: LookupCallback) => void;

/**
 * A `lookup` for net.connect that resolves once, refuses the name if any address it has is
 * refused, and hands net.connect exactly the addresses it checked: a name checked when the drain
 * was added may resolve elsewhere later (DNS rebinding), and must not be resolved again between
 * the check and the connect.
 */
export function checkedLookup(refused: (address: string) => boolean): LookupFunction {
  return (hostname, options, callback) => {
    lookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, []);
      const bad = addresses.find((a) => refused(a.address));
      if (bad) {
        return callback(Object.assign(new Error(`${hostname} resolves to ${bad.address}, an internal or cluster address; only an admin's drain may go there`), { code: 'EACCES' }), []);
      }
      if (options.all) return callback(null, addresses);
      const first = addresses[0];
      callback(null, first?.address ?? '', first?.family);
    });
  };
}

/** The lookup for a tenant's drain when the cluster's own addresses are not known (special ranges only). */
export const guardedLookup: LookupFunction = checkedLookup(isInternalAddress);

export interface DrainTargetsOptions {
  store: Store;
  log: Logger;
  /** How old the cluster's addresses may be before a check reads them again (default 60 s). */
  maxAgeMs?: number;
}

/** A range, such as the overlay's `a.b.c.d/n`. */
type Range = [ipaddr.IPv4 | ipaddr.IPv6, number];

/**
 * The checks for a tenant's drain, cluster-aware: besides the special ranges, the cluster's own
 * addresses (every machine's, every server's, every subnet's underlay addresses) and its overlay
 * range, which may well be public. Those are read from the store at most once per `maxAgeMs`,
 * however many drains are added or connect: machines join rarely, drains connect often.
 */
export class DrainTargets {
  private addresses = new Set<string>();
  private ranges: Range[] = [];
  private readAt = 0;
  private reading: Promise<void> | undefined;

  constructor(private readonly o: DrainTargetsOptions) {}

  /** Whether a tenant's drain may not connect to `address` (from what is known now). */
  refused(address: string): boolean {
    if (isInternalAddress(address)) return true;
    if (!ipaddr.isValid(address)) return false;
    const addr = ipaddr.process(address);
    if (this.addresses.has(addr.toNormalizedString())) return true;
    return this.ranges.some(([net, len]) => net.kind() === addr.kind() && addr.match([net, len] as never));
  }

  /** Reads the cluster's addresses again if they are older than `maxAgeMs` (one read at a time). */
  async fresh(): Promise<void> {
    if (Date.now() - this.readAt < (this.o.maxAgeMs ?? 60_000)) return;
    this.reading ??= this.read().finally(() => (this.reading = undefined));
    await this.reading;
  }

  /** Why a tenant may not add a drain to `host`, or undefined. Resolves the name now. */
  async problem(host: string): Promise<string | undefined> {
    await this.fresh();
    let addresses: string[];
    try {
      addresses = await resolveAll(host);
    } catch {
      // Not resolvable now: it may be later. The sender checks every address it connects to.
      return undefined;
    }
    const bad = addresses.find((a) => this.refused(a));
    if (!bad) return undefined;
    return isInternalAddress(bad) ? `${host} is an internal address (${bad}: a private network, this host, link-local or another special range)` : `${host} is an address of this Berth cluster (${bad})`;
  }

  /** For net.connect: checks with what is known, and starts a re-read in the background when it is old. */
  readonly lookup: LookupFunction = (hostname, options, callback) => {
    const check = (): void => checkedLookup((a) => this.refused(a))(hostname, options, callback);
    // Before the first read the cluster's addresses are unknown, and every address would pass:
    // wait for it, and refuse while it cannot be read (the drain retries with backoff).
    if (this.readAt === 0) {
      void this.fresh().then(() => {
        if (this.readAt !== 0) return check();
        const err: NodeJS.ErrnoException = new Error(`${hostname}: the cluster's own addresses cannot be read yet, so no drain connects`);
        err.code = 'EAGAIN';
        callback(err, '', 4);
      });
    } else {
      void this.fresh().catch(() => undefined);
      check();
    }
  };

  private async read(): Promise<void> {
    const { store } = this.o;
    try {
      const [machines, servers, subnets, config] = await Promise.all([
        list(store, keys.machines(), codecs.machine),
        list(store, keys.servers(), codecs.server),
        list(store, keys.subnets(), codecs.subnet),
        store.get(keys.networkConfig()),
      ]);
      const addresses = new Set<string>();
      const add = (a: string | undefined): void => {
        if (a && ipaddr.isValid(a)) addresses.add(ipaddr.process(a).toNormalizedString());
      };
      for (const m of machines) add(m.value.address);
      for (const s of servers) add(s.value.address);
      for (const s of subnets) {
        add(s.value.public_ip);
        for (const a of s.value.addresses ?? []) add(a);
      }
      const ranges: Range[] = [];
      const overlay = tryDecode(codecs.networkConfig, config)?.network;
      if (overlay && ipaddr.isValidCIDR(overlay)) ranges.push(ipaddr.parseCIDR(overlay));
      this.addresses = addresses;
      this.ranges = ranges;
      this.readAt = Date.now();
    } catch (err) {
      // Keep what was known; the next check tries again.
      this.o.log.warn({ err: errorMessage(err) }, "could not read the cluster's addresses for drain checks");
    }
  }
}
