import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildLog, inOrder, nodeHarness, type NodeHarness, type Push } from '../support/nodejs-fixtures.js';

/**
 * Issue 14, end to end: Heroku's build rules through `git push` — heroku-prebuild before the
 * install, heroku-postbuild instead of build (an empty one suppresses build), heroku-cleanup after
 * pruning; devDependencies pruned only when NODE_ENV is production and NPM_CONFIG_PRODUCTION does
 * not say otherwise (checked in the slug itself); .slugignore applied before the build. The apps
 * are pushed at once (builds queue per app only) and not kept running.
 */
let h: NodeHarness;
const pushes = new Map<string, Push>();

const APPS: { app: string; fixture: string; config?: Record<string, string> }[] = [
  { app: 'hooks-post', fixture: 'hooks-postbuild' },
  { app: 'hooks-empty', fixture: 'hooks-empty-postbuild' },
  { app: 'prune-default', fixture: 'prune' },
  { app: 'prune-npm-false', fixture: 'prune', config: { NPM_CONFIG_PRODUCTION: 'false' } },
  { app: 'prune-staging', fixture: 'prune', config: { NODE_ENV: 'staging' } },
  { app: 'slugignored', fixture: 'slugignore' },
];

beforeAll(async () => {
  h = await nodeHarness('noderules');
  const repos = await Promise.all(APPS.map((a) => h.app(a.app, a.fixture, a.config)));
  const results = await Promise.all(repos.map((r) => h.push(r)));
  for (const [i, a] of APPS.entries()) pushes.set(a.app, results[i]!);
  // Only the output and the slugs matter here: two shared cores need no six idle dynos.
  await Promise.all(APPS.filter((a) => results[APPS.indexOf(a)]!.code === 0).map((a) => h.idle(a.app)));
}, 240_000);
afterAll(async () => {
  await h?.stop();
});

function logOf(app: string): string {
  const p = pushes.get(app);
  if (!p) throw new Error(`${app} was not pushed`);
  const log = buildLog(p);
  expect(p.code, log).toBe(0);
  return log;
}

const ordered = (log: string, patterns: RegExp[]): void => expect(inOrder(log, patterns).join('\n'), log).not.toMatch(/MISSING/);

describe('build hooks', () => {
  it('heroku-prebuild runs before the install, heroku-postbuild instead of build', () => {
    const log = logOf('hooks-post');
    ordered(log, [
      /^-----> Prebuild/,
      /Running heroku-prebuild/,
      /fixture-hook: heroku-prebuild ran, node_modules present: no/,
      /^-----> Installing dependencies/,
      /^-----> Build/,
      /Running heroku-postbuild/,
      /fixture-hook: heroku-postbuild ran, ms installed: yes/,
    ]);
    expect(log).not.toMatch(/fixture-hook: build ran/);
  });

  it('an empty heroku-postbuild suppresses build', () => {
    const log = logOf('hooks-empty');
    ordered(log, [/^-----> Build/, /Running heroku-postbuild \(empty: nothing to run\)/]);
    expect(log).not.toMatch(/fixture-hook: build ran/);
    expect(log).not.toMatch(/Running build/);
  });

  it('heroku-cleanup runs after pruning and sees the devDependency gone', () => {
    const log = logOf('prune-default');
    ordered(log, [/fixture-build: is-number present: yes/, /^-----> Pruning devDependencies/, /^-----> Cleanup/, /Running heroku-cleanup/, /fixture-cleanup: is-number present: no/]);
  });
});

describe('pruning devDependencies', () => {
  it('NODE_ENV defaults to production: the devDependency is not in the slug', async () => {
    const log = logOf('prune-default');
    expect(log).toMatch(/^ +NODE_ENV=production$/m);
    const files = await h.slugFiles('prune-default');
    expect(files).toContain('node_modules/ms/package.json');
    expect(files.filter((f) => f.startsWith('node_modules/is-number'))).toEqual([]);
  });

  it('NPM_CONFIG_PRODUCTION=false keeps it', async () => {
    const log = logOf('prune-npm-false');
    ordered(log, [/^-----> Pruning devDependencies/, /Skipping because NPM_CONFIG_PRODUCTION is 'false'/, /fixture-cleanup: is-number present: yes/]);
    expect(await h.slugFiles('prune-npm-false')).toContain('node_modules/is-number/package.json');
  });

  it('NODE_ENV=staging keeps it', async () => {
    const log = logOf('prune-staging');
    expect(log).toMatch(/^ +NODE_ENV=staging$/m);
    ordered(log, [/^-----> Pruning devDependencies/, /Skipping because NODE_ENV is not 'production'/, /fixture-cleanup: is-number present: yes/]);
    expect(await h.slugFiles('prune-staging')).toContain('node_modules/is-number/package.json');
  });
});

describe('.slugignore', () => {
  it('removes the listed files before the build, and they are not in the slug', async () => {
    const log = logOf('slugignored');
    expect(log).toMatch(/fixture-build: docs present: no, big\.bin present: no, kept\.txt present: yes/);
    const files = await h.slugFiles('slugignored');
    expect(files).toContain('assets/kept.txt');
    expect(files.filter((f) => f.startsWith('docs') || f.endsWith('.bin'))).toEqual([]);
  });
});

describe('the runtime in the slug', () => {
  it('carries Node at .heroku/node with .profile.d putting it on PATH', async () => {
    const files = await h.slugFiles('prune-default');
    expect(files).toContain('.heroku/node/bin/node');
    expect(files).toContain('.profile.d/nodejs.sh');
  });
});
