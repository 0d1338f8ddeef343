import { describe, expect, it } from 'vitest';
import { unitKey } from '../../src/domain/units.js';
import { plan } from '../../src/scheduler/placement.js';
import { failedRollouts, type UnitStatus } from '../../src/scheduler/rollout.js';
import type { AppView, Assignment, MachineView } from '../../src/scheduler/types.js';

const machine = (id: string): MachineView => ({ id, address: '127.0.0.1', tags: {}, capacity: { memoryBytes: 8 * 1024 ** 3, cpus: 2 } });
const app = (version: number, restarts?: Record<string, number>): AppView => ({
  id: 'id-shop',
  name: 'shop',
  release: { version, slugId: 'slug', processTypes: { web: 'node server.js' } },
  formation: { web: { quantity: 2, size: 'standard-1x' } },
  placementTags: {},
  memoryLimits: {},
  ...(restarts ? { restarts } : {}),
});
const unit = (index: number, release: number, restart?: number): Assignment => ({
  machine: index === 1 ? 'm1' : 'm2',
  unit: { name: `shop.web.${index}`, appId: 'id-shop', appName: 'shop', type: 'web', index, release, memoryBytes: 512 * 1024 ** 2, ...(restart ? { restart } : {}) },
});

describe('restart generations', () => {
  it('a restart of one dyno places a new generation beside the old one, which is superseded, not removed', () => {
    const current = [unit(1, 5), unit(2, 5)];
    const p = plan({ machines: [machine('m1'), machine('m2')], apps: [app(5, { 'web.2': 1 })], assignments: current });
    expect(p.place.map((a) => unitKey(a.unit))).toEqual(['shop.web.2@v5-1']);
    expect(p.superseded.map((a) => unitKey(a.unit))).toEqual(['shop.web.2@v5']);
    expect(p.remove).toEqual([]);
  });

  it('a type restart plus a dyno restart add up, and an older generation beside a newer one is removed once both are placed', () => {
    const p = plan({ machines: [machine('m1'), machine('m2')], apps: [app(5, { web: 1, 'web.1': 1 })], assignments: [unit(1, 5, 2), unit(1, 5, 1), unit(2, 5)] });
    expect(p.place.map((a) => unitKey(a.unit))).toEqual(['shop.web.2@v5-1']);
    expect(p.superseded.map((a) => unitKey(a.unit)).sort()).toEqual(['shop.web.1@v5-1', 'shop.web.2@v5']);
  });
});

describe('failedRollouts', () => {
  const state = { machines: [machine('m1'), machine('m2')], apps: [app(6)], assignments: [unit(1, 5), unit(2, 5), unit(1, 6), unit(2, 6)] };
  const crashed = (restarts: number): UnitStatus => ({ state: 'crashed', reason: 'Process exited with status 1', restarts });
  const statuses = (s1: UnitStatus, s2: UnitStatus): Map<string, UnitStatus> =>
    new Map([[unitKey(unit(1, 5).unit), { state: 'up' }], [unitKey(unit(2, 5).unit), { state: 'up' }], [unitKey(unit(1, 6).unit), s1], [unitKey(unit(2, 6).unit), s2]]);

  it('fails a rollout once every new dyno has crashed three times while old ones still serve', () => {
    const [f] = failedRollouts(state.apps, state.assignments, plan(state), statuses(crashed(3), crashed(4)));
    expect(f?.version).toBe(6);
    expect(f?.reason).toBe('web.1 crashed 3 times before it was up: Process exited with status 1');
  });

  it('waits while any new dyno is up or has crashed fewer times', () => {
    expect(failedRollouts(state.apps, state.assignments, plan(state), statuses(crashed(3), { state: 'up' }))).toEqual([]);
    expect(failedRollouts(state.apps, state.assignments, plan(state), statuses(crashed(3), crashed(2)))).toEqual([]);
  });

  it('never rolls back over a restart: a crash-looping release restarted is not a rollout', () => {
    const restarted = { machines: state.machines, apps: [app(6, { web: 1 })], assignments: [unit(1, 6), unit(2, 6), unit(1, 6, 1), unit(2, 6, 1)] };
    const st = new Map<string, UnitStatus>([[unitKey(unit(1, 6).unit), crashed(9)], [unitKey(unit(2, 6).unit), crashed(9)], [unitKey(unit(1, 6, 1).unit), crashed(3)], [unitKey(unit(2, 6, 1).unit), crashed(3)]]);
    expect(failedRollouts(restarted.apps, restarted.assignments, plan(restarted), st)).toEqual([]);
  });

  it('does not fail a rollout when nothing older still serves', () => {
    const st = statuses(crashed(3), crashed(3));
    st.set(unitKey(unit(1, 5).unit), crashed(5));
    st.set(unitKey(unit(2, 5).unit), crashed(5));
    expect(failedRollouts(state.apps, state.assignments, plan(state), st)).toEqual([]);
  });

  it('never fails a release once its rollout is over (no older units left)', () => {
    const after = { ...state, assignments: [unit(1, 6), unit(2, 6)] };
    expect(failedRollouts(after.apps, after.assignments, plan(after), statuses(crashed(9), crashed(9)))).toEqual([]);
  });
});
