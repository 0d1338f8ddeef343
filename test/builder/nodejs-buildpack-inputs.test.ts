import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BUILDPACK, buildpackHarness, release, run, steps, trace } from '../support/nodejs-buildpack.js';

/**
 * The built-in Node.js buildpack's shell run directly (test/support/nodejs-buildpack.ts), on what
 * the app gives it: package.json as written, config vars, npm's flags by version, and the
 * failures it turns into one line and a fix. Hooks, pruning and the cache: nodejs-buildpack.test.ts.
 */
const h = buildpackHarness();

describe('nodejs buildpack: package.json, config vars and lifecycle scripts', () => {
  it('reads a package.json saved with a UTF-8 byte order mark; fails loudly on one that is not JSON', async () => {
    const app = await h.makeAppNoLock('bom', {});
    const pkg = { name: 'bom', version: '1.0.0', scripts: { build: 'echo BOM-BUILD-RAN', start: 'node index.js' } };
    writeFileSync(join(app.src, 'package.json'), '\uFEFF' + JSON.stringify(pkg, null, 2));
    const b = await h.build(app);
    expect(b.code, b.out).toBe(0);
    expect(b.out).toContain('BOM-BUILD-RAN');
    expect(b.out).not.toMatch(/This app has no way to start/);
    expect((await release(b.dir)).out).toContain('web: npm start');

    // Berth's toolchain step refuses it before the buildpack runs; the buildpack must too.
    const broken = await h.makeAppNoLock('bad-json', {});
    writeFileSync(join(broken.src, 'package.json'), '{ "name": "bad-json", "scripts": { "start": "node index.js", } }');
    const bad = await h.build(broken, {}, {}, app.src);
    expect(bad.code).toBe(1);
    expect(bad.out).toMatch(/^ ! {5}package\.json is not valid JSON: .+$/m);
    expect(bad.out).toMatch(/^ ! {5}Make package\.json one valid JSON object/m);
    expect(steps(bad.out)).toEqual(['Node.js app detected']);
  });

  it('a config var named like one of the buildpack\'s variables (LOG_DIR, PM, CACHE_DIR) changes nothing of the build', async () => {
    const app = await h.makeAppNoLock('config-names', { scripts: { build: 'echo built' } }, { 'logs/keep.txt': 'app log\n' });
    const elsewhere = join(h.work, 'config-names', 'elsewhere');
    const b = await h.build(app, { LOG_DIR: '@BUILD_DIR@/logs', PM: 'yarn', CACHE_DIR: elsewhere, BP_DIR: '/nonexistent' });
    expect(b.code, b.out).toBe(0);
    expect(readdirSync(join(b.dir, 'logs'))).toEqual(['keep.txt']);
    expect(existsSync(join(app.cache, 'node/signature'))).toBe(true);
    expect(existsSync(elsewhere)).toBe(false);
  });

  it('an app with install lifecycle scripts installs on every push (each script once); prefers the package cache only with a lockfile', async () => {
    const append = (name: string): string => `node -e "require('fs').appendFileSync('trace.txt', '${name}\\n')"`;
    const prefer = 'node -e "console.log(\'PREFER-OFFLINE=\' + process.env.npm_config_prefer_offline)"';
    const app = await h.makeApp('lifecycle', {
      scripts: { preinstall: append('preinstall'), install: append('install'), postinstall: append('postinstall'), prepare: append('prepare'), build: prefer },
      dependencies: { ms: '2.1.3' },
    });
    const lifecycle = ['preinstall', 'install', 'postinstall', 'prepare'];
    const cold = await h.build(app);
    expect(cold.code, cold.out).toBe(0);
    expect(trace(cold.dir)).toEqual(lifecycle);
    expect(cold.out).toContain('PREFER-OFFLINE=true');
    // Their results may depend on more than the lockfile (patch-package, prisma's schema): the
    // snapshot is not reused, the install runs again from the warm package cache.
    const warm = await h.build(app);
    expect(warm.code, warm.out).toBe(0);
    expect(warm.out).toContain("Installing again: the app's packages have install scripts, which run on every install (from the warm package cache)");
    expect(warm.out).not.toMatch(/Skipping install/);
    expect(trace(warm.dir)).toEqual(lifecycle);

    // Without a lockfile npm resolves ranges: from the registry, not from cached metadata.
    const unlocked = await h.build(await h.makeAppNoLock('no-lock-offline', { scripts: { build: prefer } }));
    expect(unlocked.code, unlocked.out).toBe(0);
    expect(unlocked.out).toContain('PREFER-OFFLINE=undefined');
  });
});

describe('nodejs buildpack: npm\'s flags by version', () => {
  /** npm_install from lib/package_managers.sh with a fake npm that prints its arguments. */
  async function npmArgs(env: Record<string, string>, lockfile = true): Promise<string> {
    const dir = mkdtempSync(join(h.work, 'fake-npm-'));
    mkdirSync(join(dir, 'bin'));
    mkdirSync(join(dir, 'app'));
    writeFileSync(join(dir, 'app/package.json'), '{}');
    if (lockfile) writeFileSync(join(dir, 'app/package-lock.json'), '{}');
    writeFileSync(join(dir, 'bin/npm'), '#!/bin/sh\nif [ "$1" = --version ]; then echo 6.14.18; else echo "NPM-ARGS: $*"; fi\n', { mode: 0o755 });
    const script = [
      'set -eo pipefail',
      `source ${JSON.stringify(join(BUILDPACK, '../lib.sh'))}`,
      ...['output', 'failures', 'package_managers'].map((p) => `source ${JSON.stringify(join(BUILDPACK, `lib/${p}.sh`))}`),
      'LOG_DIR="$(mktemp -d)"; PM=npm; PREBUILD=false; BUILD_DIR="$PWD"',
      'npm_install',
      'rm -rf "$LOG_DIR"',
    ].join('\n');
    const r = await run('bash', ['-c', script], { cwd: join(dir, 'app'), env: { PATH: `${join(dir, 'bin')}:/usr/bin:/bin`, ...env } });
    expect(r.code, r.out).toBe(0);
    return r.out.split('\n').find((l) => l.includes('NPM-ARGS:'))?.trim() ?? '';
  }

  it('npm 6 gets --production=false (it ignores --include=dev); npm 7 and later --include=dev or --omit=dev', async () => {
    expect(await npmArgs({ BERTH_NPM_VERSION: '6.14.18', NODE_ENV: 'production' })).toContain('--production=false');
    expect(await npmArgs({ BERTH_NPM_VERSION: '6.14.18', NPM_CONFIG_PRODUCTION: 'true' })).toContain('--production=true');
    // No version from the platform: npm --version says.
    expect(await npmArgs({ NODE_ENV: 'production' })).toMatch(/^NPM-ARGS: ci .*--production=false/);
    const modern = await npmArgs({ BERTH_NPM_VERSION: '10.9.9', NODE_ENV: 'production' });
    expect(modern).toContain('--include=dev');
    expect(modern).not.toContain('--production');
    expect(await npmArgs({ BERTH_NPM_VERSION: '11.2.0', NPM_CONFIG_PRODUCTION: 'true' })).toContain('--omit=dev');
  });
});

describe('nodejs buildpack: errors a person can act on', () => {
  it('explains a lockfile out of sync without npm usage text', async () => {
    const app = await h.makeApp('lock', { dependencies: { ms: '2.1.3' } });
    const pkg = JSON.parse(readFileSync(join(app.src, 'package.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(app.src, 'package.json'), JSON.stringify({ ...pkg, dependencies: { ms: '2.1.2' } }));
    const b = await h.build(app);
    expect(b.code).toBe(1);
    expect(b.out).toMatch(/^ ! {5}package-lock\.json is out of sync with package\.json/m);
    expect(b.out).toContain('Run `npm install` locally');
    expect(b.out).not.toContain('Usage:');
    expect(b.out).not.toContain('--install-strategy');
  });

  it('names a dependency missing from the registry (E404) and a range no version matches (ETARGET)', async () => {
    const missing = await h.build(await h.makeAppNoLock('e404', { dependencies: { 'berth-no-such-package-e404-x9q': '^1.0.0' } }));
    expect(missing.code).toBe(1);
    expect(missing.out).toMatch(/^ ! {5}A dependency is not in the registry: berth-no-such-package-e404-x9q@\^1\.0\.0\.$/m);
    const target = await h.build(await h.makeAppNoLock('etarget', { dependencies: { ms: '^99.0.0' } }));
    expect(target.code).toBe(1);
    expect(target.out).toMatch(/^ ! {5}No published version matches a dependency's range: ms@\^99\.0\.0\.$/m);
  });

  it('explains OpenSSL 3 (md4), a heap out of memory and a failed build script with its exit code', async () => {
    const md4 = await h.build(await h.makeAppNoLock('md4', { scripts: { build: 'node -e "require(\'crypto\').createHash(\'md4\')"' } }));
    expect(md4.code).toBe(1);
    expect(md4.out).toMatch(/^ ! {5}.*\(ERR_OSSL_EVP_UNSUPPORTED\)\.$/m);
    expect(md4.out).toContain('output.hashFunction');
    expect(md4.out).toContain('NODE_OPTIONS=--openssl-legacy-provider');

    const oom = await h.build(
      await h.makeAppNoLock('oom', { scripts: { 'heroku-postbuild': 'node -e "const a = []; for (;;) a.push(new Array(1e5).fill(Math.random()))"' } }),
      { NODE_OPTIONS: '--max-old-space-size=24' },
    );
    expect(oom.code).toBe(1);
    expect(oom.out).toMatch(/^ ! {5}Node ran out of JavaScript heap memory in the heroku-postbuild script \(NODE_OPTIONS=--max-old-space-size=24\)\.$/m);

    const failed = await h.build(await h.makeAppNoLock('failed', { scripts: { build: 'echo building; exit 2' } }));
    expect(failed.code).toBe(1);
    expect(failed.out).toMatch(/^ ! {5}The build script failed \(exit 2\)\.$/m);
    expect(steps(failed.out)).not.toContain('Caching build');
  });
});
