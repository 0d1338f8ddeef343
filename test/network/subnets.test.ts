import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { decodeAll } from '../../src/domain/codec.js';
import { keys } from '../../src/domain/keys.js';
import { codecs } from '../../src/domain/records.js';
import { parseCidr } from '../../src/network/cidr.js';
import { SubnetLease, type SubnetLeaseOptions } from '../../src/network/subnets.js';
import { openStore, type Store } from '../../src/store/index.js';
import { captureLog } from '../support/log.js';
import { until } from '../support/until.js';

let store: Store;
let dir: string;
const held: SubnetLease[] = [];

beforeEach(() => {
  store = openStore('memory://');
  dir = mkdtempSync(join(tmpdir(), 'berth-subnets-'));
});
afterEach(async () => {
  for (const l of held.splice(0)) l.stop();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

function options(machine: string, o: Partial<SubnetLeaseOptions> = {}): SubnetLeaseOptions {
  return { store, log: captureLog().log, machine, publicIp: `192.0.2.${machine.length + 10}`, dir: join(dir, machine), network: parseCidr('10.244.0.0/16'), subnetBits: 24, backend: 'host-gw', ttl: 3600, ...o };
}

async function acquire(o: SubnetLeaseOptions): Promise<SubnetLease> {
  const l = await SubnetLease.acquire(o);
  held.push(l);
  return l;
}

async function leases(): Promise<Map<string, { machine: string; lease: string }>> {
  const r = await store.range(keys.subnets(), { prefix: true });
  return new Map(decodeAll(codecs.subnet, r.kvs).map((e) => [e.key, { machine: e.value.machine, lease: e.lease }]));
}

describe('subnet leases', () => {
  it('gives machines distinct /24s inside the range, each under a lease of its own', async () => {
    const all = await Promise.all(['a', 'bb', 'ccc', 'dddd', 'eeeee'].map((m) => acquire(options(m))));
    const cidrs = all.map((l) => l.cidr);
    expect(new Set(cidrs).size).toBe(5);
    for (const c of cidrs) expect(c).toMatch(/^10\.244\.\d+\.0\/24$/);
    const stored = await leases();
    expect(stored.size).toBe(5);
    expect(new Set([...stored.values()].map((s) => s.lease)).size).toBe(5);
    const info = await store.leaseInfo(all[0]!.leaseId);
    expect(info.ttl).toBeGreaterThan(3000);
  });

  it('keeps the same subnet and lease across a restart while the lease lives (the local file)', async () => {
    const first = await acquire(options('m1'));
    first.stop();
    const again = await acquire(options('m1'));
    expect(again.cidr).toBe(first.cidr);
    expect(again.leaseId).toBe(first.leaseId);
  });

  it('takes its subnet back by address when the file is lost, and from the file when the lease expired', async () => {
    const first = await acquire(options('m1'));
    first.stop();
    rmSync(join(dir, 'm1'), { recursive: true, force: true });
    const byAddress = await acquire(options('m1'));
    expect(byAddress.cidr).toBe(first.cidr);
    byAddress.stop();
    // The lease runs out: the record goes; the file still names the subnet.
    await store.revokeLease(byAddress.leaseId);
    const byFile = await acquire(options('m1', { publicIp: '192.0.2.99' }));
    expect(byFile.cidr).toBe(first.cidr);
  });

  it("never takes another machine's live subnet, even at the same address", async () => {
    const a = await acquire(options('m1', { publicIp: '192.0.2.50' }));
    const b = await acquire(options('m2', { publicIp: '192.0.2.50' }));
    expect(b.cidr).not.toBe(a.cidr);
    expect((await leases()).get(keys.subnet(a.cidr))).toEqual({ machine: 'm1', lease: a.leaseId });
  });

  it('never hands one subnet to two machines racing for it', async () => {
    const small = parseCidr('10.250.0.0/22');
    const racers = await Promise.allSettled(['a', 'b', 'c', 'd', 'e', 'f'].map((m) => acquire(options(m, { network: small }))));
    const won = racers.flatMap((r) => (r.status === 'fulfilled' ? [r.value.cidr] : []));
    expect(won.length).toBe(4);
    expect(new Set(won).size).toBe(4);
    const lost = racers.filter((r) => r.status === 'rejected');
    expect(lost.length).toBe(2);
    expect(String((lost[0] as PromiseRejectedResult).reason)).toMatch(/No free \/24 left in the overlay 10\.250\.0\.0\/22/);
  });

  it('takes the same subnet again when its lease is lost while running', async () => {
    const l = await acquire(options('m1', { ttl: 3 }));
    const before = l.cidr;
    await store.revokeLease(l.leaseId);
    await until('a new lease', async () => ((await leases()).get(keys.subnet(before))?.lease === l.leaseId && l.leaseId !== '' ? true : undefined), { timeoutMs: 10_000 });
    expect(l.cidr).toBe(before);
    expect((await leases()).get(keys.subnet(before))?.machine).toBe('m1');
  });

  it('publishes the VTEP MAC only while the subnet is still its own', async () => {
    const l = await acquire(options('m1', { backend: 'vxlan' }));
    await l.publish('0e:0a:f4:00:01:00');
    const r = await store.range(keys.subnets(), { prefix: true });
    expect(decodeAll(codecs.subnet, r.kvs)[0]?.value.backend.vtep_mac).toBe('0e:0a:f4:00:01:00');
    l.stop();
    await store.revokeLease(l.leaseId);
    await expect(l.publish('0e:0a:f4:00:01:01')).rejects.toThrow(/no longer this machine's/);
  });
});
