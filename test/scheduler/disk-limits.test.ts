import { describe, expect, it } from 'vitest';
import { DEFAULT_DISK_BYTES, DEFAULT_MAX_RUNS, readLimits } from '../../src/domain/units.js';
import { plan } from '../../src/scheduler/placement.js';
import type { AppView } from '../../src/scheduler/types.js';
import { appView } from '../../src/scheduler/view.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

describe('limits map: memory, disk and one-off dynos', () => {
  it('reads TYPE as memory, TYPE.disk as disk and run.max as the one-off count; anything malformed or out of range is the default', () => {
    const limits = readLimits({ web: '256M', 'web.disk': '2G', worker: 512 * MiB, 'worker.disk': '1T', 'run.max': '3', 'web.max': '9', 'web.cpu': '2', constructor: 'x' });
    expect({ ...limits.memory }).toEqual({ web: 256 * MiB, worker: 512 * MiB });
    expect({ ...limits.disk }).toEqual({ web: 2 * GiB });
    expect(limits.maxRuns).toBe(3);
    // A process type named like an Object method finds no limit of Object's.
    expect(limits.disk.constructor).toBeUndefined();
    expect(readLimits({ 'run.max': '0' }).maxRuns).toBe(DEFAULT_MAX_RUNS);
    expect(readLimits({ 'run.max': 'lots' }).maxRuns).toBe(DEFAULT_MAX_RUNS);
    expect(readLimits(undefined)).toEqual({ memory: {}, disk: {}, maxRuns: DEFAULT_MAX_RUNS });
  });

  it('gives a unit the disk its type asks for, and none (the runtime default) otherwise', () => {
    const view: AppView = appView('id-shop', {
      app: { id: 'id-shop', name: 'shop' } as Parameters<typeof appView>[1]['app'],
      release: { version: 1, slugId: 'slug-1', processTypes: { web: 'serve', worker: 'work' } },
      formation: { web: { quantity: 1, size: 'standard-1x' }, worker: { quantity: 1, size: 'standard-1x' } } as unknown as Parameters<typeof appView>[1]['formation'],
      limits: { web: '256M', 'web.disk': '2G' },
    });
    expect(view.memoryLimits).toEqual({ web: 256 * MiB });
    expect(view.diskLimits).toEqual({ web: 2 * GiB });
    const p = plan({ machines: [{ id: 'm1', address: '10.0.0.1', tags: {}, capacity: { memoryBytes: 8 * GiB, cpus: 2 } }], apps: [view], assignments: [] });
    const units = Object.fromEntries(p.place.map((a) => [a.unit.type, a.unit]));
    expect(units.web).toMatchObject({ memoryBytes: 256 * MiB, diskBytes: 2 * GiB });
    expect(units.worker?.memoryBytes).toBe(512 * MiB);
    expect(units.worker && 'diskBytes' in units.worker).toBe(false);
    expect(DEFAULT_DISK_BYTES).toBe(GiB);
  });
});
