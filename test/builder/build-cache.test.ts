import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Builder } from '../../src/builder/builder.js';
import { BuildCaches } from '../../src/builder/caches.js';
import { createServices, type Services } from '../../src/controller/index.js';
import { keys } from '../../src/domain/keys.js';
import { createLogger } from '../../src/domain/log.js';
import { OverlayNetwork } from '../../src/network/index.js';
import { defaultSourceAddress } from '../../src/node/network.js';
import { openStore, type Store } from '../../src/store/index.js';
import { testNetwork } from '../support/network.js';
import { testSandbox } from '../support/sandbox.js';

/**
 * Build caches live outside any volume: a restore that fails leaves nothing in the workspace, and
 * a destroyed app's cache leaves the disk of every server that built it.
 */

const log = createLogger('test', { level: 'silent' });
let dir: string;
let store: Store;
let services: Services;
let network: OverlayNetwork;
const net = testNetwork();

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-build-cache-'));
  chmodSync(dir, 0o755);
  store = openStore('memory://');
  services = createServices(store, log, { domain: 'berth.test', apiUrl: 'http://api.berth.test' });
  mkdirSync(join(dir, 'data', 'network'), { recursive: true, mode: 0o711 });
  network = new OverlayNetwork({ store, log, machine: 'build-cache', dir: join(dir, 'data', 'network'), name: net.name, publicIp: (await defaultSourceAddress()) ?? '127.0.0.1', request: { network: net.overlay, backend: net.backend }, publicPorts: [], internalAddresses: [] });
  await network.start();
}, 60_000);
afterAll(async () => {
  await network?.stop();
  await services?.close();
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A saved cache of real (not sparse) bytes, readable by the app's uid as saveCache leaves it. */
function savedCache(workDir: string, appId: string, files: Record<string, number>): string {
  const cache = join(workDir, 'cache');
  mkdirSync(cache, { recursive: true, mode: 0o711 });
  const saved = join(cache, appId);
  mkdirSync(saved, { mode: 0o755 });
  for (const [name, mb] of Object.entries(files)) execFileSync('dd', ['if=/dev/urandom', `of=${join(saved, name)}`, 'bs=1M', `count=${mb}`, 'status=none']);
  execFileSync('chmod', ['-R', 'a+rX', saved]);
  return saved;
}

describe('build caches', () => {
  it('a restore that runs out of room leaves the cache dir empty, not half copied', async () => {
    const builder = new Builder({ store, log, dataDir: join(dir, 'small'), sandbox: testSandbox(), network, diskBytes: 24 * 1024 * 1024 });
    const appId = '6f1d3c1e-0000-4000-8000-000000000001';
    await store.put(keys.app(appId), JSON.stringify({ id: appId, name: 'cache-small' }));
    // 30 MB in files of 6 MB: some fit in the 24 MiB volume, the rest fails with ENOSPC.
    savedCache(builder.workDir, appId, { a: 6, b: 6, c: 6, d: 6, e: 6 });
    const ws = await builder.workspace(appId);
    try {
      expect(readdirSync(ws.cacheDir)).toEqual([]);
      // Still the app's to write: the build gets an empty cache, as on a first build.
      writeFileSync(join(ws.cacheDir, 'probe'), 'x');
    } finally {
      await builder.releaseWorkspace(ws.root);
    }
  }, 60_000);

  it("a destroyed app's cache is removed; a renamed app's stays; caches of apps gone while the server was down go at start", async () => {
    const work = join(dir, 'caches');
    const user = (await services.users.create('cache@example.com')).user;
    const doomed = await services.apps.create(user, 'cache-doomed');
    const renamed = await services.apps.create(user, 'cache-renamed');
    const offline = await services.apps.create(user, 'cache-offline');
    const kept = await services.apps.create(user, 'cache-kept');
    for (const app of [doomed, renamed, offline, kept]) savedCache(work, app.id, { a: 1 });
    // Destroyed while this server was not running.
    await services.apps.destroy(await services.apps.resolve(user, offline.id));
    const caches = new BuildCaches({ store, log, dir: join(work, 'cache') });
    await caches.start();
    try {
      await caches.settle();
      expect(existsSync(join(work, 'cache', offline.id))).toBe(false);
      await services.apps.destroy(await services.apps.resolve(user, doomed.id));
      await services.apps.rename(await services.apps.resolve(user, renamed.id), 'cache-renamed-2');
      const deadline = Date.now() + 10_000;
      while (existsSync(join(work, 'cache', doomed.id)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      await caches.settle();
      expect(existsSync(join(work, 'cache', doomed.id))).toBe(false);
      expect(existsSync(join(work, 'cache', renamed.id))).toBe(true);
      expect(existsSync(join(work, 'cache', kept.id))).toBe(true);
    } finally {
      await caches.stop();
    }
  }, 30_000);
});
