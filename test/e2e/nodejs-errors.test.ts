import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildLog, nodeHarness, type NodeHarness, type Push } from '../support/nodejs-fixtures.js';

/**
 * Issue 14, end to end: the failures Heroku explains, each pushed with `git push` to a real
 * `berth up`. Every one is refused (no release, the ref unchanged), with one title line and the
 * fix, not npm's usage text or a stack trace of the buildpack's own. The apps are pushed at once.
 */
let h: NodeHarness;
const pushes = new Map<string, Push>();
const before = new Map<string, number[]>();

const APPS: { app: string; fixture: string; config?: Record<string, string> }[] = [
  { app: 'bad-json', fixture: 'err-bad-json' },
  { app: 'lock-sync', fixture: 'err-lock-sync' },
  { app: 'not-in-registry', fixture: 'err-404' },
  { app: 'openssl', fixture: 'err-openssl' },
  { app: 'heap', fixture: 'err-oom', config: { NODE_OPTIONS: '--max-old-space-size=16' } },
  { app: 'exit-three', fixture: 'err-build-exit' },
  { app: 'two-locks', fixture: 'err-two-locks' },
  { app: 'pm-mismatch', fixture: 'err-pm-mismatch' },
];

beforeAll(async () => {
  h = await nodeHarness('nodeerr');
  const repos = await Promise.all(APPS.map((a) => h.app(a.app, a.fixture, a.config)));
  // Setting config vars makes a release of its own: count from here.
  for (const a of APPS) before.set(a.app, await h.releases(a.app));
  const results = await Promise.all(repos.map((r) => h.push(r)));
  for (const [i, a] of APPS.entries()) pushes.set(a.app, results[i]!);
}, 240_000);
afterAll(async () => {
  await h?.stop();
});

/** The failed push's log, after the checks every failure shares. */
function failed(app: string): string {
  const p = pushes.get(app);
  if (!p) throw new Error(`${app} was not pushed`);
  const log = buildLog(p);
  expect(p.code, log).not.toBe(0);
  expect(log).toMatch(new RegExp(`Push rejected, failed to compile ${app}`));
  expect(log).toMatch(/pre-receive hook declined/);
  // No npm usage text, no stack trace from the buildpack itself.
  expect(log).not.toMatch(/^npm (error|ERR!) +npm ci can only install/m);
  expect(log).not.toMatch(/^\s+at .*\(\/(berth|app)\/.*\.(js|cjs|ts):\d+:\d+\)$/m);
  return log;
}

/** A ` !     ` line matching `title`, then (later) one matching `fix`. */
function explained(log: string, title: RegExp, fix: RegExp): void {
  const lines = log.split('\n');
  const t = lines.findIndex((l) => l.startsWith(' !     ') && title.test(l));
  expect(t, `no " !     " line matching ${String(title)}:\n${log}`).toBeGreaterThanOrEqual(0);
  expect(lines.slice(t + 1).some((l) => fix.test(l)), `no fix line matching ${String(fix)} after the title:\n${log}`).toBe(true);
}

describe('errors a person can act on', () => {
  it('unparseable package.json', () => {
    const log = failed('bad-json');
    expect(log).toMatch(/package\.json/);
    expect(log).toMatch(/(parse|valid JSON)/i);
    expect(log).not.toMatch(/-----> Installing dependencies/);
  });

  it('a lockfile out of sync with package.json', () => {
    explained(failed('lock-sync'), /package-lock\.json is out of sync with package\.json/, /Run `npm install` locally/);
  });

  it('a dependency that is not in the registry', () => {
    explained(failed('not-in-registry'), /A dependency is not in the registry: .*@berth-e2e-absent\/no-such-package/, /./);
  });

  it('the OpenSSL 3 legacy-algorithm error', () => {
    explained(failed('openssl'), /OpenSSL 3.*ERR_OSSL_EVP_UNSUPPORTED/, /--openssl-legacy-provider/);
  });

  it('the build running out of heap memory', () => {
    explained(failed('heap'), /Node ran out of JavaScript heap memory in the build script \(NODE_OPTIONS=--max-old-space-size=16\)/, /--max-old-space-size=<MB>/);
  });

  it('a build script exiting 3 names the script and its exit code', () => {
    const log = failed('exit-three');
    expect(log).toMatch(/fixture-build: failing on purpose/);
    explained(log, /The build script failed \(exit 3\)\./, /npm run build/);
  });

  it('two lockfiles', () => {
    const log = failed('two-locks');
    expect(log).toMatch(/Multiple lockfiles found: package-lock\.json, yarn\.lock/);
    expect(log).toMatch(/git rm yarn\.lock/);
    expect(log).toMatch(/git rm package-lock\.json/);
    expect(log).not.toMatch(/-----> Installing dependencies/);
  });

  it('packageManager disagreeing with the lockfile', () => {
    const log = failed('pm-mismatch');
    expect(log).toMatch(/yarn\.lock is a Yarn lockfile, but package\.json says "packageManager": "pnpm@10\.34\.8"/);
    expect(log).toMatch(/To fix/);
    expect(log).not.toMatch(/-----> Installing dependencies/);
  });

  it('no failed build made a release', async () => {
    for (const { app } of APPS) expect(await h.releases(app), app).toEqual(before.get(app));
  });
});
