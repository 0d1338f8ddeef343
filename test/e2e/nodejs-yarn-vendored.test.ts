import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Toolchains, TOOLCHAINS_MOUNT } from '../../src/builder/toolchains/index.js';
import { createLogger } from '../../src/domain/log.js';
import { TEST_TOOLCHAIN_DIR } from '../support/berth-process.js';
import { buildLog, FIXTURES, inOrder, nodeHarness, type NodeHarness } from '../support/nodejs-fixtures.js';

/**
 * Issue 14, end to end: a Yarn 2+ app as many are committed — its own Yarn release vendored under
 * .yarn/releases and named by `yarnPath` (no packageManager field), and its package cache checked in
 * (zero-install, PnP). The release is Yarn 4 from the registry, written into the repository by the
 * test rather than committed as a 2.7 MB fixture.
 */
let h: NodeHarness;

beforeAll(async () => {
  h = await nodeHarness('yarnvend');
}, 60_000);
afterAll(async () => {
  await h?.stop();
});

/** Yarn 4's single-file release (bin/yarn.js of @yarnpkg/cli-dist), from the machine's toolchain cache. */
async function yarnRelease(): Promise<{ path: string; version: string }> {
  const toolchains = new Toolchains({ dir: TEST_TOOLCHAIN_DIR, log: createLogger('test', { level: 'silent' }) });
  const plan = await toolchains.prepare(join(FIXTURES, 'yarn4-pnp'), {});
  plan.release();
  const dir = plan.env.BERTH_YARN_DIR ?? '';
  expect(dir.startsWith(`${TOOLCHAINS_MOUNT}/`)).toBe(true);
  return { path: join(TEST_TOOLCHAIN_DIR, dir.slice(TOOLCHAINS_MOUNT.length + 1), 'bin', 'yarn.js'), version: plan.env.BERTH_YARN_VERSION ?? '' };
}

describe('Yarn 2+ vendored', () => {
  it('runs the yarnPath release through Yarn 1 with the checked-in cache (--immutable-cache), and serves the locked version', async () => {
    const release = await yarnRelease();
    const repo = await h.app('yarn-vendored', 'yarn4-pnp');
    const pkg = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as Record<string, unknown>;
    delete pkg.packageManager;
    writeFileSync(join(repo, 'package.json'), `${JSON.stringify(pkg, null, 2)}\n`);
    const vendored = `.yarn/releases/yarn-${release.version}.cjs`;
    mkdirSync(join(repo, '.yarn', 'releases'), { recursive: true });
    copyFileSync(release.path, join(repo, vendored));
    writeFileSync(join(repo, '.yarnrc.yml'), `nodeLinker: pnp\nyarnPath: ${vendored}\nenableGlobalCache: false\nenableTelemetry: false\n`);
    // Zero-install: the cache the lockfile names, made here and committed with the app.
    execFileSync(process.execPath, [join(repo, vendored), 'install', '--immutable'], { cwd: repo, env: { ...process.env, HOME: repo, YARN_ENABLE_PROGRESS_BARS: 'false' }, stdio: 'pipe', timeout: 120_000 });
    expect(readdirSync(join(repo, '.yarn', 'cache')).some((f) => f.startsWith('lodash-'))).toBe(true);
    expect(existsSync(join(repo, '.pnp.cjs'))).toBe(true);
    // Zero-install commits the cache and the PnP files the fixture's .gitignore leaves out.
    writeFileSync(join(repo, '.gitignore'), 'node_modules\n.yarn/install-state.gz\n');
    await h.change(repo, {});

    const push = await h.push(repo);
    const log = buildLog(push);
    expect(push.code, log).toBe(0);
    expect(log).not.toMatch(/packageManager \(package\.json\)/);
    expect(inOrder(log, [/^-----> Installing binaries/, /yarn 1\.22\.\d+/i, /vendored at \.yarn\/releases\/yarn-4\.\d+\.\d+\.cjs/, /^-----> Installing dependencies/, /Running 'yarn install' with yarn\.lock/, /yarn cache is checked into source control/]).join('\n'), log).not.toMatch(/MISSING/);
    expect(JSON.parse(await h.serve('yarn-vendored'))).toMatchObject({ lodash: '4.17.15', node: expect.stringMatching(/^v24\./) });

    // The checked-in cache must match the lockfile exactly: a tampered zip is refused.
    const zip = readdirSync(join(repo, '.yarn', 'cache')).find((f) => f.startsWith('lodash-')) as string;
    writeFileSync(join(repo, '.yarn', 'cache', zip), 'not a zip');
    await h.change(repo, {});
    const bad = await h.push(repo);
    expect(bad.code).not.toBe(0);
    expect(buildLog(bad)).toMatch(/^ ! {5}The checked-in Yarn cache does not match yarn\.lock \(lodash@npm:4\.17\.15\)\.$/m);
    expect(buildLog(bad)).toMatch(/Run `yarn install` locally, commit \.yarn\/cache and yarn\.lock together/);
    expect(buildLog(bad)).toMatch(/Push rejected, failed to compile yarn-vendored/);
  }, 240_000);
});
