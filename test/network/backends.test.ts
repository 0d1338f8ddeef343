import { describe, expect, it } from 'vitest';
import { backendDriver } from '../../src/network/backends/index.js';
import { HostGwDriver } from '../../src/network/backends/host-gw.js';
import { VxlanDriver } from '../../src/network/backends/vxlan.js';
import { backendConformance } from './backend-conformance.js';

// Each suite builds its own three-machine lab (test/support/netlab.ts) and removes it afterwards.
backendConformance('vxlan', (o) => new VxlanDriver({ vni: 1, port: 8472, ...o }));
backendConformance('host-gw', (o) => new HostGwDriver(o));

describe('backendDriver', () => {
  it("makes the network config's backend, refusing a vxlan without its VNI and port", () => {
    expect(backendDriver('host-gw')).toBeInstanceOf(HostGwDriver);
    expect(backendDriver('vxlan', { vni: 1, port: 8472 })).toBeInstanceOf(VxlanDriver);
    expect(() => backendDriver('vxlan')).toThrow(/VNI/);
    expect(() => backendDriver('vxlan', { vni: 0, port: 8472 })).toThrow(/VNI/);
  });
});
