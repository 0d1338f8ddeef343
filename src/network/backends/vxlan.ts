import type { Logger } from '../../domain/log.js';
import { invalid } from '../../domain/errors.js';
import type { BackendDevice, BackendSetup, OverlayBackendDriver, Peer } from './types.js';
import { parseCidr, toAddress, type Range } from '../cidr.js';
import {
  BERTH_ROUTE_PROTO,
  checkPeers,
  Complaints,
  GONE,
  IpRunner,
  listOurRoutes,
  routeKey,
  Serial,
  underlayOf,
  type BatchLine,
  type LinkJson,
} from './ip.js';

export interface VxlanOptions {
  vni: number;
  /** UDP port of the VXLAN traffic (flannel and the kernel default to 8472). */
  port: number;
  /** Run every command inside this namespace (`/run/netns/X`); tests only. */
  netns?: string;
  /** A runner of one's own (to count its processes); default one for `netns`. */
  runner?: IpRunner;
}

/** VXLAN's outer IPv4 + UDP + VXLAN + inner Ethernet headers. */
const VXLAN_OVERHEAD = 50;

interface State {
  network: Range;
  subnet: Range;
  device: string;
  log: Logger;
}

interface NeighJson {
  dst: string;
  lladdr?: string;
  state?: string[];
}

interface FdbJson {
  mac: string;
  dst?: string;
}

/**
 * The VTEP's MAC, derived from the subnet (locally administered, unicast: `0e:42:` + the subnet's
 * four address bytes) so a restarted or re-created device keeps the MAC its peers' ARP and FDB
 * entries already carry.
 */
export function vtepMacFor(subnet: Range): string {
  const bytes = [0x0e, 0x42, subnet.base >>> 24, (subnet.base >>> 16) & 255, (subnet.base >>> 8) & 255, subnet.base & 255];
  return bytes.map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/**
 * flannel's vxlan: one VTEP `<name>.vx` with learning off; per peer a route to its subnet via the
 * subnet's `.0` (the peer VTEP's address) on-link, a permanent ARP entry `.0` → the peer's VTEP
 * MAC, and a permanent FDB entry MAC → the peer's underlay address. The kernel does the rest.
 */
export class VxlanDriver implements OverlayBackendDriver {
  readonly type = 'vxlan' as const;
  private readonly ip: IpRunner;
  private readonly serial = new Serial();
  private readonly complaints = new Complaints();
  private state: State | undefined;

  constructor(private readonly o: VxlanOptions) {
    if (!Number.isInteger(o.vni) || o.vni < 1 || o.vni > 16_777_215) throw invalid(`VXLAN VNI ${o.vni} is not in 1..16777215.`);
    if (!Number.isInteger(o.port) || o.port < 1 || o.port > 65_535) throw invalid(`VXLAN port ${o.port} is not in 1..65535.`);
    this.ip = o.runner ?? new IpRunner(o.netns ? { netns: o.netns } : {});
  }

  setup(o: BackendSetup): Promise<BackendDevice> {
    return this.serial.run(() => this.setupNow(o));
  }

  private async setupNow(o: BackendSetup): Promise<BackendDevice> {
    const network = parseCidr(o.network, 'overlay network');
    const subnet = parseCidr(o.subnet, "machine's subnet");
    const device = `${o.name}.vx`;
    if (!/^[a-z][a-z0-9]*$/.test(o.name) || device.length > 15) throw invalid(`Network name ${JSON.stringify(o.name)} cannot name a device (${device}).`);
    const log = o.log.child({ backend: this.type, device, subnet: o.subnet });

    const links = await this.ip.json<LinkJson>('ip', ['-d', 'addr', 'show']);
    const underlay = underlayOf(links, o.publicIp);
    const mtu = underlay.mtu - VXLAN_OVERHEAD;
    const mac = vtepMacFor(subnet);
    const gateway = toAddress(subnet.base);

    let existing = links.find((l) => l.ifname === device);
    const lines: BatchLine[] = [];
    const d = existing?.linkinfo?.info_data;
    const same =
      existing?.linkinfo?.info_kind === 'vxlan' && d?.id === this.o.vni && d.port === this.o.port && d.local === o.publicIp && d.link === underlay.ifname && d.learning === false;
    if (existing && !same) {
      log.info({ was: existing.linkinfo }, 'VXLAN device differs from the configuration: re-creating it');
      lines.push({ line: `link del dev ${device}`, ignore: GONE });
      existing = undefined;
    }
    if (!existing) {
      lines.push({
        line: `link add ${device} address ${mac} mtu ${mtu} type vxlan id ${this.o.vni} dstport ${this.o.port} local ${o.publicIp} dev ${underlay.ifname} nolearning`,
      });
    } else {
      if (existing.address !== mac || existing.mtu !== mtu) lines.push({ line: `link set dev ${device} address ${mac} mtu ${mtu}` });
      // An address left from a subnet this machine held before.
      for (const a of existing.addr_info ?? []) {
        if (a.family === 'inet' && !(a.local === gateway && a.prefixlen === 32)) lines.push({ line: `addr del ${a.local}/${a.prefixlen} dev ${device}`, ignore: GONE });
      }
    }
    lines.push({ line: `addr replace ${gateway}/32 dev ${device}` }, { line: `link set dev ${device} up` });
    await this.ip.batch('ip', lines);

    // Read back: what peers get in the lease is what the kernel has, not what was asked for.
    const [link] = await this.ip.json<LinkJson>('ip', ['link', 'show', 'dev', device]);
    if (!link?.address) throw new Error(`VXLAN device ${device} has no MAC after setup`);
    this.state = { network, subnet, device, log };
    if (!existing) log.info({ vni: this.o.vni, port: this.o.port, mtu, vtepMac: link.address }, 'VXLAN device created');
    return { vtepMac: link.address, mtu: link.mtu, gateway };
  }

  sync(peers: Peer[]): Promise<void> {
    return this.serial.run(() => this.syncNow(peers));
  }

  private async syncNow(peers: Peer[]): Promise<void> {
    const s = this.requireState();
    const checked = checkPeers(peers, s, this.complaints, (p, why) =>
      s.log.error({ peer: p.subnet, publicIp: p.publicIp }, `overlay peer skipped: ${why}`),
    );
    const wanted = checked.filter((p) => {
      const id = `no-mac ${p.key} ${p.publicIp}`;
      if (p.vtepMac) {
        this.complaints.clear(id);
        return true;
      }
      this.complaints.once(id, () => s.log.error({ peer: p.key, publicIp: p.publicIp }, 'overlay peer skipped: its lease has no VTEP MAC (not a vxlan machine?)'));
      return false;
    });

    // Everything on our device is ours: its neighbours and FDB entries are diffed whole.
    const [routes, neighs, fdb] = await Promise.all([
      listOurRoutes(this.ip, s.network, s.device),
      this.ip.json<NeighJson>('ip', ['-4', 'neigh', 'show', 'dev', s.device]),
      this.ip.json<FdbJson>('bridge', ['fdb', 'show', 'dev', s.device]),
    ]);
    const haveRoute = new Map(routes.map((r) => [routeKey(r.dst), r]));
    const haveNeigh = new Map(neighs.filter((n) => n.state?.includes('PERMANENT')).map((n) => [n.dst, n.lladdr]));
    const haveFdb = new Map(fdb.filter((f) => f.dst).map((f) => [f.mac, f.dst]));

    const want = wanted.map((p) => ({ key: p.key, gw: toAddress(p.subnet.base), mac: p.vtepMac!, dst: p.publicIp }));
    const wantKeys = new Set(want.map((w) => w.key));
    const wantGws = new Set(want.map((w) => w.gw));
    const wantMacs = new Set(want.map((w) => w.mac));
    const dev = s.device;
    const P = BERTH_ROUTE_PROTO;

    const fdbLines: BatchLine[] = [];
    for (const [mac, dst] of haveFdb) if (!wantMacs.has(mac)) fdbLines.push({ line: `fdb del ${mac} dev ${dev} dst ${dst} self`, ignore: GONE });
    for (const w of want) if (haveFdb.get(w.mac) !== w.dst) fdbLines.push({ line: `fdb replace ${w.mac} dev ${dev} dst ${w.dst} self permanent` });

    // Removals first (route before its neighbour), then additions (neighbour before its route, so
    // the first packet on a new route finds its ARP entry).
    const ipLines: BatchLine[] = [];
    for (const key of haveRoute.keys()) if (!wantKeys.has(key)) ipLines.push({ line: `route del ${key} dev ${dev} proto ${P} table main`, ignore: GONE });
    for (const gw of haveNeigh.keys()) if (!wantGws.has(gw)) ipLines.push({ line: `neigh del ${gw} dev ${dev}`, ignore: GONE });
    for (const w of want) if (haveNeigh.get(w.gw) !== w.mac) ipLines.push({ line: `neigh replace ${w.gw} lladdr ${w.mac} dev ${dev} nud permanent` });
    for (const w of want) {
      const r = haveRoute.get(w.key);
      if (r?.gateway !== w.gw || !r.flags?.includes('onlink')) ipLines.push({ line: `route replace ${w.key} via ${w.gw} dev ${dev} onlink proto ${P}` });
    }

    await this.ip.batch('bridge', fdbLines);
    await this.ip.batch('ip', ipLines);
    if (fdbLines.length || ipLines.length) s.log.debug({ fdb: fdbLines.length, ip: ipLines.length, peers: want.length }, 'vxlan peers synced');
  }

  async teardown(): Promise<void> {
    await this.serial.run(async () => {
      const s = this.state;
      if (!s) return; // never set up: nothing of ours is known
      // Deleting the device takes its routes, neighbours and FDB entries with it; routes of ours
      // elsewhere in the range (another backend's, before a switch) go explicitly.
      const routes = await listOurRoutes(this.ip, s.network);
      await this.ip.batch('ip', [
        ...routes.filter((r) => r.dev !== s.device).map((r) => ({ line: `route del ${routeKey(r.dst)}${r.dev ? ` dev ${r.dev}` : ''} proto ${BERTH_ROUTE_PROTO} table main`, ignore: GONE })),
        { line: `link del dev ${s.device}`, ignore: GONE },
      ]);
      this.state = undefined;
    });
  }

  private requireState(): State {
    if (!this.state) throw new Error('vxlan backend: sync before setup');
    return this.state;
  }
}
