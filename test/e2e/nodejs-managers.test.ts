import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildLog, fixtureText, inOrder, nodeHarness, timingTable, type NodeHarness } from '../support/nodejs-fixtures.js';

/**
 * Issue 14, end to end through `git push` to a real `berth up`: one app per package manager (npm,
 * Yarn 1, Yarn 4 with PnP, pnpm with workspaces) is built with the package manager its lockfile
 * names, served through the router with the Node version and the dependency versions the
 * lockfile locked, and pushed again with only server.cjs changed: the second build reuses
 * node_modules. npm also shows the cache missing on a lockfile change and switched off by
 * NODE_MODULES_CACHE=false. The cold/warm push times are printed as a table for the closing note.
 */
let h: NodeHarness;
const times: { manager: string; cold: number; warm: number }[] = [];

beforeAll(async () => {
  h = await nodeHarness('nodepm');
}, 60_000);
afterAll(async () => {
  if (times.length > 0) console.log(`Node.js builds through git push (this machine, 2 cores):\n${timingTable(times)}`);
  await h?.stop();
});

/** The build reused the cached node_modules instead of installing. */
const REUSED = /^ +Skipping install: node_modules restored from the cache/m;
/** What "Restoring cache" says of node_modules: same dependencies, changed ones (a first build has no such step). */
const HIT = /^ +- node_modules \(dependencies unchanged since the last build\)$/m;
const MISS = /^ +- node_modules \(dependencies changed - skipping\)$/m;

interface Case {
  manager: string;
  app: string;
  fixture: string;
  /** Lines of the cold build, in order. */
  cold: RegExp[];
  /** What the served app must answer. */
  served: Record<string, unknown>;
  node: RegExp;
}

const CASES: Case[] = [
  {
    manager: 'npm',
    app: 'pm-npm',
    fixture: 'npm-lock',
    cold: [/^-----> Creating runtime environment/, /^-----> Installing binaries/, /engines\.node \(package\.json\): +22\.x/, /Installing node 22\.\d+\.\d+/, /^-----> Installing dependencies/, /^ +Installing node modules$/, /^-----> Build/, /Running build/, /fixture build: wrote dist\/built\.txt/, /^-----> Caching build/],
    served: { express: '4.18.2', built: expect.stringMatching(/^built with node v22\./), nodeEnv: 'production' },
    node: /^v22\./,
  },
  {
    manager: 'yarn 1',
    app: 'pm-yarn1',
    fixture: 'yarn1',
    cold: [/^-----> Installing binaries/, /engines\.yarn \(package\.json\): +unspecified/, /Installed yarn 1\.22\.\d+/, /^-----> Installing dependencies/, /Installing node modules \(yarn\.lock\)/],
    served: { lodash: '4.16.4' },
    node: /^v24\./,
  },
  {
    manager: 'yarn 4 (PnP)',
    app: 'pm-yarn4',
    fixture: 'yarn4-pnp',
    cold: [/^-----> Installing binaries/, /packageManager \(package\.json\): yarn@4\.18\.1/, /Using yarn 4\.18\.1/, /^-----> Installing dependencies/, /Running 'yarn install' with yarn\.lock/],
    served: { lodash: '4.17.15' },
    node: /^v24\./,
  },
  {
    manager: 'pnpm (workspaces)',
    app: 'pm-pnpm',
    fixture: 'pnpm-workspaces',
    cold: [/^-----> Installing binaries/, /packageManager \(package\.json\): pnpm@10\.34\.8/, /Using pnpm 10\.34\.8/, /^-----> Installing dependencies/, /Running 'pnpm install' with pnpm-lock\.yaml/, /^-----> Build/, /Running build/],
    served: { ms: '2.1.2', built: 'greet workspace built' },
    node: /^v24\./,
  },
];

describe('one app per package manager, served through the router', () => {
  for (const c of CASES) {
    it(`${c.manager}: built from its lockfile, served with the locked versions; a push changing only server.cjs reuses node_modules`, async () => {
      const repo = await h.app(c.app, c.fixture);
      const cold = await h.push(repo);
      const coldLog = buildLog(cold);
      expect(cold.code, coldLog).toBe(0);
      expect(inOrder(coldLog, c.cold).join('\n'), coldLog).not.toMatch(/MISSING/);
      expect(coldLog).not.toMatch(REUSED);
      expect(coldLog).not.toMatch(/^-----> Restoring cache/m);
      const body = JSON.parse(await h.serve(c.app)) as Record<string, unknown>;
      expect(body).toMatchObject(c.served);
      expect(body.node).toMatch(c.node);

      await h.change(repo, { 'server.cjs': `${fixtureText(c.fixture, 'server.cjs')}// a change to the app's code only\n` });
      const warm = await h.push(repo);
      const warmLog = buildLog(warm);
      expect(warm.code, warmLog).toBe(0);
      expect(inOrder(warmLog, [/^-----> Restoring cache/, HIT, /^-----> Installing dependencies/, REUSED]).join('\n'), warmLog).not.toMatch(/MISSING/);
      // The reused node_modules still runs the app, now from the new release.
      expect(JSON.parse(await h.serve(c.app))).toMatchObject(c.served);
      times.push({ manager: c.manager, cold: cold.seconds, warm: warm.seconds });
    }, 150_000);
  }

  it('npm: a lockfile change misses the cache and installs; NODE_MODULES_CACHE=false disables it', async () => {
    const repo = await h.app('pm-npm-cache', 'npm-lock');
    expect((await h.push(repo)).code).toBe(0);
    await h.idle('pm-npm-cache');
    await h.change(repo, 'npm-lock-bump');
    const bumped = await h.push(repo);
    const bumpedLog = buildLog(bumped);
    expect(bumped.code, bumpedLog).toBe(0);
    expect(bumpedLog).not.toMatch(REUSED);
    expect(bumpedLog).toMatch(MISS);
    expect(bumpedLog).toMatch(/^ +Installing node modules$/m);
    expect((await h.slugFiles('pm-npm-cache')).filter((p) => /^node_modules\/ms\/package\.json$/.test(p))).toHaveLength(1);

    await h.config('pm-npm-cache', { NODE_MODULES_CACHE: 'false' });
    await h.change(repo, { 'server.cjs': `${fixtureText('npm-lock', 'server.cjs')}// no cache\n` });
    const off = await h.push(repo);
    const offLog = buildLog(off);
    expect(off.code, offLog).toBe(0);
    expect(offLog).toMatch(/^ +NODE_MODULES_CACHE=false$/m);
    expect(offLog).toMatch(/^ +Caching has been disabled because NODE_MODULES_CACHE=false$/m);
    expect(offLog).not.toMatch(REUSED);
    expect(offLog).toMatch(/^ +Installing node modules$/m);
  }, 150_000);
});
