import { decodeAll, get, putOp } from '../domain/codec.js';
import { BerthError, errorMessage, invalid } from '../domain/errors.js';
import { keys } from '../domain/keys.js';
import type { Logger } from '../domain/log.js';
import { codecs, type IpRecord, type NetworkConfigRecord, type SubnetRecord } from '../domain/records.js';
import { ControlLoop } from '../loop/index.js';
import type { KeyValue, WatchBatch } from '../store/index.js';
import { HostGwDriver } from './backends/host-gw.js';
import type { BackendDevice, OverlayBackendDriver, Peer } from './backends/types.js';
import { VxlanDriver, vtepMacFor } from './backends/vxlan.js';
import { Addresses } from './addresses.js';
import { addressAt, contains, formatCidr, isIPv4, parseCidr, tryParseCidr, within, type Range } from './cidr.js';
import { exec } from './commands.js';
import { ownNamespaces, removeNamespace, wireNamespace } from './namespaces.js';
import { NftPolicy } from './policy.js';
import type { PolicyChanges, PolicySnapshot } from './policy-types.js';
import { checkOverlap, enableForwarding, hostAddresses, lockName, preflight, resolverFile } from './host.js';
import { SubnetLease } from './subnets.js';
import type { Attachment, DynoAttachRequest, Networks, OverlayNetworkOptions } from './types.js';

/** What every web dyno listens on: each has an address of its own, so one port fits all. */
export const DYNO_PORT = 5000;
const DEFAULT_NETWORK = '10.244.0.0/16';
const VXLAN = { vni: 1, port: 8472 };

interface State {
  subnets: Map<string, SubnetRecord>;
  ips: Map<string, IpRecord>;
}

/**
 * The overlay on one machine (see index.ts). Start order: preflight, the range from the store,
 * an overlap check, the subnet lease, the backend's device, then one loop on /berth/network/ that
 * loads the whole nftables table atomically and programs every peer's route before anything is
 * attached, and then follows the store: subnets → routes, addresses → policy elements.
 */
export class OverlayNetwork implements Networks {
  private config: NetworkConfigRecord | undefined;
  private lease: SubnetLease | undefined;
  private driver: OverlayBackendDriver | undefined;
  private device: BackendDevice | undefined;
  private policy: NftPolicy;
  private loop: ControlLoop | undefined;
  private state: State = { subnets: new Map(), ips: new Map() };
  /** The next pass loads the whole table and re-diffs every route (start, gap, repair). */
  private full = true;
  private routesDirty = true;
  private pending: Required<Pick<PolicyChanges, 'owners'>> = emptyChanges();
  private readonly addresses: Addresses;
  private readonly builds = new Set<string>();
  /** Set once the first whole table is loaded: until then nothing is attached. */
  private loaded = false;
  private resolvConf: string | undefined;
  private resolvers: string[] = [];
  /** Serialises nft transactions: loop passes and build attachments. */
  private nft: Promise<void> = Promise.resolve();
  private rediff: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly log: Logger;
  private network: Range | undefined;
  private unlock: (() => void) | undefined;

  constructor(private readonly o: OverlayNetworkOptions) {
    if (!/^[a-z][a-z0-9]{0,5}$/.test(o.name)) throw invalid(`The network name must be 1-6 lowercase letters and digits starting with a letter, got "${o.name}".`);
    this.log = o.log;
    this.policy = new NftPolicy({ name: o.name, log: o.log });
    this.addresses = new Addresses({ store: o.store, log: o.log, machine: o.machine, holdMs: o.holdMs ?? 15_000, lease: () => this.lease, known: (ip) => this.state.ips.has(ip) });
  }

  async start(): Promise<void> {
    const { store, name } = this.o;
    await preflight();
    this.unlock = lockName(name);
    this.config = await this.configure();
    const network = parseCidr(this.config.network, 'overlay');
    this.network = network;
    await checkOverlap(network, name);
    await enableForwarding();
    const resolver = resolverFile(this.o.dir);
    this.resolvConf = resolver.file;
    this.resolvers = resolver.servers;
    this.lease = await SubnetLease.acquire({ store, log: this.log, machine: this.o.machine, publicIp: this.o.publicIp, dir: this.o.dir, network, subnetBits: this.config.subnet_len, backend: this.config.backend.type, addresses: await hostAddresses(network, name), publicPorts: this.o.publicPorts, ttl: this.o.subnetTtl ?? 86_400, onRetaken: (same) => this.addresses.rewrite(same), ...(this.config.backend.type === 'vxlan' ? { vtepMacFor } : {}) });
    const b = this.config.backend;
    this.driver = b.type === 'vxlan' ? new VxlanDriver({ vni: b.vni, port: b.port }) : new HostGwDriver({});
    this.device = await this.driver.setup({ name, subnet: this.lease.cidr, network: this.config.network, publicIp: this.o.publicIp, log: this.log });
    await this.lease.publish(this.device.vtepMac);
    // Namespaces of a previous incarnation: their dynos died with it (bwrap --die-with-parent).
    for (const ns of ownNamespaces(name)) await removeNamespace(ns);
    this.loop = new ControlLoop({
      store,
      log: this.log,
      prefix: keys.network(),
      load: async () => {
        const r = await store.range(keys.network(), { prefix: true });
        const subnets = new Map<string, SubnetRecord>();
        const ips = new Map<string, IpRecord>();
        for (const kv of r.kvs) {
          const subnet = this.subnetOf(kv);
          if (subnet) subnets.set(subnet[0], subnet[1]);
          const ip = this.ipOf(kv);
          if (ip) ips.set(ip[0], ip[1]);
        }
        return {
          revision: r.revision,
          commit: () => {
            this.state = { subnets, ips };
            this.full = true;
            this.pending = emptyChanges();
          },
        };
      },
      apply: (batch) => this.applyBatch(batch),
      pass: () => this.pass(),
      debounceMs: 5,
      maxWaitMs: 50,
      // A full read (and so an atomic reload of the table and a route re-diff) on this timer.
      repairMs: 600_000,
    });
    // Routes are re-diffed against the kernel every minute, and the table reloaded if something
    // removed it (`systemctl restart nftables` flushes the whole ruleset).
    this.rediff = setInterval(() => {
      void exec('nft', ['list', 'chain', 'inet', name, 'input']).then(
        (r) => {
          if (r.code !== 0 && !this.stopped) {
            this.log.error({ table: name }, 'the nftables table is gone; loading it again');
            this.full = true;
          }
          this.routesDirty = true;
          this.loop?.request();
        },
        () => undefined,
      );
    }, 60_000);
    await this.loop.start();
    // Nothing is attached until the table and routes are in force; a node whose policy cannot
    // load must not run dynos at all (a failed pass only logs).
    await this.loop.kick();
    if (!this.loaded) throw new BerthError('network_policy_failed', `The nftables policy could not be loaded (see the log above): refusing to run dynos without it.`);
    this.addresses.reclaim([...this.state.ips].filter(([, r]) => r.machine === this.o.machine).map(([ip]) => ip));
    this.log.info({ subnet: this.lease.cidr, backend: b.type, mtu: this.device.mtu }, 'overlay network up');
  }

  info(): { network: string; subnet: string; backend: 'vxlan' | 'host-gw'; publicIp: string } {
    if (!this.config || !this.lease) throw new BerthError('network_not_started', 'the network has not started');
    return { network: this.config.network, subnet: this.lease.cidr, backend: this.config.backend.type, publicIp: this.o.publicIp };
  }

  /** The cluster's range and backend: the first node writes them (create-only); the rest must agree. */
  private async configure(): Promise<NetworkConfigRecord> {
    const { store } = this.o;
    const want = this.o.request;
    const wanted: NetworkConfigRecord = {
      network: formatCidr(parseCidr(want?.network ?? DEFAULT_NETWORK, 'overlay')),
      subnet_len: 24,
      backend: (want?.backend ?? 'vxlan') === 'vxlan' ? { type: 'vxlan', ...VXLAN } : { type: 'host-gw' },
      created_at: new Date().toISOString(),
    };
    if (parseCidr(wanted.network).bits > 22) throw invalid(`The overlay ${wanted.network} is too small: it needs room for several /24 machine subnets (use /22 or larger).`);
    const key = keys.networkConfig();
    await store.txn({ compare: [{ key, target: 'version', op: '=', value: 0 }], success: [putOp(key, codecs.networkConfig, wanted)] });
    const current = await get(store, key, codecs.networkConfig);
    if (!current) throw new BerthError('network_config_missing', 'the overlay configuration vanished from the store');
    const c = current.value;
    if (want?.network && formatCidr(parseCidr(want.network)) !== c.network) throw invalid(`This cluster's overlay is ${c.network}; it cannot be changed to ${want.network} by a node joining it.`);
    if (want?.backend && want.backend !== c.backend.type) throw invalid(`This cluster's overlay backend is ${c.backend.type}; a node cannot join it with ${want.backend}.`);
    return c;
  }

  private applyBatch(batch: WatchBatch): boolean {
    for (const e of batch.events) {
      const key = e.kv.key;
      if (key.startsWith(keys.subnets())) {
        const cidr = key.slice(keys.subnets().length).replace('-', '/');
        const value = e.type === 'put' ? this.subnetOf(e.kv)?.[1] : undefined;
        if (value) this.state.subnets.set(cidr, value);
        else this.state.subnets.delete(cidr);
        // Machines come and go rarely and touch four sets (internal, trusted, their public
        // endpoints, routes): the whole table is reloaded, in one transaction as always.
        this.routesDirty = true;
        this.full = true;
      } else if (key.startsWith(keys.ips())) {
        const ip = key.slice(keys.ips().length);
        const value = e.type === 'put' ? this.ipOf(e.kv)?.[1] : undefined;
        const before = this.state.ips.get(ip);
        if (value) {
          this.state.ips.set(ip, value);
          if (before?.group !== value.group) this.pending.owners.set.push([ip, value.group]);
        } else if (before) {
          this.state.ips.delete(ip);
          this.pending.owners.del.push(ip);
        }
      }
    }
    return true;
  }

  private async pass(): Promise<void> {
    if (this.stopped || !this.driver || !this.lease) return;
    const full = this.full;
    this.full = false;
    const changes = this.pending;
    this.pending = emptyChanges();
    const routes = full || this.routesDirty;
    this.routesDirty = false;
    try {
      if (full) {
        await this.serial(() => this.policy.load(this.snapshot()));
        this.loaded = true;
      }
      else if (changes.owners.set.length + changes.owners.del.length > 0) {
        await this.serial(() => this.policy.apply(changes));
      }
      // Routes are few (one per machine): a full re-diff each time they change, and on the timer.
      if (routes) await this.driver.sync(this.peers());
    } catch (err) {
      // What failed is not half applied (one nft transaction; routes re-diff): the next pass —
      // at the latest the minute's re-diff — loads the whole table and every route again.
      this.full = true;
      this.routesDirty = true;
      throw err;
    }
  }

  private peers(): Peer[] {
    const own = this.lease?.cidr;
    return [...this.state.subnets].filter(([cidr]) => cidr !== own).map(([cidr, s]) => ({ subnet: cidr, publicIp: s.public_ip, ...(s.backend.vtep_mac ? { vtepMac: s.backend.vtep_mac } : {}) }));
  }

  private snapshot(): PolicySnapshot {
    const subnets = [...this.state.subnets];
    const machines = new Set([this.o.publicIp, ...subnets.map(([, s]) => s.public_ip)]);
    const everyAddress = subnets.flatMap(([, s]) => machineAddresses(s));
    const gateways = subnets.filter(([, s]) => s.backend.type === 'vxlan').map(([cidr]) => addressAt(parseCidr(cidr), 0));
    return {
      overlay: this.config?.network ?? DEFAULT_NETWORK,
      publicPorts: this.o.publicPorts,
      internal: [...new Set([...machines, ...everyAddress, ...this.o.internalAddresses])],
      trusted: [...new Set([...machines, ...gateways])],
      owners: new Map([...this.state.ips].map(([ip, r]) => [ip, r.group])),
      builds: [...this.builds],
      publicEndpoints: subnets.flatMap(([, s]) => machineAddresses(s).flatMap((ip) => (s.public_ports ?? []).map((p): [string, number] => [ip, p]))),
      resolvers: this.resolvers,
      ...(this.config?.backend.type === 'vxlan' ? { vxlanPort: this.config.backend.port } : {}),
    };
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.nft.then(fn);
    this.nft = p.then(
      () => undefined,
      () => undefined,
    );
    return p;
  }

  async attachDyno(r: DynoAttachRequest): Promise<Attachment> {
    this.started();
    const address = await this.addresses.claim({ app_id: r.appId, group: r.group, owner: r.owner, machine: this.o.machine });
    const wired = await wireNamespace({ prefix: this.o.name, kind: 'd', address, mtu: this.device?.mtu ?? 1500, ...(this.device?.gateway ? { src: this.device.gateway } : {}) }).catch((err: unknown) => {
      this.addresses.retire(address, 0);
      throw err;
    });
    let released: Promise<void> | undefined;
    return {
      address,
      port: DYNO_PORT,
      netns: wired.path,
      ...(this.resolvConf ? { resolvConf: this.resolvConf } : {}),
      env: { HEROKU_PRIVATE_IP: address },
      release: (o) =>
        (released ??= (async () => {
          await removeNamespace(wired.name);
          this.addresses.retire(address, o?.after ?? 0);
        })()),
    };
  }

  async attachBuild(id: string): Promise<Attachment> {
    this.started();
    const address = this.addresses.take();
    // In the builds set before anything runs: egress only, from the first packet.
    this.builds.add(address);
    try {
      await this.serial(() => this.policy.apply({ builds: { add: [address], del: [] } }));
      const wired = await wireNamespace({ prefix: this.o.name, kind: 'b', address, mtu: this.device?.mtu ?? 1500 });
      let released: Promise<void> | undefined;
      this.log.debug({ build: id, address }, 'build namespace');
      return {
        address,
        port: 0,
        netns: wired.path,
        ...(this.resolvConf ? { resolvConf: this.resolvConf } : {}),
        env: {},
        release: () =>
          (released ??= (async () => {
            await removeNamespace(wired.name);
            await this.dropBuild(address);
          })()),
      };
    } catch (err) {
      await this.dropBuild(address);
      throw err;
    }
  }

  private async dropBuild(address: string): Promise<void> {
    this.builds.delete(address);
    await this.serial(() => this.policy.apply({ builds: { add: [], del: [address] } })).catch((err: unknown) => this.log.warn({ err: errorMessage(err), address }, 'removing a build address from the policy failed'));
    this.addresses.drop(address);
  }

  private started(): void {
    if (!this.lease || !this.loaded || this.stopped) throw new BerthError('network_not_started', 'the overlay network is not running on this machine', { retryable: true });
  }

  /** A subnet record the policy and routes can use; anything else is skipped with a warning. */
  private subnetOf(kv: KeyValue): [string, SubnetRecord] | undefined {
    if (!kv.key.startsWith(keys.subnets())) return undefined;
    const cidr = kv.key.slice(keys.subnets().length).replace('-', '/');
    const value = decodeAll(codecs.subnet, [kv])[0]?.value;
    const range = tryParseCidr(cidr);
    if (value && range && isIPv4(value.public_ip) && this.network && within(this.network, range)) return [cidr, value];
    this.log.warn({ key: kv.key }, 'ignoring a malformed subnet lease');
    return undefined;
  }

  /** An address record inside the overlay with a usable group; anything else is skipped. */
  private ipOf(kv: KeyValue): [string, IpRecord] | undefined {
    if (!kv.key.startsWith(keys.ips())) return undefined;
    const ip = kv.key.slice(keys.ips().length);
    const value = decodeAll(codecs.ip, [kv])[0]?.value;
    if (value && this.network && contains(this.network, ip) && value.group > 0 && value.group <= 0xffffffff) return [ip, value];
    this.log.warn({ key: kv.key }, 'ignoring a malformed address record');
    return undefined;
  }

  /**
   * Stops following the store and removes this machine's table, device and routes (its dynos and
   * builds are gone by now). The subnet lease is left to run out, not revoked: a restart takes it
   * back with its addresses, and peers keep their routes meanwhile.
   */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.rediff);
    this.addresses.stop();
    await this.loop?.stop();
    this.lease?.stop();
    await this.nft;
    for (const ns of ownNamespaces(this.o.name)) await removeNamespace(ns);
    await this.policy.remove().catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'removing the nftables table failed'));
    await this.driver?.teardown().catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'removing the overlay device failed'));
    this.unlock?.();
  }
}

/** A machine's underlay address and every other one it published. */
function machineAddresses(s: SubnetRecord | undefined): string[] {
  return s ? [...new Set([s.public_ip, ...(s.addresses ?? []).filter(isIPv4)])] : [];
}

function emptyChanges(): Required<Pick<PolicyChanges, 'owners'>> {
  return { owners: { set: [], del: [] } };
}

