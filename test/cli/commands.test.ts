import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startController, type Controller } from '../../src/controller/index.js';
import { Users } from '../../src/controller/services/users.js';
import { put } from '../../src/domain/codec.js';
import { keys } from '../../src/domain/keys.js';
import { createLogger } from '../../src/domain/log.js';
import { codecs } from '../../src/domain/records.js';
import { openStore, type Store } from '../../src/store/index.js';
import { runCli, type CliResult } from '../support/cli.js';
import { freePort } from '../support/ports.js';

let store: Store;
let controller: Controller;
let dir: string;
let adminToken: string;
let aliceToken: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-cli-'));
  store = openStore('memory://');
  const port = await freePort();
  controller = await startController({ store, log: createLogger('test', { level: 'silent' }), host: '127.0.0.1', port, settings: { domain: 'berth.test', apiUrl: `http://127.0.0.1:${port}` } });
  const users = new Users(store);
  adminToken = (await users.create('root@example.com', { admin: true })).token;
  aliceToken = (await users.create('alice@example.com')).token;
});
afterAll(async () => {
  await controller.close();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

type Result = CliResult;

/** Runs `berth ARGS` in-process, as the user whose HOME is `home`, from `cwd`. */
const berth = (home: string, cwd: string, env: Record<string, string>, ...args: string[]): Promise<Result> => runCli({ env: { BERTH_API_URL: controller.url, ...env }, cwd, home }, args);

describe('the berth CLI', () => {
  let home: string;
  let repo: string;
  const as = (...args: string[]): Promise<Result> => berth(home, repo, {}, ...args);

  beforeAll(() => {
    home = mkdtempSync(join(dir, 'home-'));
    repo = mkdtempSync(join(dir, 'repo-'));
    execFileSync('git', ['init', '-q', repo]);
  });

  it('logs in with a token, keeping it in ~/.netrc for the API host', async () => {
    const bad = await as('login', '--token', 'berth_wrong-token-000000000000');
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/Invalid credentials/);
    const ok = await as('login', '--token', aliceToken);
    expect(ok.out).toContain('Logged in as alice@example.com');
    const host = new URL(controller.url).host;
    expect(readFileSync(join(home, '.netrc'), 'utf8')).toContain(`machine ${host}`);
    expect((await as('whoami')).out.trim()).toBe('alice@example.com');
  });

  it('creates an app with a berth git remote, then finds the app from that remote', async () => {
    const created = await as('apps:create', 'cli-made');
    expect(created.code).toBe(0);
    expect(created.out).toContain('http://cli-made.berth.test/');
    expect(created.err).toMatch(/Creating cli-made\.\.\. done/);
    expect(execFileSync('git', ['remote', 'get-url', 'berth'], { cwd: repo }).toString().trim()).toBe(`${controller.url}/cli-made.git`);
    const info = await as('apps:info');
    expect(info.out).toMatch(/=== cli-made/);
    expect(info.out).toMatch(/Owner:\s+alice@example.com/);
    expect(JSON.parse((await as('apps', '--json')).out).map((a: { name: string }) => a.name)).toEqual(['cli-made']);
  });

  it('sets, gets and unsets config, reporting the release each change made', async () => {
    const set = await as('config:set', 'GREETING=hello world', 'N=1');
    expect(set.err).toMatch(/Setting GREETING, N and restarting cli-made\.\.\. done, v2/);
    expect((await as('config:get', 'GREETING')).out.trim()).toBe('hello world');
    expect((await as('config', '--shell')).out).toContain("GREETING='hello world'");
    expect((await as('config:unset', 'N')).err).toMatch(/done, v3/);
    expect(JSON.parse((await as('config', '--json')).out)).toEqual({ GREETING: 'hello world' });
    expect((await as('config:set', 'NOEQUALS')).err).toMatch(/Must be in the format KEY=value/);
  });

  it('lists releases and rolls back to the previous one by default', async () => {
    expect((await as('releases')).out).toMatch(/Current: v3[\s\S]*v3\s+Remove N config var/);
    const rb = await as('rollback');
    expect(rb.err).toMatch(/Rolling back cli-made to v2\.\.\. done, v4/);
    expect((await as('config:get', 'N')).out.trim()).toBe('1');
    expect((await as('releases:info', 'v2')).out).toMatch(/=== Release v2[\s\S]*N:\s+1/);
  });

  it('turns maintenance mode on and off, as heroku maintenance:on/off', async () => {
    expect((await as('maintenance')).out.trim()).toBe('off');
    expect((await as('maintenance:on')).err).toMatch(/Enabling maintenance mode for cli-made\.\.\. done/);
    expect((await as('maintenance')).out.trim()).toBe('on');
    expect((await as('maintenance:off')).err).toMatch(/Disabling maintenance mode for cli-made\.\.\. done/);
    expect((await as('maintenance')).out.trim()).toBe('off');
  });

  it('scales with absolute and relative quantities', async () => {
    expect((await as('ps:scale', 'web=2')).err).toMatch(/now running web at 2:standard-1x/);
    expect((await as('ps:scale', 'web+1')).err).toMatch(/web at 3/);
    expect((await as('ps:scale')).out.trim()).toBe('web=3:standard-1x');
    expect((await as('ps:scale', 'web')).err).toMatch(/Usage: berth ps:scale/);
    expect((await as('ps')).out).toMatch(/No dynos on cli-made/);
  });

  it('manages domains, access and keys', async () => {
    expect((await as('domains:add', 'www.cli.example')).out).toMatch(/DNS Target cli-made.berth.test/);
    expect((await as('domains')).out).toMatch(/www.cli.example\s+cli-made.berth.test/);
    expect((await as('domains:remove', 'www.cli.example')).code).toBe(0);
    await berth(home, repo, { BERTH_API_KEY: adminToken }, 'users:add', 'bob@example.com');
    expect((await as('access:add', 'bob@example.com')).code).toBe(0);
    expect((await as('access')).out).toMatch(/bob@example.com\s+collaborator/);
    expect((await as('access:remove', 'bob@example.com')).code).toBe(0);
    const keyFile = join(dir, 'id.pub');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'alice@cli', '-f', join(dir, 'id')]);
    expect((await as('keys:add', keyFile)).err).toMatch(/Uploading .* SSH key\.\.\. done/);
    expect((await as('keys')).out).toMatch(/ssh-ed25519 AAAAC3NzaC\.\.\.\S+ alice@cli/);
    expect((await as('keys:remove', 'alice@cli')).code).toBe(0);
    expect((await as('keys')).err).toMatch(/You have no SSH keys/);
  });

  it('lets only admins manage users, and BERTH_API_KEY overrides netrc', async () => {
    expect((await as('users')).err).toMatch(/needs an admin account.*\(forbidden\)/);
    const added = await berth(home, repo, { BERTH_API_KEY: adminToken }, 'users:add', 'carol@example.com', '--json');
    const carol = JSON.parse(added.out) as { token: string };
    expect((await berth(home, repo, { BERTH_API_KEY: carol.token }, 'whoami')).out.trim()).toBe('carol@example.com');
    expect((await berth(home, repo, { BERTH_API_KEY: adminToken }, 'users:registration', 'open')).out).toContain('Registration is open.');
  });

  it('fails with one clear line: unknown commands get a suggestion, missing apps say what to do', async () => {
    const typo = await as('confg');
    expect(typo.code).not.toBe(0);
    expect(typo.err).toMatch(/unknown command 'confg'[\s\S]*config/);
    const nowhere = await berth(home, dir, {}, 'config');
    expect(nowhere.err).toMatch(/No app specified\. Use -a APP/);
    const missing = await as('apps:info', '-a', 'no-such-app');
    expect(missing.err.trim()).toBe("▸    Couldn't find that app. (not_found)");
    expect((await as('apps:destroy')).err).toMatch(/--confirm cli-made/);
    expect((await as('apps:destroy', '--confirm', 'cli-made')).code).toBe(0);
  });

  it('sets placement tags and memory limits, and lists nodes for admins with their subnets', async () => {
    await as('apps:create', 'placed-app');
    const tags = await as('tags:set', 'region=eu', 'disk=ssd', '-a', 'placed-app');
    expect(tags.out).toMatch(/region:\s+eu/);
    expect((await as('tags:set', 'disk=', '-a', 'placed-app')).out).not.toMatch(/disk/);
    expect((await as('tags:set', 'bad tag=x', '-a', 'placed-app')).err).toMatch(/may only use letters/);
    expect((await as('limits:set', 'web=256m', '-a', 'placed-app')).out).toMatch(/web:\s+256M/);
    expect((await as('limits:set', 'web=10K', '-a', 'placed-app')).err).toMatch(/between 64M and 64G/);
    expect((await as('nodes')).err).toMatch(/needs an admin account/);
    await put(store, keys.machine('node-a'), codecs.machine, { id: 'node-a', name: 'a', address: '192.0.2.10', tags: { region: 'eu' }, capacity: { memoryBytes: 8 * 1024 ** 3, cpus: 2 }, agent_version: '0.1.0' });
    await put(store, keys.subnet('10.244.3.0/24'), codecs.subnet, { machine: 'node-a', public_ip: '192.0.2.10', backend: { type: 'vxlan', vtep_mac: '02:00:00:00:00:01' }, acquired_at: new Date().toISOString() });
    // A record from before overlay networks (host ports) and without a subnet still lists.
    await put(store, keys.machine('node-b'), codecs.machine, { id: 'node-b', name: 'b', address: '192.0.2.11', tags: {}, capacity: { memoryBytes: 8 * 1024 ** 3, cpus: 2 }, ports: { from: 1, to: 2 }, agent_version: '0.1.0' });
    const unit = { name: 'placed-app.web.1', appId: 'placed-app-id', appName: 'placed-app', type: 'web', index: 1, release: 1, memoryBytes: 2 * 1024 ** 3 };
    await put(store, keys.unit('node-a', 'placed-app.web.1@v1'), codecs.unit, unit);
    await put(store, keys.router('node-a'), codecs.router, { id: 'node-a', revision: 42, http_port: 80, https_port: 443, updated_at: new Date().toISOString() });
    const nodes = await berth(home, repo, { BERTH_API_KEY: adminToken }, 'nodes');
    // Role, etcd member (none: no cluster here, whose servers would list them) and the router's applied revision.
    expect(nodes.out).toMatch(/a\s+agent\s+up\s+192\.0\.2\.10\s+-\s+@42\s+10\.244\.3\.0\/24\s+vxlan\s+region=eu\s+8\.0G\/2cpu\s+25% mem\s+1\n/);
    expect(nodes.out).toMatch(/b\s+agent\s+up\s+192\.0\.2\.11\s+-\s+-\s+-\s+-\s+-\s+8\.0G\/2cpu\s+0% mem\s+0\n/);
    const listed = JSON.parse((await berth(home, repo, { BERTH_API_KEY: adminToken }, 'nodes', '--json')).out) as { id: string; subnet: string | null; backend: string | null }[];
    expect(listed.map((n) => [n.id, n.subnet, n.backend])).toEqual([['node-a', '10.244.3.0/24', 'vxlan'], ['node-b', null, null]]);
    await store.delete(keys.unit('node-a', 'placed-app.web.1@v1'));
    for (const key of [keys.machine('node-a'), keys.machine('node-b'), keys.subnet('10.244.3.0/24'), keys.router('node-a')]) await store.delete(key);
  });

  it("shows each dyno's overlay address in ps", async () => {
    const app = JSON.parse((await as('apps:create', 'addressed', '--json')).out) as { id: string };
    const now = new Date().toISOString();
    const status = { app_id: app.id, unit: 'addressed.web.1@v1', name: 'web.1', type: 'web', state: 'up' as const, reason: null, restarts: 0, command: 'npm start', release: { id: 'r1', version: 1 }, machine: 'node-a', port: 5000, address: '10.244.3.7', created_at: now, updated_at: now };
    await put(store, keys.status('addressed.web.1@v1'), codecs.status, status);
    // A report from before dynos had addresses.
    const { address: _none, ...old } = { ...status, unit: 'addressed.web.2@v1', name: 'web.2' };
    await put(store, keys.status('addressed.web.2@v1'), codecs.status, old);
    const ps = await as('ps', '-a', 'addressed');
    expect(ps.out).toMatch(/web\.1: up v1 .* on node-a at 10\.244\.3\.7\n/);
    expect(ps.out).toMatch(/web\.2: up v1 .* on node-a\n/);
    const json = JSON.parse((await as('ps', '-a', 'addressed', '--json')).out) as { name: string; address: string | null }[];
    expect(json.map((d) => [d.name, d.address])).toEqual([['web.1', '10.244.3.7'], ['web.2', null]]);
  });

  it('renames an app and updates the git remote', async () => {
    await as('apps:create', 'before-name');
    const r = await as('apps:rename', 'after-name');
    expect(r.out).toContain('http://after-name.berth.test/');
    expect(execFileSync('git', ['remote', 'get-url', 'berth'], { cwd: repo }).toString().trim()).toBe(`${controller.url}/after-name.git`);
    await as('logout');
    expect((await as('whoami')).err).toMatch(/Not logged in/);
  });
});
