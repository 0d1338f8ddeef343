import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore, type Store } from '../../src/store/index.js';
import { startBerth, type BerthProcess } from '../support/berth-process.js';
import { git } from '../support/e2e.js';

const ADMIN = 'run-admin-token-0123456789abcdef';
let berth: BerthProcess;
let dir: string;
let store: Store;

async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(`${berth.apiUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return (await res.json()) as T;
}

/** A request through the router with a Host header (fetch cannot set one). */
function viaRouter(host: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: Number(berth.summary.http_port), path: '/', headers: { host } }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The published endpoints of an app's web dynos, as the router will see them. */
async function endpoints(app: string): Promise<string[]> {
  return (await store.range(`/berth/services/${app}/`, { prefix: true })).kvs.map((kv) => kv.value);
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}:\n${berth.stderr().slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-run-'));
  chmodSync(dir, 0o755);
  berth = await startBerth(['--data-dir', join(dir, 'data')], { BERTH_BOOTSTRAP_TOKEN: ADMIN });
  store = openStore(`sqlite://${join(dir, 'data', 'state.db')}`);
}, 60_000);
afterAll(async () => {
  await store?.close();
  await berth?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('git push to a running app', () => {
  it('runs the pushed app as a sandboxed web dyno, scales it, and rolls a new release out', async () => {
    await api('POST', '/apps', { name: 'live-app' });
    await api('PATCH', '/apps/live-app/config-vars', { GREETING: 'hello' });
    const repo = join(dir, 'repo');
    mkdirSync(repo);
    const server = (version: string): string =>
      `require('http').createServer((q, s) => s.end(process.env.GREETING + ' ${version} from ' + process.env.DYNO)).listen(process.env.PORT, () => console.log('listening on', process.env.PORT));\n`;
    writeFileSync(join(repo, 'server.js'), server('v1'));
    writeFileSync(join(repo, 'Procfile'), 'web: node server.js\n');
    for (const args of [['init', '-q', '-b', 'main'], ['add', '.'], ['-c', 'user.email=a@b', '-c', 'user.name=a', 'commit', '-qm', 'one'], ['remote', 'add', 'berth', `${berth.apiUrl.replace('http://', `http://git:${ADMIN}@`)}/live-app.git`]]) {
      await git(repo, ...args);
    }
    const push = await git(repo, 'push', 'berth', 'main');
    expect(push.code, push.out).toBe(0);
    expect(push.out).toMatch(/Scaled web to 1 \(first deploy\)/);

    const [first] = await until('one endpoint', async () => ((await endpoints('live-app')).length === 1 ? endpoints('live-app') : undefined));
    expect(await (await fetch(`http://${first}/`)).text()).toBe('hello v1 from web.1');
    // Through the router, by Host, as a user reaches it.
    const routed = await until('routed', async () => {
      const r = await viaRouter('live-app.berth.localhost');
      return r.status === 200 ? r : undefined;
    });
    expect(routed.body).toBe('hello v1 from web.1');
    const dynos = await api<{ name: string; state: string }[]>('GET', '/apps/live-app/dynos');
    expect(dynos.map((d) => `${d.name}:${d.state}`)).toEqual(['web.1:up']);

    await api('PATCH', '/apps/live-app/formation', { updates: [{ type: 'web', quantity: 2 }] });
    const two = await until('two endpoints', async () => ((await endpoints('live-app')).length === 2 ? endpoints('live-app') : undefined));
    const answers = await Promise.all(two.map(async (ep) => (await fetch(`http://${ep}/`)).text()));
    expect(answers.sort()).toEqual(['hello v1 from web.1', 'hello v1 from web.2']);

    // A new release rolls out under a steady request loop through the router: nothing fails.
    writeFileSync(join(repo, 'server.js'), server('v2'));
    await git(repo, '-c', 'user.email=a@b', '-c', 'user.name=a', 'commit', '-qam', 'two');
    let loading = true;
    const statuses: number[] = [];
    const load = (async () => {
      while (loading && statuses.length < 20_000) statuses.push((await viaRouter('live-app.berth.localhost')).status);
    })();
    expect((await git(repo, 'push', 'berth', 'main')).code).toBe(0);
    const rolled = await until('v2 everywhere', async () => {
      const eps = await endpoints('live-app');
      if (eps.length !== 2) return undefined;
      const texts = await Promise.all(eps.map(async (ep) => (await fetch(`http://${ep}/`)).text()));
      return texts.every((t) => t.includes('v2')) ? texts : undefined;
    });
    expect(rolled.sort()).toEqual(['hello v2 from web.1', 'hello v2 from web.2']);
    await until('old dynos gone', async () => ((await api<unknown[]>('GET', '/apps/live-app/dynos')).length === 2 ? true : undefined));
    loading = false;
    await load;
    expect(statuses.length).toBeGreaterThan(20);
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    expect((await viaRouter('live-app.berth.localhost')).body).toMatch(/^hello v2 from web\.[12]$/);

    // The dyno's own output is in the app's logs.
    // The load above wrote a router line per request: ask for the web dynos' lines only (`-p web`).
    const session = await api<{ logplex_url: string }>('POST', '/apps/live-app/log-sessions', { lines: 200, dyno: 'web' });
    const logs = await (await fetch(session.logplex_url)).text();
    expect(logs).toMatch(/app\[web\.1\]: listening on \d+/);
    expect(logs).toMatch(/berth\[web\.1\]: State changed from starting to up/);

    await api('PATCH', '/apps/live-app/formation', { updates: [{ type: 'web', quantity: 0 }] });
    await until('no endpoints', async () => ((await endpoints('live-app')).length === 0 ? true : undefined));
    await until('503 from the router', async () => ((await viaRouter('live-app.berth.localhost')).status === 503 ? true : undefined));
  }, 180_000);
});
