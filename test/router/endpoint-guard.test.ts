import { describe, expect, it } from 'vitest';
import { keys } from '../../src/domain/keys.js';
import { codecs } from '../../src/domain/records.js';
import { EndpointGuard } from '../../src/router/endpoint-guard.js';
import type { KeyValue, WatchEvent } from '../../src/store/index.js';

const kv = (key: string, value = ''): KeyValue => ({ key, value, createRevision: 1, modRevision: 1, version: 1, lease: '0' });
const subnet = (cidr: string, machine: string): KeyValue => kv(keys.subnet(cidr), codecs.subnet.encode({ machine, public_ip: '192.0.2.1', backend: { type: 'vxlan' }, acquired_at: '2026-01-01T00:00:00Z' }));
const unit = (machine: string, u: string): KeyValue => kv(keys.unit(machine, u));
const put = (x: KeyValue): WatchEvent => ({ type: 'put', kv: x }) as WatchEvent;
const del = (x: KeyValue): WatchEvent => ({ type: 'delete', kv: x }) as WatchEvent;
const svc = (app: string, u: string): string => keys.service(app, u);

describe('EndpointGuard', () => {
  it('believes an endpoint only in the subnet of a machine its unit is assigned to', () => {
    const g = new EndpointGuard();
    g.load([unit('m1', 'shop.web.1@v2'), unit('m2', 'bank.web.1@v1')], [subnet('10.244.1.0/24', 'm1'), subnet('10.244.2.0/24', 'm2')]);
    expect(g.allows(svc('shop', 'shop.web.1@v2'), '10.244.1.7:5000')).toBe(true);
    // m2 publishing for shop's unit (assigned to m1), at its own address: not believed.
    expect(g.allows(svc('shop', 'shop.web.1@v2'), '10.244.2.9:5000')).toBe(false);
    // An address outside every subnet (an attacker's host), or no address at all.
    expect(g.allows(svc('bank', 'bank.web.1@v1'), '203.0.113.5:443')).toBe(false);
    expect(g.allows(svc('bank', 'bank.web.1@v1'), 'evil.example:80')).toBe(false);
    // bank's own unit, on its own machine and address, filed under shop's name.
    expect(g.allows(svc('shop', 'bank.web.1@v1'), '10.244.2.4:5000')).toBe(false);
    // A unit nobody placed.
    expect(g.allows(svc('bank', 'bank.web.9@v1'), '10.244.2.4:5000')).toBe(false);
  });

  it('follows units and subnets from the watch', () => {
    const g = new EndpointGuard();
    g.load([], [subnet('10.244.1.0/24', 'm1')]);
    const key = svc('shop', 'shop.web.1@v3');
    expect(g.allows(key, '10.244.1.7:5000')).toBe(false);
    expect(g.apply(put(unit('m1', 'shop.web.1@v3')))).toBe(true);
    expect(g.allows(key, '10.244.1.7:5000')).toBe(true);
    // Moved: on both machines for a moment, then only on m2, whose subnet arrives later.
    g.apply(put(unit('m2', 'shop.web.1@v3')));
    g.apply(del(unit('m1', 'shop.web.1@v3')));
    expect(g.allows(key, '10.244.1.7:5000')).toBe(false);
    expect(g.allows(key, '10.244.2.7:5000')).toBe(false);
    g.apply(put(subnet('10.244.2.0/24', 'm2')));
    expect(g.allows(key, '10.244.2.7:5000')).toBe(true);
    g.apply(del(kv(keys.subnet('10.244.2.0/24'))));
    expect(g.allows(key, '10.244.2.7:5000')).toBe(false);
    expect(g.apply(put(kv('/berth/apps/x/config', '{}')))).toBe(false);
  });
});
