import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { HttpPackageRegistry, Toolchains, type PackageRegistry, type Packument } from '../../../src/builder/toolchains/index.js';
import { makeApp, silentLog } from './fixtures.js';

const run = promisify(execFile);
const cleanup: string[] = [];
afterAll(() => {
  for (const d of cleanup) rmSync(d, { recursive: true, force: true });
});

/** The real registry, counting tarball downloads (what a cache hit must not do). */
class CountingRegistry implements PackageRegistry {
  readonly tarballs: string[] = [];
  constructor(private readonly inner: PackageRegistry) {}
  packument(name: string): Promise<Packument | undefined> {
    return this.inner.packument(name);
  }
  tarball(url: string, maxBytes: number): Promise<Readable> {
    this.tarballs.push(url);
    return this.inner.tarball(url, maxBytes);
  }
}

describe('against the real npm registry', () => {
  it('installs Node 22 and Yarn 4 for a Berry app, then serves the second build from the cache', { timeout: 90_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tc-real-'));
    const app = makeApp({ 'package.json': { name: 'app', engines: { node: '22.x' }, packageManager: 'yarn@4.5.0' }, 'yarn.lock': '__metadata:\n  version: 8\n  cacheKey: 10c0\n' });
    cleanup.push(dir, app);
    const registry = new CountingRegistry(new HttpPackageRegistry('https://registry.npmjs.org'));
    const t = new Toolchains({ dir, registry: 'https://registry.npmjs.org', log: silentLog, registryClient: registry });
    try {
      const cold = Date.now();
      const first = await t.prepare(app, {});
      const coldMs = Date.now() - cold;
      first.release();
      expect(first.env.BERTH_NODE_VERSION).toMatch(/^22\.\d+\.\d+$/);
      expect(first.env).toMatchObject({ BERTH_PACKAGE_MANAGER: 'yarn', BERTH_YARN_VERSION: '4.5.0', BERTH_YARN_BERRY: 'true', BERTH_YARN_DIR: '/berth/toolchains/yarnpkg-cli-dist/4.5.0' });
      expect(first.env.BERTH_NPM_VERSION).toMatch(/^10\./);
      expect(registry.tarballs).toHaveLength(3);

      const [nodeVersion] = readdirSync(join(dir, 'node'));
      expect(nodeVersion).toBe(first.env.BERTH_NODE_VERSION);
      const node = join(dir, 'node', nodeVersion!, 'bin', 'node');
      expect((await run(node, ['--version'])).stdout.trim()).toBe(`v${nodeVersion}`);
      const yarnJs = join(dir, 'yarnpkg-cli-dist', '4.5.0', 'bin', 'yarn.js');
      expect(existsSync(yarnJs)).toBe(true);
      expect((await run(node, [yarnJs, '--version'], { cwd: tmpdir() })).stdout.trim()).toBe('4.5.0');
      expect(existsSync(join(dir, 'npm', first.env.BERTH_NPM_VERSION!, 'bin', 'npm-cli.js'))).toBe(true);

      const warm = Date.now();
      const second = await t.prepare(app, {});
      const warmMs = Date.now() - warm;
      second.release();
      expect(second.env).toEqual(first.env);
      expect(registry.tarballs).toHaveLength(3);
      // Packuments are cached for minutes and the files are in place: no network, no unpacking.
      expect(warmMs).toBeLessThan(500);
      console.log(`toolchains: cold prepare ${coldMs} ms, warm ${warmMs} ms`);
    } finally {
      t.close();
    }
  });
});

describe('HttpPackageRegistry', () => {
  let server: Server | undefined;
  afterAll(() => server?.close());

  async function serve(handler: Parameters<typeof createServer>[1]): Promise<string> {
    server = createServer(handler);
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  it('asks for abbreviated metadata, encodes scoped names, keeps answers for a while, and maps 404 to undefined', async () => {
    const seen: Array<{ url: string; accept: string }> = [];
    const base = await serve((req, res) => {
      seen.push({ url: req.url!, accept: String(req.headers.accept) });
      if (req.url === '/@yarnpkg%2fcli-dist') {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ name: '@yarnpkg/cli-dist', 'dist-tags': { latest: '4.5.0' }, versions: { '4.5.0': { version: '4.5.0', dist: { tarball: 'https://x/y.tgz', integrity: 'sha512-abc' } }, '4.6.0': { version: '4.6.0', dist: { tarball: 'https://x/z.tgz' } } } }));
      } else {
        res.statusCode = 404;
        res.end('{}');
      }
    });
    const r = new HttpPackageRegistry(base);
    const p = await r.packument('@yarnpkg/cli-dist');
    expect(p?.distTags.latest).toBe('4.5.0');
    // A version without an integrity is not offered at all.
    expect([...p!.versions.keys()]).toEqual(['4.5.0']);
    await r.packument('@yarnpkg/cli-dist');
    expect(seen).toHaveLength(1);
    expect(seen[0]!.accept).toContain('application/vnd.npm.install-v1+json');
    expect(await r.packument('nope')).toBeUndefined();
  }, 20_000);

  it('stops a tarball past its size cap', async () => {
    const base = await serve((_req, res) => {
      res.write(Buffer.alloc(64 * 1024));
      res.end(Buffer.alloc(64 * 1024));
    });
    const r = new HttpPackageRegistry(base);
    const stream = await r.tarball(`${base}/big.tgz`, 100 * 1024);
    const read = async (): Promise<number> => {
      let n = 0;
      for await (const c of stream) n += (c as Buffer).length;
      return n;
    };
    await expect(read()).rejects.toThrow(/larger than/);
  }, 20_000);
});
