import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startController, type Controller } from '../../src/controller/index.js';
import { Users } from '../../src/controller/services/users.js';
import { createLogger } from '../../src/domain/log.js';
import { openStore, type Store } from '../../src/store/index.js';
import { runCli, type CliResult } from '../support/cli.js';
import { freePort } from '../support/ports.js';

let store: Store;
let controller: Controller;
let dir: string;
let token: string;
let appId: string;
let receiver: Server;
let receiverPort: number;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-cli-logs-'));
  store = openStore('memory://');
  const port = await freePort();
  controller = await startController({ store, log: createLogger('test', { level: 'silent' }), host: '127.0.0.1', port, settings: { domain: 'berth.test', apiUrl: `http://127.0.0.1:${port}` }, logDb: join(dir, 'logs.db') });
  // An admin: drains to this host (the test's receiver) are an admin's to add.
  token = (await new Users(store).create('alice@example.com', { admin: true })).token;
  receiver = createServer((s) => s.resume());
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  receiverPort = (receiver.address() as { port: number }).port;
});
afterAll(async () => {
  await controller.close();
  await store.close();
  await new Promise((resolve) => receiver.close(resolve));
  rmSync(dir, { recursive: true, force: true });
});

const berth = (...args: string[]): Promise<CliResult> => runCli({ env: { BERTH_API_URL: controller.url, BERTH_API_KEY: token }, cwd: dir, home: dir }, args);

describe('berth logs and drains', () => {
  beforeAll(async () => {
    expect((await berth('apps:create', 'logged')).code).toBe(0);
    appId = (await store.get('/berth/app-names/logged'))!.value;
    const add = (source: string, dyno: string, message: string): void => void controller.services.logs.append(appId, { source, dyno, message });
    add('app', 'web.1', 'web one');
    add('app', 'web.2', 'web two');
    add('app', 'worker.1', 'job done');
    add('berth', 'web.1', 'State changed from starting to up');
  });

  it('shows recent lines with -n, -p, -d and -s', async () => {
    const web = await berth('logs', '-a', 'logged', '-p', 'web');
    expect(web.code).toBe(0);
    expect(web.out.trim().split('\n').map((l) => l.replace(/^\S+ /, ''))).toEqual(['app[web.1]: web one', 'app[web.2]: web two', 'berth[web.1]: State changed from starting to up']);
    expect((await berth('logs', '-a', 'logged', '-n', '1')).out.trim()).toMatch(/berth\[web\.1\]: State changed from starting to up$/);
    expect((await berth('logs', '-a', 'logged', '-d', 'web.2')).out.trim()).toMatch(/app\[web\.2\]: web two$/);
    expect((await berth('logs', '-a', 'logged', '--dyno', 'web.1', '--source', 'app')).out.trim().split('\n')).toHaveLength(1);
    const both = await berth('logs', '-a', 'logged', '-p', 'web', '-d', 'web.1');
    expect(both.code).not.toBe(0);
    expect((await berth('logs', '-a', 'logged', '-n', 'lots')).err).toMatch(/--num must be a whole number/);
  });

  it('adds, lists and removes drains', async () => {
    const url = `syslog://127.0.0.1:${receiverPort}`;
    expect((await berth('drains', '-a', 'logged')).out).toContain('logged has no drains.');
    const added = await berth('drains:add', url, '-a', 'logged');
    expect(added.code).toBe(0);
    expect(added.out).toContain(`Successfully added drain ${url}`);
    const list = await berth('drains', '-a', 'logged');
    expect(list.out).toMatch(new RegExp(`^=== Drains\\n${url.replace(/[./]/g, '\\$&')} \\(d\\.[0-9a-f-]{36}\\)\\n$`));
    const json = JSON.parse((await berth('drains', '-a', 'logged', '--json')).out) as { id: string; url: string; addon: null }[];
    expect(json).toMatchObject([{ url, addon: null }]);
    const bad = await berth('drains:add', 'https://example.com/logs', '-a', 'logged');
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/only syslog:\/\/host:port .* supported.*\(invalid_params\)/);
    const removed = await berth('drains:remove', json[0]!.id, '-a', 'logged');
    expect(removed.out).toContain(`Successfully removed drain ${url}`);
    expect((await berth('drains', '-a', 'logged')).out).toContain('logged has no drains.');
  });
});
