import ipaddr from 'ipaddr.js';
import { decodeAll } from '../domain/codec.js';
import { keys } from '../domain/keys.js';
import { codecs } from '../domain/records.js';
import type { KeyValue, WatchEvent } from '../store/index.js';

/**
 * Which published endpoints a router believes. Any agent machine may write under
 * /berth/services/ (etcd's ranges cannot say "only your own units"), so an endpoint counts only
 * when its unit is assigned to some machine (/berth/units/<machine>/<unit>, which only the
 * scheduler writes) and its address lies in that machine's overlay subnet: a machine can publish
 * its own dynos, not another app's traffic to itself. Kept from the router's own watch, like the
 * endpoints.
 */
export class EndpointGuard {
  /** unit key (`<app>.<type>.<n>@v<n>[-<r>]`) → the machines it is assigned to (two, briefly, during a move). */
  private units = new Map<string, Set<string>>();
  /** machine → its subnet. */
  private subnets = new Map<string, [ipaddr.IPv4, number]>();
  /** subnet key → machine, to forget a subnet on its delete. */
  private subnetKeys = new Map<string, string>();

  /** Replaces what it knows with a full read (units and subnets at one revision). */
  load(units: KeyValue[], subnets: KeyValue[]): void {
    this.units = new Map();
    this.subnets = new Map();
    this.subnetKeys = new Map();
    for (const kv of units) this.unit(kv.key, true);
    for (const kv of subnets) this.subnet(kv, true);
  }

  /** Folds one watch event in; true when it can change which endpoints count. */
  apply(e: WatchEvent): boolean {
    if (e.kv.key.startsWith(keys.allUnits())) return this.unit(e.kv.key, e.type === 'put');
    if (e.kv.key.startsWith(keys.subnets())) return this.subnet(e.kv, e.type === 'put');
    return false;
  }

  allows(serviceKey: string, endpoint: string): boolean {
    const [app = '', unit = ''] = serviceKey.slice(keys.allServices().length).split('/');
    // A unit is named for its app (`<app>.<type>.<n>…`; app names hold no dot): a machine's own
    // unit filed under another app's name is not that app's endpoint.
    if (!unit.startsWith(`${app}.`)) return false;
    const address = endpoint.slice(0, endpoint.lastIndexOf(':'));
    if (!ipaddr.IPv4.isValidFourPartDecimal(address)) return false;
    const ip = ipaddr.IPv4.parse(address);
    for (const machine of this.units.get(unit) ?? []) {
      const subnet = this.subnets.get(machine);
      if (subnet && ip.match(subnet)) return true;
    }
    return false;
  }

  private unit(key: string, present: boolean): boolean {
    const [machine = '', unit = ''] = key.slice(keys.allUnits().length).split('/');
    if (!machine || !unit) return false;
    const on = this.units.get(unit);
    if (present) {
      if (on) on.add(machine);
      else this.units.set(unit, new Set([machine]));
    } else if (on) {
      on.delete(machine);
      if (on.size === 0) this.units.delete(unit);
    }
    return true;
  }

  private subnet(kv: KeyValue, present: boolean): boolean {
    const old = this.subnetKeys.get(kv.key);
    if (old !== undefined) {
      this.subnets.delete(old);
      this.subnetKeys.delete(kv.key);
    }
    if (!present) return true;
    const rec = decodeAll(codecs.subnet, [kv])[0]?.value;
    const cidr = kv.key.slice(keys.subnets().length).replace(/-(\d+)$/, '/$1');
    if (!rec || !ipaddr.isValidCIDR(cidr)) return old !== undefined;
    const [base, bits] = ipaddr.parseCIDR(cidr);
    if (base.kind() !== 'ipv4') return old !== undefined;
    this.subnets.set(rec.machine, [base as ipaddr.IPv4, bits]);
    this.subnetKeys.set(kv.key, rec.machine);
    return true;
  }
}
