import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { runStartupChecks } from '../../src/agent/health.js';
import { HealthCheckSettings } from '../../src/controller/services/healthchecks.js';
import { until } from '../support/until.js';
import { Cluster } from '../control-loops/harness.js';

/**
 * The agent's HTTP health checks, in process: the fake runtime's dyno only hangs, and the test
 * itself answers on the port the loopback network gave it, so it decides what the "app" says.
 */

let cluster: Cluster;
let app: Server | undefined;
const more: Server[] = [];
afterEach(async () => {
  await cluster?.close();
  for (const s of [app, ...more.splice(0)]) await new Promise((r) => (s ? s.close(r) : r(undefined)));
  app = undefined;
});

/** What the test's app answers per path (status), changeable while it runs. */
type Answers = Record<string, number>;

/** Serves `answers` on the port the unit was attached to, once it has been. */
async function serveFor(unitPrefix: string, answers: Answers): Promise<{ requests: string[] }> {
  const port = await until(`${unitPrefix} attached`, () => {
    const e = cluster.timeline.find((t) => t.what.startsWith(`m1 attach ${unitPrefix}`));
    return e ? Number(e.what.split(':').pop()) : undefined;
  });
  const requests: string[] = [];
  if (app) more.push(app);
  app = createServer((req, res) => {
    requests.push(req.url ?? '');
    const status = answers[req.url ?? ''] ?? 404;
    res.writeHead(status, { 'content-type': 'text/plain', connection: 'close' }).end(status < 400 ? 'ok ready' : 'not yet');
  });
  await new Promise<void>((r) => app?.listen(port, '127.0.0.1', r));
  return { requests };
}

async function setCheck(name: string, fields: Record<string, unknown>): Promise<void> {
  const settings = new HealthCheckSettings(cluster.store, cluster.apps);
  await settings.set(cluster.owner, await cluster.apps.resolve(cluster.owner, name), 'web', fields);
}

const lines = (dyno: string): string[] => cluster.appLines.filter((l) => l.includes(`[${dyno}]`));

describe('startup checks', () => {
  it('publishes a web dyno only once its startup check passes, though its port accepts at once', async () => {
    cluster = await Cluster.start();
    await cluster.agent('m1');
    await cluster.scheduler('s1');
    await cluster.app('slow', { web: 'hang' });
    await setCheck('slow', { path: '/health', attempts: 20, wait: 1, timeout: 1 });
    await cluster.scale('slow', { web: 1 });
    const answers: Answers = { '/health': 503 };
    const { requests } = await serveFor('slow.web.1', answers);

    await until('two failed tries', () => (requests.filter((r) => r === '/health').length >= 2 ? true : undefined), 10_000);
    expect(await cluster.endpoints('slow')).toEqual(new Map());
    expect([...(await cluster.statuses('slow')).values()][0]?.state).toBe('starting');
    expect(lines('web.1')).toContainEqual(expect.stringContaining('Startup check GET /health failed (attempt 1/20): HTTP 503'));

    const ready = Date.now();
    answers['/health'] = 200;
    await until('published', async () => ((await cluster.endpoints('slow')).size === 1 ? true : undefined), 10_000);
    const published = cluster.timeline.find((e) => e.what.startsWith('publish slow.web.1'));
    expect(published?.at).toBeGreaterThanOrEqual(ready);
    expect([...(await cluster.statuses('slow')).values()][0]?.state).toBe('up');
  });

  it('marks a dyno whose startup check never passes crashed (R10), never published', async () => {
    cluster = await Cluster.start();
    await cluster.agent('m1', { agent: { crashBackoffMs: 60_000 } });
    await cluster.scheduler('s1');
    await cluster.app('broken', { web: 'hang' });
    await setCheck('broken', { path: '/health', attempts: 2, wait: 1, timeout: 1, content: 'ready' });
    await cluster.scale('broken', { web: 1 });
    // 200, but without the content the check asks for.
    app = undefined;
    const port = await until('attached', () => {
      const e = cluster.timeline.find((t) => t.what.startsWith('m1 attach broken.web.1'));
      return e ? Number(e.what.split(':').pop()) : undefined;
    });
    app = createServer((_req, res) => res.writeHead(200).end('still warming up'));
    await new Promise<void>((r) => app?.listen(port, '127.0.0.1', r));

    const st = await until('crashed', async () => {
      const s = [...(await cluster.statuses('broken')).values()][0];
      return s?.state === 'crashed' ? s : undefined;
    }, 10_000);
    expect(st.reason).toBe('Error R10 (Boot failure) -> startup check GET /health failed 2 times (last: HTTP 200, expected content not found)');
    expect(cluster.timeline.some((e) => e.what.startsWith('publish broken.'))).toBe(false);
  });

  it('fails a boot as R10 once its startup checks outlast the deadline, though each stays within its bounds', async () => {
    cluster = await Cluster.start();
    await cluster.agent('m1', { agent: { startupTimeoutMs: 2000, crashBackoffMs: 60_000 } });
    await cluster.scheduler('s1');
    await cluster.app('forever', { web: 'hang' });
    // 60 tries a second apart: alone, these would keep the dyno starting for a minute or more.
    await setCheck('forever', { path: '/health', attempts: 60, wait: 1, timeout: 1 });
    await cluster.scale('forever', { web: 1 });
    const { requests } = await serveFor('forever.web.1', { '/health': 503 });
    const attached = Date.now();
    const st = await until('crashed', async () => {
      const s = [...(await cluster.statuses('forever')).values()][0];
      return s?.state === 'crashed' ? s : undefined;
    }, 10_000);
    expect(st.reason).toBe('Error R10 (Boot failure) -> startup checks did not all pass within 2 s');
    expect(Date.now() - attached).toBeLessThan(6000);
    expect(cluster.timeline.some((e) => e.what.startsWith('publish forever.'))).toBe(false);
    // Decided: no more tries.
    const tried = requests.length;
    await new Promise((r) => setTimeout(r, 1500));
    expect(requests.length).toBe(tried);
  });

  it('stops the other startup checks once one has failed', async () => {
    const answers: Answers = { '/a': 503, '/b': 503 };
    const requests: string[] = [];
    const server = createServer((req, res) => {
      requests.push(req.url ?? '');
      res.writeHead(answers[req.url ?? ''] ?? 404, { connection: 'close' }).end();
    });
    more.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    const check = { type: 'startup' as const, timeout: 1, wait: 1, initialDelay: 0 };
    const run = runStartupChecks('127.0.0.1', port, [{ ...check, path: '/a', attempts: 1 }, { ...check, path: '/b', attempts: 60 }], { abandon: () => false, deadlineMs: 60_000 });
    await expect(run).rejects.toThrow('startup check GET /a failed 1 time (last: HTTP 503)');
    // /b's first try went out beside /a's and may land just after.
    await new Promise((r) => setTimeout(r, 300));
    const tried = requests.filter((r) => r === '/b').length;
    await new Promise((r) => setTimeout(r, 2500));
    expect(requests.filter((r) => r === '/b').length).toBe(tried);
  });

  it("counts the deadline from the end of the largest initialDelay, so an accepted delay cannot outlast it", async () => {
    const server = createServer((_req, res) => res.writeHead(200, { connection: 'close' }).end());
    more.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    const check = { type: 'startup' as const, path: '/', attempts: 1, timeout: 1, wait: 1 };
    // Alone, 1 s would run out during the 1 s delay (as 10 min would against initialDelay 600);
    // counted from its end it leaves a loaded machine a whole second for one local probe.
    await runStartupChecks('127.0.0.1', port, [{ ...check, initialDelay: 1 }, { ...check, initialDelay: 0 }], { abandon: () => false, deadlineMs: 1000 });
    // The delay does not lift the deadline for the tries themselves.
    const failing = createServer((_req, res) => res.writeHead(503, { connection: 'close' }).end());
    more.push(failing);
    await new Promise<void>((r) => failing.listen(0, '127.0.0.1', r));
    const started = Date.now();
    const run = runStartupChecks('127.0.0.1', (failing.address() as AddressInfo).port, [{ ...check, attempts: 60, initialDelay: 1 }], { abandon: () => false, deadlineMs: 1000 });
    await expect(run).rejects.toThrow(/startup checks did not all pass within 2(\.0)? s/);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('without checks a web dyno is published as soon as its port accepts (the default)', async () => {
    cluster = await Cluster.start();
    await cluster.agent('m1');
    await cluster.scheduler('s1');
    await cluster.app('plain', { web: 'hang' }, { web: 1 });
    const { requests } = await serveFor('plain.web.1', { '/health': 503 });
    await until('published', async () => ((await cluster.endpoints('plain')).size === 1 ? true : undefined), 10_000);
    expect(requests).toEqual([]);
  });
});

describe('liveness and readiness checks', () => {
  it('unpublishes a dyno whose liveness check fails and restarts it after `attempts` failures in a row', async () => {
    cluster = await Cluster.start();
    await cluster.agent('m1', { agent: { crashBackoffMs: 100 } });
    await cluster.scheduler('s1');
    await cluster.app('hung', { web: 'hang' });
    await setCheck('hung', { type: 'liveness', path: '/live', attempts: 3, wait: 1, timeout: 1 });
    await cluster.scale('hung', { web: 1 });
    const answers: Answers = { '/live': 200 };
    await serveFor('hung.web.1', answers);
    await until('published', async () => ((await cluster.endpoints('hung')).size === 1 ? true : undefined), 10_000);
    const starts = (): number => cluster.timeline.filter((e) => /^m1 start web\.1 /.test(e.what)).length;
    expect(starts()).toBe(1);

    answers['/live'] = 500;
    // Unpublished at its first failure, long before the restart.
    await until('unpublished', async () => ((await cluster.endpoints('hung')).size === 0 ? true : undefined), 5000);
    expect(starts()).toBe(1);
    await until('restarted', () => (starts() >= 2 ? true : undefined), 10_000);
    expect(lines('web.1')).toContainEqual(expect.stringContaining('Liveness check GET /live failed 3 times in a row (last: HTTP 500): restarting'));
    expect(lines('web.1')).toContainEqual(expect.stringContaining('State changed from up to crashed'));

    // The new process answers again: it is published again.
    answers['/live'] = 200;
    await until('published again', async () => ((await cluster.endpoints('hung')).size === 1 ? true : undefined), 10_000);
  });

  it('takes a dyno out while its readiness check fails and back when it passes, without a restart', async () => {
    cluster = await Cluster.start();
    await cluster.agent('m1');
    await cluster.scheduler('s1');
    await cluster.app('busy', { web: 'hang' });
    await setCheck('busy', { type: 'readiness', path: '/ready', attempts: 2, wait: 1, timeout: 1 });
    await cluster.scale('busy', { web: 1 });
    const answers: Answers = { '/ready': 200 };
    await serveFor('busy.web.1', answers);
    await until('published', async () => ((await cluster.endpoints('busy')).size === 1 ? true : undefined), 10_000);

    answers['/ready'] = 503;
    await until('unpublished', async () => ((await cluster.endpoints('busy')).size === 0 ? true : undefined), 6000);
    answers['/ready'] = 200;
    await until('published again', async () => ((await cluster.endpoints('busy')).size === 1 ? true : undefined), 6000);
    expect(cluster.timeline.filter((e) => /^m1 start web\.1 /.test(e.what))).toHaveLength(1);
    expect(lines('web.1')).toContainEqual(expect.stringContaining('Readiness check GET /ready failing (HTTP 503): no new requests until it passes'));
    expect(lines('web.1')).toContainEqual(expect.stringContaining('Health checks pass again: serving requests'));
  });
});

describe('rollouts', () => {
  it("keeps the old dyno serving until the new release's dyno passes its startup check", async () => {
    cluster = await Cluster.start();
    await cluster.router('r1');
    await cluster.agent('m1');
    await cluster.scheduler('s1');
    await cluster.app('roll', { web: 'hang' });
    await setCheck('roll', { path: '/health', attempts: 30, wait: 1, timeout: 1 });
    await cluster.scale('roll', { web: 1 });
    await serveFor('roll.web.1@v2', { '/health': 200 });
    await until('v2 published', async () => ((await cluster.endpoints('roll')).size === 1 ? true : undefined), 10_000);

    await cluster.deploy('roll', { web: 'hang' });
    const next: Answers = { '/health': 503 };
    const { requests } = await serveFor('roll.web.1@v3', next);
    await until('v3 checked twice', () => (requests.length >= 2 ? true : undefined), 10_000);
    // The old dyno still serves, alone; the new one is not published.
    expect([...(await cluster.endpoints('roll')).keys()]).toEqual([expect.stringMatching(/^roll\.web\.1@v2/)]);
    expect(cluster.indexOf(/^m1 stop web\.1 /)).toBe(-1);

    next['/health'] = 200;
    await until('v3 alone', async () => {
      const keys = [...(await cluster.endpoints('roll')).keys()];
      return keys.length === 1 && keys[0]?.startsWith('roll.web.1@v3') ? true : undefined;
    }, 15_000);
    const published = cluster.indexOf(/^publish roll\.web\.1@v3/);
    const unpublished = cluster.indexOf(/^unpublish roll\.web\.1@v2/);
    expect(published).toBeGreaterThanOrEqual(0);
    expect(unpublished).toBeGreaterThan(published);
  });
});
