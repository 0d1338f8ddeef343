import { describe, expect, it } from 'vitest';
import { plan } from '../../src/scheduler/placement.js';
import type { AppView, Assignment, MachineView, Plan, StateView } from '../../src/scheduler/types.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

const machine = (id: string, o: { memory?: number; tags?: Record<string, string>; ports?: number } = {}): MachineView => ({
  id,
  address: `10.0.0.${id.length}`,
  tags: o.tags ?? {},
  capacity: { memoryBytes: o.memory ?? 8 * GiB, cpus: 4 },
  ...(o.ports !== undefined ? { ports: { from: 5000, to: 5000 + o.ports - 1 } } : {}),
});

type Scale = number | { quantity: number; size: string };
const app = (name: string, formation: Record<string, Scale>, o: { version?: number; slug?: string | null; types?: string[]; tags?: Record<string, string>; limits?: Record<string, number>; noRelease?: boolean } = {}): AppView => ({
  id: `id-${name}`,
  name,
  release: o.noRelease ? null : { version: o.version ?? 1, slugId: o.slug === undefined ? 'slug-1' : o.slug, processTypes: Object.fromEntries((o.types ?? ['web', 'worker', 'release']).map((t) => [t, `run ${t}`])) },
  formation: Object.fromEntries(Object.entries(formation).map(([t, s]) => [t, typeof s === 'number' ? { quantity: s, size: 'standard-1x' } : s])),
  placementTags: o.tags ?? {},
  memoryLimits: o.limits ?? {},
});

const state = (machines: MachineView[], apps: AppView[], assignments: Assignment[] = []): StateView => ({ machines, apps, assignments });

/** What the leader does with a plan: write placements, delete removals (superseded ones stay). */
const apply = (s: StateView, p: Plan): StateView => ({
  ...s,
  assignments: [...s.assignments.filter((a) => !p.remove.some((r) => r.machine === a.machine && r.unit.name === a.unit.name && r.unit.release === a.unit.release)), ...p.place],
});

/** machine → sorted unit names (with @vN), for compact expectations. */
const layout = (as: Assignment[]): Record<string, string[]> => {
  const out: Record<string, string[]> = {};
  for (const a of as) (out[a.machine] ??= []).push(`${a.unit.name}@v${a.unit.release}`);
  for (const k of Object.keys(out)) out[k]?.sort();
  return out;
};
const counts = (as: Assignment[]): Record<string, number> => Object.fromEntries(Object.entries(layout(as)).map(([m, us]) => [m, us.length]));
const names = (as: { unit: { name: string } }[]): string[] => as.map((a) => a.unit.name);

describe('plan: where new units go', () => {
  const cases: { name: string; s: StateView; counts: Record<string, number>; pending?: RegExp[] }[] = [
    {
      name: 'spreads web=3 over 3 machines, one each (Deis #3590 put them all on one node)',
      s: state([machine('m1'), machine('m2'), machine('m3')], [app('shop', { web: 3 })]),
      counts: { m1: 1, m2: 1, m3: 1 },
    },
    { name: 'splits 5 units over 2 machines 3/2', s: state([machine('m1'), machine('m2')], [app('shop', { web: 5 })]), counts: { m1: 3, m2: 2 } },
    {
      name: 'only uses machines carrying every placement tag',
      s: state([machine('us1', { tags: { region: 'us' } }), machine('eu1', { tags: { region: 'eu' } }), machine('eu2', { tags: { region: 'eu', disk: 'ssd' } })], [app('shop', { web: 4 }, { tags: { region: 'eu' } })]),
      counts: { eu1: 2, eu2: 2 },
    },
    {
      name: 'fits by memory: a 1 GiB machine takes two 512 MiB units, the third is pending',
      s: state([machine('small', { memory: 1 * GiB })], [app('shop', { web: 3 })]),
      counts: { small: 2 },
      pending: [/^no machine has 512 MiB free$/],
    },
    {
      name: 'sizes set memory: standard-2x needs 1 GiB',
      s: state([machine('m1', { memory: 1.5 * GiB })], [app('shop', { web: { quantity: 2, size: 'standard-2x' } })]),
      counts: { m1: 1 },
      pending: [/^no machine has 1 GiB free$/],
    },
    {
      name: 'limits:set overrides the size',
      s: state([machine('m1', { memory: 1 * GiB })], [app('shop', { web: { quantity: 3, size: 'performance-l' } }, { limits: { web: 256 * MiB } })]),
      counts: { m1: 3 },
    },
    { name: 'no machines at all', s: state([], [app('shop', { web: 1 })]), counts: {}, pending: [/^no machines registered$/] },
    {
      name: 'no machine with the tags',
      s: state([machine('us1', { tags: { region: 'us' } })], [app('shop', { web: 1 }, { tags: { region: 'eu' } })]),
      counts: {},
      pending: [/^no machine matches tags region=eu$/],
    },
    {
      name: 'memory reason names the tag scope',
      s: state([machine('eu1', { memory: 256 * MiB, tags: { region: 'eu' } }), machine('us1', { tags: { region: 'us' } })], [app('shop', { web: 1 }, { tags: { region: 'eu' } })]),
      counts: {},
      pending: [/^no machine matching region=eu has 512 MiB free$/],
    },
    {
      name: 'web units need a free port; workers do not',
      s: state([machine('m1', { ports: 1 })], [app('shop', { web: 2, worker: 1 })]),
      counts: { m1: 2 },
      pending: [/free port/],
    },
    {
      name: 'spreads an app before stacking it: web and worker land on different machines',
      s: state([machine('m1'), machine('m2')], [app('shop', { web: 1, worker: 1 })]),
      counts: { m1: 1, m2: 1 },
    },
    {
      name: 'spreads a type before an app: a second web avoids the first even where the app has fewer units',
      s: state([machine('m1'), machine('m2')], [app('shop', { web: 2, worker: 2 })], [
        { machine: 'm1', unit: { name: 'shop.worker.1', appId: 'id-shop', appName: 'shop', type: 'worker', index: 1, release: 1, memoryBytes: 512 * MiB } },
        { machine: 'm1', unit: { name: 'shop.worker.2', appId: 'id-shop', appName: 'shop', type: 'worker', index: 2, release: 1, memoryBytes: 512 * MiB } },
        { machine: 'm2', unit: { name: 'shop.web.1', appId: 'id-shop', appName: 'shop', type: 'web', index: 1, release: 1, memoryBytes: 512 * MiB } },
      ]),
      counts: { m1: 1 },
    },
    {
      name: 'prefers the less loaded machine when anti-affinity ties',
      s: state([machine('m1'), machine('m2')], [app('a', { web: 1 }), app('b', { web: 1 })]),
      counts: { m1: 1, m2: 1 },
    },
    {
      name: 'schedules nothing for an app without a slug or release',
      s: state([machine('m1')], [app('fresh', { web: 1 }, { slug: null }), app('gone', { web: 1 }, { noRelease: true })]),
      counts: {},
    },
  ];

  it.each(cases)('$name', ({ s, counts: want, pending }) => {
    const p = plan(s);
    expect(counts(p.place)).toEqual(want);
    expect(p.pending.map((x) => x.reason)).toEqual((pending ?? []).map((r) => expect.stringMatching(r)));
    expect(p.remove).toEqual([]);
    expect(p.superseded).toEqual([]);
  });

  it('stamps units with their name, release, memory and placement tags', () => {
    const p = plan(state([machine('m1', { tags: { region: 'eu', disk: 'ssd' } })], [app('shop', { web: 1 }, { version: 7 }), app('blog', { web: 1 }, { tags: { region: 'eu' } })]));
    expect(p.place).toEqual([
      { machine: 'm1', unit: { name: 'blog.web.1', appId: 'id-blog', appName: 'blog', type: 'web', index: 1, release: 1, memoryBytes: 512 * MiB, tags: { region: 'eu' } } },
      { machine: 'm1', unit: { name: 'shop.web.1', appId: 'id-shop', appName: 'shop', type: 'web', index: 1, release: 7, memoryBytes: 512 * MiB } },
    ]);
  });

  it('never schedules the release process type, and reports unknown types as pending', () => {
    const p = plan(state([machine('m1')], [app('shop', { web: 1, release: 1, clock: 2 }, { types: ['web', 'release'] })]));
    expect(names(p.place)).toEqual(['shop.web.1']);
    expect(p.pending).toEqual([
      { unit: expect.objectContaining({ name: 'shop.clock.1' }), reason: 'process type clock is not defined in release v1 (types: release, web)' },
      { unit: expect.objectContaining({ name: 'shop.clock.2' }), reason: 'process type clock is not defined in release v1 (types: release, web)' },
    ]);
  });
});

describe('plan: changes to what runs', () => {
  const machines = [machine('m1'), machine('m2'), machine('m3')];

  it('is stable: applying a plan and planning again changes nothing, even with a new machine', () => {
    const s1 = apply(state(machines, [app('shop', { web: 3, worker: 2 }), app('blog', { web: 2 })]), plan(state(machines, [app('shop', { web: 3, worker: 2 }), app('blog', { web: 2 })])));
    const again = plan({ ...s1, machines: [...machines, machine('m0')] });
    expect(again).toEqual({ place: [], remove: [], superseded: [], pending: [] });
  });

  it('scales down from the highest index', () => {
    const s1 = apply(state(machines, [app('shop', { web: 5 })]), plan(state(machines, [app('shop', { web: 5 })])));
    const p = plan({ ...s1, apps: [app('shop', { web: 2 })] });
    expect(names(p.remove)).toEqual(['shop.web.5', 'shop.web.4', 'shop.web.3']);
    expect(p.place).toEqual([]);
  });

  it('places a new release beside the old one and marks the old one superseded, not removed', () => {
    const s1 = apply(state(machines, [app('shop', { web: 2 })]), plan(state(machines, [app('shop', { web: 2 })])));
    const v2 = [app('shop', { web: 2 }, { version: 2 })];
    const p = plan({ ...s1, apps: v2 });
    expect(p.place.map((a) => `${a.unit.name}@v${a.unit.release}`)).toEqual(['shop.web.1@v2', 'shop.web.2@v2']);
    expect(p.superseded).toEqual(s1.assignments);
    expect(p.remove).toEqual([]);
    // Mid-rollout the plan is steady; once the rollout removes the old units, nothing is left to do.
    const s2 = apply({ ...s1, apps: v2 }, p);
    expect(plan(s2)).toEqual({ place: [], remove: [], superseded: s1.assignments, pending: [] });
    expect(plan({ ...s2, assignments: p.place })).toEqual({ place: [], remove: [], superseded: [], pending: [] });
  });

  it('re-places the units of a vanished machine and removes their stale assignments', () => {
    const s1 = apply(state(machines, [app('shop', { web: 3 })]), plan(state(machines, [app('shop', { web: 3 })])));
    const lost = s1.assignments.filter((a) => a.machine === 'm2');
    const p = plan({ ...s1, machines: machines.filter((m) => m.id !== 'm2') });
    expect(p.remove).toEqual(lost);
    expect(names(p.place)).toEqual(names(lost));
    expect(p.place[0]?.machine).not.toBe('m2');
  });

  it('removes, not supersedes, an old-release unit whose machine is gone', () => {
    const old: Assignment = { machine: 'dead', unit: { name: 'shop.web.1', appId: 'id-shop', appName: 'shop', type: 'web', index: 1, release: 1, memoryBytes: 512 * MiB } };
    const p = plan(state(machines, [app('shop', { web: 1 }, { version: 2 })], [old]));
    expect(p.remove).toEqual([old]);
    expect(p.superseded).toEqual([]);
    expect(layout(p.place)).toEqual({ m1: ['shop.web.1@v2'] });
  });

  it('removes units of deleted apps, apps that lost their slug, and duplicates', () => {
    const s1 = apply(state(machines, [app('shop', { web: 1 }), app('blog', { web: 1 })]), plan(state(machines, [app('shop', { web: 1 }), app('blog', { web: 1 })])));
    const dup = { ...s1.assignments.find((a) => a.unit.appName === 'shop')!, machine: 'm3' };
    const p = plan({ ...s1, apps: [app('shop', { web: 1 })], assignments: [...s1.assignments, dup] });
    expect(layout(s1.assignments)).toEqual({ m1: ['blog.web.1@v1'], m2: ['shop.web.1@v1'] });
    expect(layout(p.remove)).toEqual({ m1: ['blog.web.1@v1'], m3: ['shop.web.1@v1'] });
    expect(p.place).toEqual([]);
    expect(names(plan({ ...s1, apps: [app('shop', { web: 1 }, { noRelease: true }), app('blog', { web: 1 })] }).remove)).toEqual(['shop.web.1']);
  });

  it('counts superseded units against memory but not against spreading', () => {
    const two = [machine('m1', { memory: 1 * GiB }), machine('m2', { memory: 1 * GiB })];
    const s1 = apply(state(two, [app('shop', { web: 2 })]), plan(state(two, [app('shop', { web: 2 })])));
    const p = plan({ ...s1, apps: [app('shop', { web: 2 }, { version: 2 })] });
    expect(counts(p.place)).toEqual({ m1: 1, m2: 1 });
    const full = plan({ ...s1, apps: [app('shop', { web: 2 }, { version: 2 })], machines: [machine('m1', { memory: 1 * GiB }), machine('m2', { memory: 512 * MiB })] });
    expect(p.pending).toEqual([]);
    expect(full.pending.map((x) => `${x.unit.name}: ${x.reason}`)).toEqual(['shop.web.2: no machine has 512 MiB free']);
  });
});

describe('plan: determinism', () => {
  /** A small seeded PRNG, so a failure reproduces. */
  const rng = (seed: number) => () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const shuffle = <T>(xs: T[], r: () => number): T[] => xs.map((x) => [r(), x] as const).sort((a, b) => a[0] - b[0]).map(([, x]) => x);
  const reorder = (o: Record<string, unknown>, r: () => number) => Object.fromEntries(shuffle(Object.entries(o), r));

  it('gives the same plan however the input is ordered', () => {
    const ms = Array.from({ length: 6 }, (_, i) => machine(`m${i}`, { memory: (i + 1) * GiB, tags: { region: i % 2 ? 'eu' : 'us' } }));
    const apps = [app('a', { web: 4, worker: 3 }), app('b', { web: 5 }, { tags: { region: 'eu' } }), app('c', { web: 3, worker: 2 }, { version: 3 })];
    const base = state(ms, apps);
    const half = apply(base, plan(base));
    const s = { ...half, apps: [app('a', { web: 6, worker: 1 }, { version: 2 }), apps[1]!, app('c', { web: 5, worker: 2, clock: 1 }, { version: 3 })], machines: ms.slice(1) };
    const expected = plan(s);
    expect(expected.place.length).toBeGreaterThan(0);
    for (let seed = 1; seed <= 20; seed++) {
      const r = rng(seed);
      const shuffled: StateView = {
        machines: shuffle(s.machines, r).map((m) => ({ ...m, tags: reorder(m.tags, r) as Record<string, string> })),
        apps: shuffle(s.apps, r).map((a) => ({ ...a, formation: reorder(a.formation, r) as AppView['formation'] })),
        assignments: shuffle(s.assignments, r),
      };
      expect(JSON.stringify(plan(shuffled))).toBe(JSON.stringify(expected));
    }
  });
});

describe('plan: an app that cannot be read', () => {
  it('keeps its units where they are, counts their memory, and adds or removes nothing of it', () => {
    const first = plan(state([machine('m1', { memory: 1 * GiB })], [app('shop', { web: 2 })]));
    const running = first.place;
    expect(running).toHaveLength(2);
    // shop's formation became unreadable: frozen. Another app wants 1 GiB on the full machine.
    const frozen: AppView = { id: 'id-shop', name: 'shop', release: null, formation: {}, placementTags: {}, memoryLimits: {}, frozen: true };
    const p = plan(state([machine('m1', { memory: 1 * GiB })], [frozen, app('blog', { web: 1 })], running));
    expect(p.remove).toEqual([]);
    expect(p.place).toEqual([]);
    expect(p.pending.map((u) => u.unit.name)).toEqual(['blog.web.1']);
    // Its machine gone, a frozen app's units are removed like any others (there is nothing to keep).
    expect(plan(state([machine('m2')], [frozen], running)).remove).toHaveLength(2);
  });
});
