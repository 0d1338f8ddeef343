import { afterEach, describe, expect, it } from 'vitest';
import { putOp } from '../../src/domain/codec.js';
import { keys } from '../../src/domain/keys.js';
import { codecs } from '../../src/domain/records.js';
import { until } from '../support/until.js';
import { Cluster } from './harness.js';

const MiB = 1024 * 1024;
let cluster: Cluster;
afterEach(async () => {
  await cluster?.close();
});

describe('limits reach the dyno', () => {
  it("starts a type's dynos with its limits:set disk and memory; other types with the defaults", async () => {
    cluster = await Cluster.start();
    const m1 = await cluster.agent('m1');
    await cluster.scheduler('s1');
    const app = await cluster.apps.create(cluster.owner, 'shop');
    const access = await cluster.apps.resolve(cluster.owner, 'shop');
    // What `berth limits:set web=256M web.disk=2G` stores.
    await cluster.apps.touch(access, [putOp(keys.appLimits(app.id), codecs.limits, { web: '256M', 'web.disk': '2G' })]);
    await cluster.deploy('shop', { web: 'serve', worker: 'hang' });
    await cluster.scale('shop', { web: 1, worker: 1 });
    await until('both dynos', () => (m1.runtime.running().length === 2 ? true : undefined), 10_000);
    const spec = (dyno: string) => m1.runtime.running().find((d) => d.spec.dyno === dyno)?.spec;
    expect(spec('web.1')).toMatchObject({ memoryBytes: 256 * MiB, diskBytes: 2048 * MiB });
    expect(spec('worker.1')?.memoryBytes).toBe(512 * MiB);
    // Absent: the runtime's default (1 GiB), the same on every node.
    expect(spec('worker.1')?.diskBytes).toBeUndefined();
  });
});
