import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildpackHarness, has, release, run, steps, trace, type App } from '../support/nodejs-buildpack.js';

/**
 * The built-in Node.js buildpack's shell run directly (test/support/nodejs-buildpack.ts): Heroku's
 * hooks and pruning, the vendored runtime, and the cache between builds. What the app gives it
 * (package.json, config vars, npm versions) and the errors it explains: nodejs-buildpack-inputs.
 */
const h = buildpackHarness();

describe('nodejs buildpack: hooks, runtime and pruning', () => {
  let hooks: App;

  beforeAll(async () => {
    // Each hook appends its name; heroku-cleanup also records whether devDependencies survived.
    hooks = await h.makeApp('hooks', {
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
    const b = await h.build(hooks);
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
    const dev = await h.build(hooks, { NODE_ENV: 'development' });
    expect(dev.code, dev.out).toBe(0);
    expect(dev.out).toContain("Skipping because NODE_ENV is not 'production'");
    expect(has(dev.dir, 'is-number')).toBe(true);
    const npmProd = await h.build(hooks, { NPM_CONFIG_PRODUCTION: 'false' });
    expect(npmProd.code, npmProd.out).toBe(0);
    expect(npmProd.out).toContain("Skipping because NPM_CONFIG_PRODUCTION is 'false'");
    expect(has(npmProd.dir, 'is-number')).toBe(true);
  });

  it('an empty heroku-postbuild still replaces build; no start warns and gets no web process', async () => {
    const app = await h.makeApp('empty-postbuild', { scripts: { build: 'echo build >> trace.txt', 'heroku-postbuild': '' } });
    const b = await h.build(app);
    expect(b.code, b.out).toBe(0);
    expect(existsSync(join(b.dir, 'trace.txt'))).toBe(false);
    expect(b.out).toContain('Running heroku-postbuild (empty: nothing to run)');
    expect(b.out).toMatch(/^ ! {5}This app has no way to start/m);
    expect((await release(b.dir)).out).not.toContain('web:');
  });

  it('says so in one line when the platform gave it no Node', async () => {
    const b = await h.build(hooks, {}, { BERTH_NODE_DIR: undefined });
    expect(b.code).toBe(1);
    expect(b.out.trim().split('\n')).toHaveLength(1);
    expect(b.out).toContain("only in Berth's builder");
  });
});

describe('nodejs buildpack: cache', () => {
  it('restores node_modules and skips the install when dependencies are unchanged, reinstalls when they change', async () => {
    const app = await h.makeApp('cache', {
      scripts: { build: 'node -e "console.log(require(\'fs\').existsSync(\'.mycache/seen\') ? \'CACHE-DIR-WARM\' : \'CACHE-DIR-COLD\')" && mkdir -p .mycache && touch .mycache/seen', start: 'node index.js' },
      dependencies: { ms: '2.1.3' },
      devDependencies: { 'is-number': '7.0.0' },
      cacheDirectories: ['node_modules', '.mycache'],
    }, { 'index.js': '1\n' });
    const cold = await h.build(app);
    expect(cold.code, cold.out).toBe(0);
    expect(cold.out).toContain('Installing node modules');
    expect(cold.out).toContain('CACHE-DIR-COLD');
    expect(cold.out).toMatch(/Saving cacheDirectories \(package\.json\):\n {7}- node_modules\n {7}- \.mycache/);
    expect(readdirSync(join(app.cache, 'node')).filter((f) => f.startsWith('modules-'))).toHaveLength(1);

    // Only app code changed: node_modules comes from the cache, the install is skipped.
    writeFileSync(join(app.src, 'index.js'), '2\n');
    const warm = await h.build(app);
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
    const changed = await h.build(app);
    expect(changed.code, changed.out).toBe(0);
    expect(changed.out).toContain('- node_modules (dependencies changed - skipping)');
    expect(changed.out).toContain('Installing node modules');
    expect(has(changed.dir, 'ms')).toBe(true);

    // NODE_MODULES_CACHE=false: nothing restored, and the cache is emptied.
    const off = await h.build(app, { NODE_MODULES_CACHE: 'false' });
    expect(off.code, off.out).toBe(0);
    expect(off.out).toContain('Caching has been disabled because NODE_MODULES_CACHE=false');
    expect(off.out).toContain('Installing node modules');
    expect(off.out).not.toContain('Caching build');
    expect(readdirSync(join(app.cache, 'node'))).toEqual([]);
  });
});

describe('nodejs buildpack: what install scripts leave outside node_modules, and the config in the cache key', () => {
  it('a warm push keeps pushed node_modules, ignores package.json files the build writes, has headers, and notices node_modules removed by heroku-prebuild', async () => {
    const app = await h.makeApp('snapshot-edges', {
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
    const cold = await h.build(app);
    expect(cold.code, cold.out).toBe(0);
    expect(cold.out).toContain('HEADERS-OK');

    writeFileSync(join(app.src, 'vendor', 'node_modules', 'legacy', 'index.js'), 'v2\n');
    const warm = await h.build(app);
    expect(warm.code, warm.out).toBe(0);
    expect(warm.out).toMatch(/Skipping install: node_modules restored from the cache/);
    expect(warm.out).toContain('HEADERS-OK');
    // The pushed copy, not the one the first build saw.
    expect(readFileSync(join(warm.dir, 'vendor', 'node_modules', 'legacy', 'index.js'), 'utf8')).toBe('v2\n');
    expect(has(warm.dir, 'ms')).toBe(true);

    writeFileSync(join(app.src, 'wipe'), '');
    const wiped = await h.build(app);
    expect(wiped.code, wiped.out).toBe(0);
    expect(wiped.out).toContain('Installing again: node_modules is gone');
    expect(has(wiped.dir, 'ms')).toBe(true);
  });

  it('keeps .cache written by a dependency\'s install script on a warm push; a config change reinstalls', async () => {
    // A local tarball dependency whose install script "downloads a browser" to $HOME/.cache, as
    // Puppeteer, Playwright and Cypress do.
    const pkgDir = join(h.work, 'fake-browser-pkg', 'package');
    mkdirSync(pkgDir, { recursive: true });
    writeFileSync(join(pkgDir, 'package.json'), JSON.stringify({
      name: 'fake-browser',
      version: '1.0.0',
      scripts: { install: 'node -e "const p = require(\'path\').join(process.env.HOME, \'.cache/fake-browser\'); require(\'fs\').mkdirSync(p, { recursive: true }); require(\'fs\').writeFileSync(p + \'/chrome\', \'binary\')"' },
    }));
    const src = join(h.work, 'browser', 'src');
    mkdirSync(src, { recursive: true });
    await run('tar', ['-czf', join(src, 'fake-browser-1.0.0.tgz'), '-C', join(pkgDir, '..'), 'package'], { cwd: src, env: { PATH: '/usr/bin:/bin' } });
    const app = await h.makeApp('browser', { dependencies: { 'fake-browser': 'file:fake-browser-1.0.0.tgz', ms: '2.1.3' } }, { 'index.js': '1\n' });
    const browser = (dir: string): boolean => existsSync(join(dir, '.cache/fake-browser/chrome'));

    const cold = await h.build(app);
    expect(cold.code, cold.out).toBe(0);
    expect(browser(cold.dir)).toBe(true);
    expect(cold.out).toContain('- .cache (written while installing dependencies)');

    writeFileSync(join(app.src, 'index.js'), '2\n');
    const warm = await h.build(app);
    expect(warm.code, warm.out).toBe(0);
    expect(warm.out).toMatch(/Skipping install: node_modules restored from the cache/);
    expect(browser(warm.dir)).toBe(true);

    // Any config var may change what an install script does: a new one means a full install.
    const configured = await h.build(app, { PUPPETEER_SKIP_DOWNLOAD: 'true' });
    expect(configured.code, configured.out).toBe(0);
    expect(configured.out).toContain('- node_modules (dependencies changed - skipping)');
    expect(configured.out).toContain('Installing node modules');
    expect(browser(configured.dir)).toBe(true);
  });
});
