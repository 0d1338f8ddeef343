import { randomInt } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeAll, putOp } from '../domain/codec.js';
import { BerthError, errorMessage } from '../domain/errors.js';
import { keys } from '../domain/keys.js';
import type { Logger } from '../domain/log.js';
import { codecs, type SubnetRecord } from '../domain/records.js';
import { isStoreError, StoreErrorCode, type Store } from '../store/index.js';
import { formatCidr, parseCidr, size, subnetAt, type Range } from './cidr.js';

export interface SubnetLeaseOptions {
  store: Store;
  log: Logger;
  machine: string;
  publicIp: string;
  /** Holds `subnet.json`: the subnet and lease this machine had. */
  dir: string;
  network: Range;
  subnetBits: number;
  backend: SubnetRecord['backend']['type'];
  /** Seconds (flannel: 24 h). */
  ttl: number;
  /** After the lease was lost and taken again: keys under the old lease are gone and must be rewritten. */
  onRetaken?: (sameSubnet: boolean) => Promise<void>;
  /** The machine's other IPv4 addresses (a second NIC, a private network): published for peers' policies. */
  addresses?: string[];
  /** This machine's public ports, published for peers' policies. */
  publicPorts?: number[];
  /** VXLAN: the VTEP MAC a subnet's device will have, so the first record already carries it. */
  vtepMacFor?: (subnet: Range) => string;
}

interface SubnetFile {
  subnet: string;
  lease: string;
}

/**
 * This machine's subnet, flannel's way: taken by a create-only write under a lease of its own —
 * long, because losing it withdraws every peer's route to our dynos — and preferred again after a
 * restart, by our address first, then by the subnet file, so dynos keep their range across agent
 * restarts. Renewed at a third of its TTL; taken again (the same subnet if still free) if lost.
 */
export class SubnetLease {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private vtepMac: string | undefined;

  private constructor(
    private readonly o: SubnetLeaseOptions,
    public subnet: Range,
    public leaseId: string,
  ) {}

  get cidr(): string {
    return formatCidr(this.subnet);
  }

  static async acquire(o: SubnetLeaseOptions): Promise<SubnetLease> {
    const { subnet, lease } = await take(o, undefined);
    const held = new SubnetLease(o, subnet, lease);
    held.schedule(held.refreshMs());
    return held;
  }

  /** Rewrites our record (e.g. with the VTEP's MAC once the device exists), under our lease. */
  async publish(vtepMac?: string): Promise<void> {
    this.vtepMac = vtepMac;
    const key = keys.subnet(this.cidr);
    const r = await this.o.store.txn({ compare: [{ key, target: 'lease', op: '=', value: this.leaseId }], success: [putOp(key, codecs.subnet, record(this.o, this.cidr, vtepMac), this.leaseId)] });
    if (!r.succeeded) throw new BerthError('subnet_lost', `subnet ${this.cidr} is no longer this machine's`, { retryable: true });
  }

  private refreshMs(): number {
    return Math.max(1000, Math.min(3_600_000, (this.o.ttl * 1000) / 3));
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.refresh(), ms);
  }

  private async refresh(): Promise<void> {
    try {
      await this.o.store.keepAliveOnce(this.leaseId);
      this.schedule(this.refreshMs());
    } catch (err) {
      if (this.stopped) return;
      if (!isStoreError(err, StoreErrorCode.LeaseNotFound)) {
        // The store is away: try again soon; the lease has time left (a third of it at least).
        this.o.log.warn({ err: errorMessage(err), subnet: this.cidr }, 'renewing the subnet lease failed; retrying');
        return this.schedule(Math.min(5000, this.refreshMs()));
      }
      try {
        const again = await take(this.o, this.cidr, this.vtepMac);
        if (again.subnet.base !== this.subnet.base) {
          // Our dynos' addresses are in the old range: nothing can move them; say so loudly.
          this.o.log.error({ was: this.cidr, now: formatCidr(again.subnet) }, 'the subnet lease expired and the subnet was taken; this machine now has another subnet');
        } else this.o.log.warn({ subnet: this.cidr }, 'the subnet lease expired; took the subnet again');
        const same = again.subnet.base === this.subnet.base;
        this.subnet = again.subnet;
        this.leaseId = again.lease;
        this.schedule(this.refreshMs());
        await this.o.onRetaken?.(same);
      } catch (e) {
        this.o.log.error({ err: errorMessage(e) }, 'taking a subnet again failed; retrying');
        this.schedule(5000);
      }
    }
  }

  /** Stops renewing; the lease (and the routes peers have to us) runs on until its TTL. */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }
}

function record(o: SubnetLeaseOptions, cidr: string, known?: string): SubnetRecord {
  const vtepMac = known ?? o.vtepMacFor?.(parseCidr(cidr));
  return { machine: o.machine, public_ip: o.publicIp, ...(o.addresses?.length ? { addresses: o.addresses } : {}), ...(o.publicPorts?.length ? { public_ports: o.publicPorts } : {}), backend: { type: o.backend, ...(vtepMac ? { vtep_mac: vtepMac } : {}) }, acquired_at: new Date().toISOString() };
}

function readFile(dir: string): SubnetFile | undefined {
  const file = join(dir, 'subnet.json');
  if (!existsSync(file)) return undefined;
  try {
    const v = JSON.parse(readFileSync(file, 'utf8')) as Partial<SubnetFile>;
    return typeof v.subnet === 'string' && typeof v.lease === 'string' ? { subnet: v.subnet, lease: v.lease } : undefined;
  } catch {
    return undefined;
  }
}

function writeFile(dir: string, f: SubnetFile): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmp = join(dir, 'subnet.json.tmp');
  writeFileSync(tmp, JSON.stringify(f), { mode: 0o600 });
  renameSync(tmp, join(dir, 'subnet.json'));
}

/**
 * One attempt order: the lease we still hold (by the file, if the store still has it), the
 * subnet leased to our address, the file's subnet, `want`, then free subnets at random.
 */
async function take(o: SubnetLeaseOptions, want: string | undefined, vtepMac?: string): Promise<{ subnet: Range; lease: string }> {
  const { store } = o;
  const listed = await store.range(keys.subnets(), { prefix: true });
  const leases = decodeAll(codecs.subnet, listed.kvs, (key) => o.log.warn({ key }, 'ignoring a malformed subnet lease'));
  const byCidr = new Map(leases.map((l) => [l.key.slice(keys.subnets().length).replace('-', '/'), l]));
  const file = readFile(o.dir);
  const inRange = (cidr: string): boolean => {
    try {
      const r = parseCidr(cidr);
      return r.bits === o.subnetBits && r.base >= o.network.base && r.base + size(r) <= o.network.base + size(o.network);
    } catch {
      return false;
    }
  };
  // Still ours: the record is under the lease the file names, and that lease is alive.
  if (file && inRange(file.subnet)) {
    const kv = listed.kvs.find((k) => k.key === keys.subnet(file.subnet));
    if (kv && kv.lease === file.lease && (await store.keepAliveOnce(file.lease).then(() => true, () => false))) {
      await store.put(kv.key, codecs.subnet.encode(record(o, file.subnet, vtepMac)), { lease: file.lease });
      o.log.info({ subnet: file.subnet }, 'subnet kept (its lease was still alive)');
      return { subnet: parseCidr(file.subnet), lease: file.lease };
    }
  }
  // A live lease of another machine is never taken, even at our address (two nodes behind one
  // NAT address, or a 127.0.0.1 fallback): only this machine's own record, as it was read.
  const mine = leases.find((l) => l.value.public_ip === o.publicIp && l.value.machine === o.machine);
  const preferred = mine ? [mine.key.slice(keys.subnets().length).replace('-', '/')] : [];
  const candidates = [...preferred, ...(file ? [file.subnet] : []), ...(want ? [want] : [])].filter(inRange);
  const total = 2 ** (o.subnetBits - o.network.bits);
  const lease = await store.grantLease(o.ttl);
  const tryTake = async (cidr: string): Promise<boolean> => {
    const key = keys.subnet(cidr);
    const current = byCidr.get(cidr);
    // Ours by address (a previous incarnation whose lease we lost): replace it only as it was read.
    const compare = current && preferred.includes(cidr) ? { key, target: 'mod' as const, op: '=' as const, value: listed.kvs.find((k) => k.key === key)?.modRevision ?? 0 } : { key, target: 'version' as const, op: '=' as const, value: 0 };
    const r = await store.txn({ compare: [compare], success: [putOp(key, codecs.subnet, record(o, cidr, vtepMac), lease.id)] });
    return r.succeeded;
  };
  for (const cidr of [...new Set(candidates)]) {
    if (await tryTake(cidr)) return done(o, cidr, lease.id);
  }
  // Free ones at random (flannel does the same), so machines starting together rarely collide.
  const free: string[] = [];
  for (let i = 0; i < total; i++) {
    const cidr = formatCidr(subnetAt(o.network, o.subnetBits, i));
    if (!byCidr.has(cidr)) free.push(cidr);
  }
  for (let attempt = 0; attempt < 20 && free.length > 0; attempt++) {
    const [cidr] = free.splice(randomInt(free.length), 1);
    if (cidr && (await tryTake(cidr))) return done(o, cidr, lease.id);
  }
  await store.revokeLease(lease.id).catch(() => undefined);
  throw new BerthError('subnets_exhausted', `No free /${o.subnetBits} left in the overlay ${formatCidr(o.network)} for this machine.`, { retryable: true });
}

function done(o: SubnetLeaseOptions, cidr: string, lease: string): { subnet: Range; lease: string } {
  writeFile(o.dir, { subnet: cidr, lease });
  o.log.info({ subnet: cidr }, 'subnet leased');
  return { subnet: parseCidr(cidr), lease };
}
