import type { Logger } from '../../domain/log.js';
import type { BackendDevice, BackendSetup, OverlayBackendDriver, Peer } from './types.js';
import { parseCidr, type Range } from '../cidr.js';
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
  type RouteJson,
} from './ip.js';

export interface HostGwOptions {
  /** Run every command inside this namespace (`/run/netns/X`); tests only. */
  netns?: string;
  /** A runner of one's own (to count its processes); default one for `netns`. */
  runner?: IpRunner;
}

interface State {
  network: Range;
  subnet: Range;
  underlay: string;
  publicIp: string;
  log: Logger;
}

/**
 * flannel's host-gw: no device, no encapsulation; a route per peer subnet via the peer's underlay
 * address. Works only when every peer is on the same L2 segment (the next hop must be on-link).
 */
export class HostGwDriver implements OverlayBackendDriver {
  readonly type = 'host-gw' as const;
  private readonly ip: IpRunner;
  private readonly serial = new Serial();
  private readonly complaints = new Complaints();
  private state: State | undefined;

  constructor(o: HostGwOptions = {}) {
    this.ip = o.runner ?? new IpRunner(o.netns ? { netns: o.netns } : {});
  }

  setup(o: BackendSetup): Promise<BackendDevice> {
    return this.serial.run(() => this.setupNow(o));
  }

  private async setupNow(o: BackendSetup): Promise<BackendDevice> {
    const network = parseCidr(o.network, 'overlay network');
    const subnet = parseCidr(o.subnet, "machine's subnet");
    const underlay = underlayOf(await this.ip.json<LinkJson>('ip', ['-4', 'addr', 'show']), o.publicIp);
    this.state = { network, subnet, underlay: underlay.ifname, publicIp: o.publicIp, log: o.log.child({ backend: this.type, subnet: o.subnet }) };
    return { mtu: underlay.mtu };
  }

  sync(peers: Peer[]): Promise<void> {
    return this.serial.run(() => this.syncNow(peers));
  }

  private async syncNow(peers: Peer[]): Promise<void> {
    const s = this.requireState();
    const wanted = checkPeers(peers, s, this.complaints, (p, why) =>
      s.log.error({ peer: p.subnet, publicIp: p.publicIp }, `overlay peer skipped: ${why}`),
    );
    const current = new Map((await listOurRoutes(this.ip, s.network)).map((r) => [routeKey(r.dst), r]));

    // Only peers whose route is missing or different are asked about: an unchanged route was
    // accepted by the kernel as on-link already.
    const changed = wanted.filter((p) => current.get(p.key)?.gateway !== p.publicIp || current.get(p.key)?.prefsrc !== s.publicIp);
    const paths = await this.pathsTo([...new Set(changed.map((p) => p.publicIp))]);
    const lines: BatchLine[] = [];
    const keep = new Set<string>();
    for (const p of wanted) {
      const id = `unreachable ${p.key} ${p.publicIp}`;
      if (!changed.includes(p)) {
        keep.add(p.key);
        this.complaints.clear(id);
        continue;
      }
      const path = paths.get(p.publicIp);
      if (!path || path.gateway || path.type === 'local' || !path.dev) {
        const why = !path ? 'no route to it' : path.type === 'local' ? 'it is this machine' : `it is behind the router ${path.gateway}`;
        this.complaints.once(id, () =>
          s.log.error({ peer: p.key, publicIp: p.publicIp }, `host-gw cannot reach this peer's subnet (${why}); host-gw needs every machine on one L2 segment: use vxlan`),
        );
        continue; // and any old route of ours to it goes below: it points at an address it no longer has
      }
      this.complaints.clear(id);
      keep.add(p.key);
      // Our public address as the source: on a machine with several, peers trust only that one.
      lines.push({ line: `route replace ${p.key} via ${p.publicIp} dev ${path.dev} src ${s.publicIp} proto ${BERTH_ROUTE_PROTO}` });
    }
    const stale = [...current.keys()].filter((k) => !keep.has(k));
    const dels = stale.map((k) => ({ line: `route del ${k} proto ${BERTH_ROUTE_PROTO} table main`, ignore: GONE }));
    await this.ip.batch('ip', [...dels, ...lines]);
    if (lines.length || dels.length) s.log.debug({ added: lines.length, removed: dels.length }, 'host-gw routes synced');
  }

  async teardown(): Promise<void> {
    await this.serial.run(async () => {
      const s = this.state;
      if (!s) return; // never set up: nothing of ours is known
      const routes = await listOurRoutes(this.ip, s.network);
      await this.ip.batch(
        'ip',
        routes.map((r) => ({ line: `route del ${routeKey(r.dst)} proto ${BERTH_ROUTE_PROTO} table main`, ignore: GONE })),
      );
      this.state = undefined;
    });
  }

  /** `ip route get` for each address, in one process: address → the kernel's answer (absent: unreachable). */
  private async pathsTo(addresses: string[]): Promise<Map<string, RouteJson>> {
    const answers = await this.ip.batchJson<RouteJson>('ip', addresses.map((a) => `route get ${a}`));
    return new Map(answers.flat().map((r) => [r.dst, r]));
  }

  private requireState(): State {
    if (!this.state) throw new Error('host-gw backend: sync before setup');
    return this.state;
  }
}
