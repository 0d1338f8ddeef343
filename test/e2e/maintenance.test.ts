import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keys } from '../../src/domain/keys.js';
import { routersCaughtUp } from '../../src/domain/routers.js';
import { openStore, type Store } from '../../src/store/index.js';
import { apiClient } from '../support/api.js';
import { startBerth, type BerthProcess } from '../support/berth-process.js';
import { appRepo, git } from '../support/e2e.js';
import { runHeroku, type HerokuRun } from '../support/heroku.js';
import { untilWith } from '../support/until.js';

/**
 * Maintenance mode end to end: the official heroku CLI's `maintenance:on` against `berth up`, then
 * curl through the real nginx router — Heroku's 503 page on every hostname of the app — and
 * `maintenance:off` serving again at once.
 */
const ADMIN = 'maint-admin-token-0123456789abcdef';
const APP = 'maint-app';
let berth: BerthProcess;
let dir: string;
let home: string;
let store: Store;
let appId = '';

const api = apiClient(() => berth.apiUrl, ADMIN).ok;
const waitFor = untilWith({ timeoutMs: 90_000, intervalMs: 100, context: () => berth.stderr().slice(-2000) });
const heroku = (...args: string[]): Promise<HerokuRun> => runHeroku({ apiUrl: berth.apiUrl, token: ADMIN, home, timeoutMs: 30_000 }, args);

interface Curl {
  status: number;
  body: string;
}

/** curl through the router, as a visitor would: the Host header picks the app. */
function curl(host: string): Promise<Curl> {
  return new Promise((resolve, reject) => {
    execFile('curl', ['-sS', '--max-time', '5', '-H', `Host: ${host}`, '-w', '\n%{http_code}', `http://127.0.0.1:${String(berth.summary.http_port)}/`], (err, stdout) => {
      if (err) return reject(err);
      const at = stdout.lastIndexOf('\n');
      resolve({ status: Number(stdout.slice(at + 1)), body: stdout.slice(0, at) });
    });
  });
}

/** Until every router has applied the app record's latest write (the toggle's txn). */
async function applied(): Promise<void> {
  const revision = (await store.get(keys.app(appId)))?.modRevision ?? 0;
  await waitFor(`the routers at revision ${revision}`, async () => ((await routersCaughtUp(store, revision)) ? true : undefined), 15_000);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-maint-'));
  chmodSync(dir, 0o755);
  home = mkdtempSync(join(dir, 'home-'));
  berth = await startBerth(['--data-dir', join(dir, 'data')], { BERTH_BOOTSTRAP_TOKEN: ADMIN, BERTH_LOG_LEVEL: 'warn' });
  store = openStore(`sqlite://${join(dir, 'data', 'state.db')}`);
  appId = (await api<{ id: string }>('POST', '/apps', { name: APP })).id;
  await api('POST', `/apps/${APP}/domains`, { hostname: 'www.maint.example' });
  const repo = join(dir, 'repo');
  await appRepo(repo, berth.apiUrl, ADMIN, APP, {
    'server.js': "require('http').createServer((q, s) => s.end('hello from ' + process.env.DYNO)).listen(process.env.PORT);\n",
    Procfile: 'web: node server.js\n',
  });
  const push = await git(repo, 'push', 'berth', 'main');
  if (push.code !== 0) throw new Error(push.out);
  await api('PATCH', `/apps/${APP}/formation`, { updates: [{ type: 'web', quantity: 1 }] });
  await waitFor('the app served through the router', async () => ((await curl(`${APP}.berth.localhost`).catch(() => undefined))?.status === 200 ? true : undefined));
}, 180_000);
afterAll(async () => {
  await store?.close();
  await berth?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('maintenance mode with the official heroku CLI', () => {
  it('maintenance:on: every hostname of the app answers 503 with the maintenance page', async () => {
    expect((await curl('www.maint.example')).body).toBe('hello from web.1');
    const on = await heroku('maintenance:on', '-a', APP);
    expect(on.code, on.err).toBe(0);
    expect(on.err + on.out).toMatch(/Enabling maintenance mode for .*maint-app.*done/s);
    expect((await heroku('maintenance', '-a', APP)).out.trim()).toBe('on');
    await applied();
    for (const host of [`${APP}.berth.localhost`, 'www.maint.example']) {
      const res = await curl(host);
      expect(res.status, host).toBe(503);
      expect(res.body, host).toContain('Offline for maintenance');
    }
  }, 60_000);

  it("shows Heroku's H80 router line in heroku logs", async () => {
    await waitFor('the H80 line in heroku logs', async () => {
      const logs = await heroku('logs', '-a', APP, '-n', '50');
      return /router\]: at=info code=H80 desc="Maintenance mode" method=GET path="\/" host=maint-app\.berth\.localhost .*status=503/.test(logs.out) ? true : undefined;
    }, 20_000);
  }, 60_000);

  it('maintenance:off: served again, the first request once the router has the change', async () => {
    const off = await heroku('maintenance:off', '-a', APP);
    expect(off.code, off.err).toBe(0);
    expect(off.err + off.out).toMatch(/Disabling maintenance mode for .*maint-app.*done/s);
    await applied();
    const res = await curl(`${APP}.berth.localhost`);
    expect(res).toEqual({ status: 200, body: 'hello from web.1' });
    expect((await curl('www.maint.example')).status).toBe(200);
    expect((await heroku('maintenance', '-a', APP)).out.trim()).toBe('off');
  }, 60_000);
});
