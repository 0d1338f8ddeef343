import { request } from 'node:http';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBerth, type BerthProcess } from '../support/berth-process.js';
import { apiClient } from '../support/api.js';
import { appRepo, git } from '../support/e2e.js';

/**
 * Issue 13 item 6, end to end: real `berth up` (builder, agent, nginx router). The app listens on
 * $PORT at once but is not ready for 3 s (503 `app-not-ready` on every path). With app.json's
 * startup check on /health, no request through the router ever gets that answer; the same app
 * without the check is published when its port accepts, and clients see it.
 */
const ADMIN = 'health-admin-token-0123456789abcdef';
let berth: BerthProcess;
let dir: string;
const api = apiClient(() => berth.apiUrl, ADMIN).ok;

const SERVER = `const started = Date.now();
require('http').createServer((req, res) => {
  const ready = Date.now() - started > 3000;
  res.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' });
  res.end(ready ? 'ready' : 'app-not-ready');
}).listen(process.env.PORT);
`;

/** One GET through the router for `host`: status and body (a refused or broken request is status 0). */
function get(host: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port: Number(berth.summary.http_port), path: '/', headers: { Host: host }, agent: false, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', () => resolve({ status: 0, body: '' }));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve({ status: 0, body: '' }));
    req.end();
  });
}

/**
 * Pushes `files` as app `name` and asks the router every 50 ms from the push until the app
 * answers `ready` (its first deploy scales web to 1); returns every answer the app itself gave.
 */
async function deployAndWatch(name: string, files: Record<string, string>): Promise<string[]> {
  await api('POST', '/apps', { name });
  const repo = join(dir, name);
  await appRepo(repo, berth.apiUrl, ADMIN, name, { 'server.js': SERVER, Procfile: 'web: node server.js\n', ...files });
  const host = `${name}.berth.localhost`;
  const seen: string[] = [];
  let pushed = false;
  const push = git(repo, 'push', 'berth', 'main').then((r) => {
    pushed = true;
    if (r.code !== 0) throw new Error(r.out);
  });
  const deadline = Date.now() + 90_000;
  for (;;) {
    const r = await get(host);
    // Before the dyno is published the router answers for it (no such app, no endpoints): not the app.
    if (r.body === 'ready' || r.body === 'app-not-ready') seen.push(r.body);
    if (r.body === 'ready') break;
    if (Date.now() > deadline) throw new Error(`${name} never answered ready (pushed: ${pushed}); saw ${JSON.stringify(seen.slice(-5))}\n${berth.stderr().slice(-2000)}`);
    await new Promise((res) => setTimeout(res, 50));
  }
  await push;
  return seen;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-health-'));
  chmodSync(dir, 0o755);
  berth = await startBerth(['--data-dir', join(dir, 'data')], { BERTH_BOOTSTRAP_TOKEN: ADMIN, BERTH_LOG_LEVEL: 'warn' });
}, 60_000);
afterAll(async () => {
  await berth?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('HTTP health checks through the router', () => {
  it('with a startup check in app.json, no request reaches the dyno before it is ready', async () => {
    const appJson = JSON.stringify({ healthchecks: { web: [{ type: 'startup', path: '/health', attempts: 10, wait: 1, timeout: 2 }] } });
    const seen = await deployAndWatch('gated', { 'app.json': appJson });
    expect(seen.filter((b) => b === 'app-not-ready')).toEqual([]);
    const checks = await api<{ process_type: string; type: string; path: string; source: string }[]>('GET', '/apps/gated/healthchecks');
    expect(checks).toMatchObject([{ process_type: 'web', type: 'startup', path: '/health', source: 'app.json' }]);
  }, 120_000);

  it("refuses a push whose app.json has a bad check before building, and notes the checks it cannot run", async () => {
    await api('POST', '/apps', { name: 'badcheck' });
    const repo = join(dir, 'badcheck');
    const appJson = JSON.stringify({ healthchecks: { web: [{ command: ['/app/check.sh'] }, { path: '/ok\r\nX-Forged: 1' }] } });
    await appRepo(repo, berth.apiUrl, ADMIN, 'badcheck', { 'server.js': SERVER, Procfile: 'web: node server.js\n', 'app.json': appJson });
    const push = await git(repo, 'push', 'berth', 'main');
    expect(push.code).not.toBe(0);
    expect(push.out).toContain('app.json: healthchecks.web[1]: path must start with /');
    expect(push.out).not.toContain('Compressing');

    // Fixed: the check Berth cannot run is skipped with a note, and the push goes through.
    writeFileSync(join(repo, 'app.json'), JSON.stringify({ healthchecks: { web: [{ command: ['/app/check.sh'] }, { path: '/ok' }] } }));
    await git(repo, '-c', 'user.email=a@b', '-c', 'user.name=a', 'commit', '-qam', 'fix');
    const fixed = await git(repo, 'push', 'berth', 'main');
    expect(fixed.code, fixed.out).toBe(0);
    expect(fixed.out).toContain('app.json healthchecks.web[0]: skipped (Berth runs HTTP path checks only, not "command" checks)');
  }, 60_000);

  it('without a check, the dyno is published once its port accepts and clients get the not-ready answer', async () => {
    const seen = await deployAndWatch('ungated', {});
    expect(seen.filter((b) => b === 'app-not-ready').length).toBeGreaterThan(0);
  }, 120_000);
});
