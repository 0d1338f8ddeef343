import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore, type Store } from '../../src/store/index.js';
import { startBerth, type BerthProcess } from '../support/berth-process.js';
import { apiClient } from '../support/api.js';
import { git } from '../support/e2e.js';
import { call, type Reply } from '../support/router.js';
import { untilWith } from '../support/until.js';

const ADMIN = 'run-admin-token-0123456789abcdef';
let berth: BerthProcess;
let dir: string;
let store: Store;

const api = apiClient(() => berth.apiUrl, ADMIN).ok;
const until = untilWith({ timeoutMs: 60_000, intervalMs: 200, context: () => berth.stderr().slice(-3000) });

/** A request through the node's router to an app's hostname. */
const viaRouter = (host: string): Promise<Reply> => call({ port: Number(berth.summary.http_port), host });

/** The published endpoints of an app's web dynos, as the router will see them. */
async function endpoints(app: string): Promise<string[]> {
  return (await store.range(`/berth/services/${app}/`, { prefix: true })).kvs.map((kv) => kv.value);
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
    // The dyno is at an address of the node's overlay subnet, in a namespace of its own.
    const net = berth.summary.network as { network: string; subnet: string };
    expect(first).toMatch(new RegExp(`^${net.subnet.replace(/\.0\/24$/, '').replace(/\./g, '\\.')}\\.\\d+:\\d+$`));
    expect(await (await fetch(`http://${first}/`)).text()).toBe('hello v1 from web.1');
    // Through the router, by Host, as a user reaches it.
    const routed = await until('routed', async () => {
      const r = await viaRouter('live-app.berth.localhost');
      return r.status === 200 ? r : undefined;
    });
    expect(routed.body).toBe('hello v1 from web.1');
    const dynos = await api<{ name: string; state: string; address: string | null }[]>('GET', '/apps/live-app/dynos');
    expect(dynos.map((d) => `${d.name}:${d.state}`)).toEqual(['web.1:up']);
    expect(dynos[0]?.address).toBe(first?.split(':')[0]);

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
