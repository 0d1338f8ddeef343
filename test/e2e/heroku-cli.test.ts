import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient } from '../support/api.js';
import { startBerth, type BerthProcess } from '../support/berth-process.js';
import { runHeroku, type HerokuRun as Run } from '../support/heroku.js';
import { EtcdServer } from '../support/etcd-server.js';

const ED25519 = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq3bJqZ3k6w0b0b9gS3mC8Zl8mZQnV1xZpN9y2r4s5t alice@laptop\n';

/**
 * The official heroku CLI (npm `heroku`), driven against a live `berth up` the way a user would:
 * HEROKU_HOST + HEROKU_API_KEY, run from a scratch directory with a scratch HOME.
 */
function cli(berth: BerthProcess, home: string, token: string) {
  return (...args: string[]): Promise<Run> => runHeroku({ apiUrl: berth.apiUrl, token, home, timeoutMs: 30_000 }, args);
}

async function createUser(berth: BerthProcess, admin: string, email: string): Promise<string> {
  return (await apiClient(berth.apiUrl, admin).ok<{ token: string }>('POST', '/berth/users', { email })).token;
}

describe.each(['sqlite', 'etcd'])('the official heroku CLI against berth up (%s store)', (backend) => {
  let berth: BerthProcess;
  let etcd: EtcdServer | undefined;
  let dir: string;
  let alice: (...args: string[]) => Promise<Run>;
  let bob: (...args: string[]) => Promise<Run>;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), `berth-heroku-${backend}-`));
    if (backend === 'etcd') etcd = await EtcdServer.start();
    const admin = 'e2e-admin-token-0123456789abcdef';
    berth = await startBerth(['--data-dir', join(dir, 'data'), ...(etcd ? ['--store', etcd.url, '--store-insecure'] : [])], { BERTH_BOOTSTRAP_TOKEN: admin });
    const aliceHome = mkdtempSync(join(dir, 'alice-home-'));
    const bobHome = mkdtempSync(join(dir, 'bob-home-'));
    writeFileSync(join(aliceHome, 'id_ed25519.pub'), ED25519);
    alice = cli(berth, aliceHome, await createUser(berth, admin, 'alice@example.com'));
    bob = cli(berth, bobHome, await createUser(berth, admin, 'bob@example.com'));
  }, 60_000);

  afterAll(async () => {
    await berth?.stop();
    await etcd?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('apps, apps:create, apps:info', async () => {
    expect((await alice('apps')).out).toContain('You have no apps.');
    const created = await alice('apps:create', 'cli-app');
    expect(created.code).toBe(0);
    expect(created.out).toContain('http://cli-app.berth.localhost/');
    const generated = await alice('apps:create');
    expect(generated.code).toBe(0);
    const list = await alice('apps');
    expect(list.out).toContain('alice@example.com Apps');
    expect(list.out).toContain('cli-app');
    const info = await alice('apps:info', '-a', 'cli-app');
    expect(info.code).toBe(0);
    expect(info.out).toMatch(/=== cli-app/);
    expect(info.out).toMatch(/Owner:\s+alice@example.com/);
    expect(info.out).toMatch(/Web URL:\s+http:\/\/cli-app.berth.localhost\//);
    const json = JSON.parse((await alice('apps:info', '-a', 'cli-app', '--json')).out) as { app: { name: string } };
    expect(json.app.name).toBe('cli-app');
  });

  it('config, config:set, config:get, config:unset', async () => {
    const set = await alice('config:set', 'DATABASE_URL=postgres://db/x', 'WORKERS=4', '-a', 'cli-app');
    expect(set.code).toBe(0);
    expect(set.err + set.out).toMatch(/done, v2/);
    expect((await alice('config:get', 'WORKERS', '-a', 'cli-app')).out.trim()).toBe('4');
    const all = await alice('config', '-a', 'cli-app');
    expect(all.out).toMatch(/DATABASE_URL:\s+postgres:\/\/db\/x/);
    const unset = await alice('config:unset', 'WORKERS', '-a', 'cli-app');
    expect(unset.err + unset.out).toMatch(/done, v3/);
    expect(JSON.parse((await alice('config', '-a', 'cli-app', '--json')).out)).toEqual({ DATABASE_URL: 'postgres://db/x' });
  });

  it('releases, releases:info, releases:rollback', async () => {
    const list = await alice('releases', '-a', 'cli-app');
    expect(list.out).toMatch(/Current: v3/);
    expect(list.out).toMatch(/v3\s+Remove WORKERS config var\s+alice@example.com/);
    expect(list.out).toMatch(/v1\s+Initial release/);
    const info = await alice('releases:info', 'v2', '-a', 'cli-app');
    expect(info.out).toMatch(/=== Release v2/);
    expect(info.out).toMatch(/WORKERS:\s+4/);
    const rollback = await alice('releases:rollback', 'v2', '-a', 'cli-app');
    expect(rollback.code).toBe(0);
    expect(rollback.err + rollback.out).toMatch(/done, v4/);
    // Code and config both: WORKERS is back.
    expect((await alice('config:get', 'WORKERS', '-a', 'cli-app')).out.trim()).toBe('4');
    expect((await alice('releases', '-a', 'cli-app')).out).toMatch(/v4\s+Rollback to v2/);
  });

  it('ps:scale and ps', async () => {
    const scale = await alice('ps:scale', 'web=2', '-a', 'cli-app');
    expect(scale.err + scale.out).toMatch(/now running web at 2:standard-1x/);
    const rel = await alice('ps:scale', 'web+1', '-a', 'cli-app');
    expect(rel.err + rel.out).toMatch(/web at 3:/);
    expect((await alice('ps:scale', '-a', 'cli-app')).out).toMatch(/web=3:standard-1x/);
    const bad = await alice('ps:scale', 'worker=1', '-a', 'cli-app');
    expect(bad.code).not.toBe(0);
    expect(bad.err).toMatch(/No such process type worker/);
    const ps = await alice('ps', '-a', 'cli-app');
    expect(ps.code).toBe(0);
    expect(ps.out).toMatch(/No dynos on cli-app/);
  });

  it('domains, domains:add, domains:remove', async () => {
    const add = await alice('domains:add', 'www.cli-app.example', '-a', 'cli-app');
    expect(add.code).toBe(0);
    expect(add.err + add.out).toMatch(/cli-app.berth.localhost/);
    const list = await alice('domains', '-a', 'cli-app');
    expect(list.out).toContain('cli-app.berth.localhost');
    expect(list.out).toContain('www.cli-app.example');
    expect((await alice('domains:remove', 'www.cli-app.example', '-a', 'cli-app')).code).toBe(0);
    expect((await alice('domains', '-a', 'cli-app')).out).not.toContain('www.cli-app.example');
  });

  it('keys, keys:add, keys:remove', async () => {
    expect((await alice('keys:add', 'id_ed25519.pub')).code).toBe(0);
    const list = await alice('keys');
    expect(list.out).toContain('alice@example.com keys');
    expect(list.out).toMatch(/ssh-ed25519 AAAAC3NzaC\.\.\.\S+ alice@laptop/);
    expect((await alice('keys:remove', 'alice@laptop')).code).toBe(0);
    expect((await alice('keys')).err).toMatch(/You have no SSH keys/);
  });

  it('access, access:add, access:remove — and a stranger cannot see the app', async () => {
    const hidden = await bob('apps:info', '-a', 'cli-app');
    expect(hidden.code).not.toBe(0);
    expect(hidden.err).toMatch(/Couldn't find that app/);
    expect((await bob('config:set', 'X=1', '-a', 'cli-app')).code).not.toBe(0);
    expect((await alice('access:add', 'bob@example.com', '-a', 'cli-app')).code).toBe(0);
    const access = await alice('access', '-a', 'cli-app');
    expect(access.out).toMatch(/alice@example.com\s+owner/);
    expect(access.out).toMatch(/bob@example.com\s+collaborator/);
    expect((await bob('apps')).out).toMatch(/Collaborated Apps[\s\S]*cli-app/);
    expect((await bob('config:get', 'DATABASE_URL', '-a', 'cli-app')).out.trim()).toBe('postgres://db/x');
    expect((await alice('access:remove', 'bob@example.com', '-a', 'cli-app')).code).toBe(0);
    expect((await bob('apps:info', '-a', 'cli-app')).code).not.toBe(0);
  });

  it('logs', async () => {
    const logs = await alice('logs', '-a', 'cli-app', '-n', '50');
    expect(logs.code).toBe(0);
    expect(logs.out).toMatch(/app\[api\]: Set DATABASE_URL, WORKERS config vars by user alice@example.com/);
    expect(logs.out).toMatch(/app\[api\]: Rollback to v2 by user alice@example.com/);
  });

  it('apps:rename, apps:destroy', async () => {
    const rename = await alice('apps:rename', 'cli-app-2', '-a', 'cli-app');
    expect(rename.code).toBe(0);
    expect(rename.out).toContain('http://cli-app-2.berth.localhost/');
    expect((await alice('config:get', 'WORKERS', '-a', 'cli-app-2')).out.trim()).toBe('4');
    expect((await alice('apps:destroy', 'cli-app-2', '--confirm', 'cli-app-2')).code).toBe(0);
    expect((await alice('apps')).out).not.toContain('cli-app-2');
  });
});
