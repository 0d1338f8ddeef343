import { afterEach, describe, expect, it } from 'vitest';
import { keys } from '../../src/domain/keys.js';
import { until } from '../support/until.js';
import { Cluster } from './harness.js';

let cluster: Cluster;
afterEach(async () => {
  await cluster?.close();
});

/** Start times of a dyno's processes and their exits, from the timeline. */
function lifecycle(c: Cluster, machine: string, dyno: string): { starts: number[]; exits: number[] } {
  const starts: number[] = [];
  const exits: number[] = [];
  for (const e of c.timeline) {
    if (e.what.startsWith(`${machine} start ${dyno} `)) starts.push(e.at);
    if (e.what.startsWith(`${machine} exit ${dyno} `)) exits.push(e.at);
  }
  return { starts, exits };
}

describe('crash restarts', () => {
  it('restarts a dyno whose command exits with a growing delay, and berth ps shows it crashed with its restarts and why', async () => {
    cluster = await Cluster.start();
    // The agent's timer pass stays at its default (5 s): the backoff must not wait for it.
    await cluster.agent('m1', { agent: { crashBackoffMs: 200 } });
    await cluster.scheduler('s1');
    await cluster.app('crashy', { worker: 'sleep 50; exit 3' }, { worker: 1 });

    const crashed = await until('worker.1 crashed twice', async () => {
      const st = [...(await cluster.statuses('crashy')).values()].find((s) => s.name === 'worker.1');
      return st?.state === 'crashed' && st.restarts >= 2 ? st : undefined;
    });
    expect(crashed).toMatchObject({ state: 'crashed', reason: 'Process exited with status 3', type: 'worker', machine: 'm1' });

    await until('a fourth start', () => lifecycle(cluster, 'm1', 'worker.1').starts.length >= 4, 5000);
    const { starts, exits } = lifecycle(cluster, 'm1', 'worker.1');
    // Exit n is followed by start n+1 after 200 ms, 400 ms, 800 ms: doubling, each at least its backoff.
    const delays = [0, 1, 2].map((i) => (starts[i + 1] as number) - (exits[i] as number));
    expect(delays[0]).toBeGreaterThanOrEqual(190);
    expect(delays[1]).toBeGreaterThanOrEqual(390);
    expect(delays[2]).toBeGreaterThanOrEqual(790);
    for (const [i, d] of delays.entries()) expect(d).toBeLessThan(200 * 2 ** i + 400);
    expect(cluster.appLines.filter((l) => l.endsWith('berth[worker.1]: Process exited with status 3')).length).toBeGreaterThanOrEqual(3);
  });

  it('shows a web dyno that exits before it is up as crashed with the exit as its reason', async () => {
    cluster = await Cluster.start();
    await cluster.agent('m1', { agent: { crashBackoffMs: 100 } });
    await cluster.scheduler('s1');
    await cluster.app('bootfail', { web: 'echo starting; exit 2' }, { web: 1 });
    const st = await until('web.1 crashed', async () => {
      const s = [...(await cluster.statuses('bootfail')).values()].find((x) => x.name === 'web.1');
      return s?.state === 'crashed' ? s : undefined;
    });
    expect(st).toMatchObject({ reason: 'Process exited with status 2', restarts: expect.any(Number) });
    expect(await cluster.endpoints('bootfail')).toEqual(new Map());
  });
});

describe('stop ordering', () => {
  it('on scale-down: unpublishes, waits until the router has applied that, and only then stops the dyno', async () => {
    cluster = await Cluster.start();
    await cluster.router('r1', { delayMs: 300 });
    await cluster.agent('m1');
    await cluster.scheduler('s1');
    await cluster.app('shop', { web: 'serve' }, { web: 2 });
    await until('two endpoints', async () => ((await cluster.endpoints('shop')).size === 2 ? true : undefined));

    await cluster.scale('shop', { web: 1 });
    await until('web.2 stopped', () => cluster.indexOf(/^m1 stop web\.2 /) >= 0);
    const unpublished = cluster.indexOf(/^unpublish shop\.web\.2@v2$/);
    expect(unpublished).toBeGreaterThanOrEqual(0);
    const removal = cluster.timeline[unpublished]!;
    const reported = cluster.timeline.findIndex((e, i) => i > unpublished && e.what.startsWith('router r1 reports ') && (e.revision ?? 0) >= (removal.revision ?? Infinity));
    const stopped = cluster.indexOf(/^m1 stop web\.2 /);
    // The router's report of the removal comes between the removal and the stop.
    expect(reported).toBeGreaterThan(unpublished);
    expect(stopped).toBeGreaterThan(reported);
    expect(cluster.timeline[stopped]!.at - removal.at).toBeGreaterThanOrEqual(290);
    // The unit key went first (the scheduler's decision), and web.1 was never touched.
    expect(cluster.indexOf(/^remove m1\/shop\.web\.2@v2$/)).toBeLessThan(unpublished);
    expect(cluster.indexOf(/^m1 stop web\.1 /)).toBe(-1);
    expect([...(await cluster.endpoints('shop')).keys()]).toEqual(['shop.web.1@v2']);
  });

  it('on a rollout: the old dyno stops only after its replacement is up and routed, and after the router has applied its own removal', async () => {
    cluster = await Cluster.start();
    await cluster.router('r1', { delayMs: 200 });
    await cluster.agent('m1');
    await cluster.scheduler('s1');
    await cluster.app('shop', { web: 'serve' }, { web: 1 });
    await until('web.1@v2 published', async () => ((await cluster.endpoints('shop')).has('shop.web.1@v2') ? true : undefined));

    await cluster.deploy('shop', { web: 'serve' });
    await until('the v2 dyno stopped', () => cluster.indexOf(/^m1 stop web\.1 shop\.web\.1-v2-/) >= 0);
    const at = (re: RegExp): number => cluster.indexOf(re);
    const published = at(/^publish shop\.web\.1@v3$/);
    const publishedRev = cluster.timeline[published]!.revision!;
    const routedNew = cluster.timeline.findIndex((e) => e.what.startsWith('router r1 reports ') && (e.revision ?? 0) >= publishedRev);
    const removedUnit = at(/^remove m1\/shop\.web\.1@v2$/);
    const unpublished = at(/^unpublish shop\.web\.1@v2$/);
    const unpublishedRev = cluster.timeline[unpublished]!.revision!;
    const routedRemoval = cluster.timeline.findIndex((e) => e.what.startsWith('router r1 reports ') && (e.revision ?? 0) >= unpublishedRev);
    const stopped = at(/^m1 stop web\.1 shop\.web\.1-v2-/);
    expect(published).toBeGreaterThanOrEqual(0);
    expect(routedNew).toBeGreaterThan(published);
    expect(removedUnit).toBeGreaterThan(routedNew);
    expect(unpublished).toBeGreaterThan(removedUnit);
    expect(routedRemoval).toBeGreaterThan(unpublished);
    expect(stopped).toBeGreaterThan(routedRemoval);
    // Never without an endpoint once the first was published.
    let live = 0;
    for (const e of cluster.timeline.slice(cluster.indexOf(/^publish shop\.web\.1@v2$/))) {
      if (e.what.startsWith('publish shop.')) live++;
      if (e.what.startsWith('unpublish shop.')) live--;
      expect(live).toBeGreaterThanOrEqual(1);
    }
  });
});

describe('an agent that loses its lease', () => {
  it('registers again, and the cluster converges: every unit placed, one process each, endpoints back', async () => {
    cluster = await Cluster.start();
    await cluster.router('r1');
    const m1 = await cluster.agent('m1', { memoryBytes: 4 * 1024 ** 3 });
    await cluster.scheduler('s1');
    await cluster.app('shop', { web: 'serve', worker: 'hang' }, { web: 2, worker: 1 });
    const upCount = async (): Promise<number> => [...(await cluster.statuses('shop')).values()].filter((s) => s.state === 'up').length;
    await until('three dynos up', async () => ((await upCount()) === 3 ? true : undefined));
    const lease = (await cluster.store.get(keys.machine('m1')))?.lease as string;
    await cluster.store.revokeLease(lease);
    // Its machine, endpoints and statuses went with the lease; the scheduler moved its units off.
    await until('its units removed', () => cluster.indexOf(/^remove m1\/shop\.worker\.1@v2$/) >= 0);
    await until('registered again', async () => {
      const machine = await cluster.store.get(keys.machine('m1'));
      return machine && machine.lease !== lease ? true : undefined;
    }, 5000);
    const ids = (): string[] => m1.runtime.running().map((d) => d.id);
    await until('three units placed, up and running again', async () => ((await cluster.units('shop')).length === 3 && (await upCount()) === 3 && ids().length === 3 ? true : undefined));
    await until('both endpoints back', async () => ((await cluster.endpoints('shop')).size === 2 ? true : undefined));
    expect((await cluster.units('shop')).map((u) => u.key).sort()).toEqual(['shop.web.1@v2', 'shop.web.2@v2', 'shop.worker.1@v2']);
    expect([...(await cluster.endpoints('shop')).keys()].sort()).toEqual(['shop.web.1@v2', 'shop.web.2@v2']);
    // One process per unit: none left over from before the loss.
    expect(new Set(m1.runtime.running().map((d) => d.spec.dyno))).toEqual(new Set(['web.1', 'web.2', 'worker.1']));
  });
});

describe("a dyno's network", () => {
  it('is attached once per dyno, kept across crash restarts, released only after the dyno has stopped; its address is published and reported, its env is the platform\'s', async () => {
    cluster = await Cluster.start();
    await cluster.agent('m1', { agent: { crashBackoffMs: 100 } });
    await cluster.scheduler('s1');
    await cluster.router('r1');
    await cluster.app('net', { web: 'env HEROKU_PRIVATE_IP PORT; graceful; serve', worker: 'env HEROKU_PRIVATE_IP; crash-after 50 3' });
    const access = await cluster.apps.resolve(cluster.owner, 'net');
    // A config var cannot bend what the platform sets.
    await cluster.releases.setConfig(cluster.owner, access, { HEROKU_PRIVATE_IP: '6.6.6.6' });
    await cluster.scale('net', { web: 1, worker: 1 });

    const [webKey, endpoint] = await until('web.1 published', async () => [...(await cluster.endpoints('net')).entries()][0]);
    const attached = cluster.timeline.filter((e) => e.what.startsWith('m1 attach ')).map((e) => e.what);
    expect(attached).toContain(`m1 attach ${webKey} ${endpoint}`);
    const web = (await cluster.statuses('net')).get(webKey);
    expect(web).toMatchObject({ state: 'up', address: '127.0.0.1', port: Number(endpoint.split(':')[1]) });
    const appId = access.app.id;
    expect(cluster.appLines).toContain(`${appId} app[web.1]: HEROKU_PRIVATE_IP=127.0.0.1`);
    expect(cluster.appLines).toContain(`${appId} app[web.1]: PORT=${endpoint.split(':')[1]}`);

    // Three crashes of the worker, one attachment.
    await until('worker.1 started 3 times', () => cluster.timeline.filter((e) => /^m1 start worker\.1 /.test(e.what)).length >= 3, 10_000);
    expect(cluster.timeline.filter((e) => /^m1 attach net\.worker\.1@/.test(e.what))).toHaveLength(1);
    expect(cluster.timeline.filter((e) => /^m1 release net\.worker\.1@/.test(e.what))).toHaveLength(0);
    expect(cluster.appLines.filter((l) => l.endsWith('app[worker.1]: HEROKU_PRIVATE_IP=127.0.0.1')).length).toBeGreaterThanOrEqual(3);
    const worker = [...(await cluster.statuses('net')).values()].find((s) => s.name === 'worker.1');
    // A worker has an address but no port of its own to report.
    expect(worker).toMatchObject({ address: '127.0.0.1', port: null });

    await cluster.scale('net', { web: 0, worker: 0 });
    await until('both released', () => cluster.timeline.filter((e) => /^m1 release net\./.test(e.what)).length === 2, 10_000);
    const released = cluster.indexOf(`m1 release ${webKey}`);
    const exited = cluster.indexOf(/^m1 exit web\.1 /);
    expect(exited).toBeGreaterThanOrEqual(0);
    expect(released).toBeGreaterThan(exited);
    expect(cluster.timeline.filter((e) => e.what.startsWith('m1 attach ')).length).toBe(2);
  });
});
