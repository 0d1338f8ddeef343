import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCheckFields } from '../../../src/cli/commands/healthchecks/set.js';
import { startController, type Controller } from '../../../src/controller/index.js';
import { Users } from '../../../src/controller/services/users.js';
import { createLogger } from '../../../src/domain/log.js';
import { openStore, type Store } from '../../../src/store/index.js';
import { runCli, type CliResult } from '../../support/cli.js';
import { freePort } from '../../support/ports.js';

let store: Store;
let controller: Controller;
let dir: string;
let token: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-cli-hc-'));
  store = openStore('memory://');
  const port = await freePort();
  controller = await startController({ store, log: createLogger('test', { level: 'silent' }), host: '127.0.0.1', port, settings: { domain: 'berth.test', apiUrl: `http://127.0.0.1:${port}` } });
  token = (await new Users(store).create('alice@example.com')).token;
});
afterAll(async () => {
  await controller.close();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

const berth = (...args: string[]): Promise<CliResult> => runCli({ env: { BERTH_API_URL: controller.url, BERTH_API_KEY: token }, cwd: dir, home: dir }, args);

describe('berth healthchecks', () => {
  it('sets, shows and unsets a check', async () => {
    expect((await berth('apps:create', 'shop')).code).toBe(0);
    expect((await berth('healthchecks', '-a', 'shop')).out).toContain('No health checks');
    const set = await berth('healthchecks:set', 'web', 'path=/health', 'attempts=4', 'type=liveness', '-a', 'shop');
    expect(set.code).toBe(0);
    expect(set.out).toMatch(/web\s+liveness\s+\/health\s+4\s+5s\s+5s\s+0s\s+healthchecks:set/);
    expect((await berth('healthchecks', '-a', 'shop', '--json')).out).toContain('"path": "/health"');
    const bad = await berth('healthchecks:set', 'web', 'path=nope', '-a', 'shop');
    expect(bad.code).toBe(1);
    expect(bad.err).toContain('path must start with /');
    const unset = await berth('healthchecks:unset', 'web', 'liveness', '-a', 'shop');
    expect(unset.out).toContain('No health checks');
  });

  it('parses FIELD=VALUE pairs, numbers as numbers, and refuses anything else before calling the API', () => {
    expect(parseCheckFields(['path=/h?x=1', 'timeout=2', 'content=a=b'])).toEqual({ path: '/h?x=1', timeout: 2, content: 'a=b' });
    expect(() => parseCheckFields(['attempts=3'])).toThrow('path=/health');
    expect(() => parseCheckFields(['path=/', 'attempts=lots'])).toThrow('whole number');
    expect(() => parseCheckFields(['path=/', 'port=8080'])).toThrow('FIELD one of');
    expect(() => parseCheckFields(['/health'])).toThrow('FIELD one of');
  });
});
