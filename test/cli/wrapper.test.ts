import { execFile } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '../..');

/**
 * The ./berth wrapper and scripts/setup.sh, run for real in a scratch checkout whose node, npm,
 * npx, dpkg-query and apt-get are stand-ins that only record their calls: which setup steps a
 * command pays for is then visible, and nothing is installed.
 */
let dir: string;
let checkout: string;
let calls: string;

function run(cmd: string, args: string[]): Promise<{ code: number; out: string; ms: number }> {
  const started = performance.now();
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: dir, timeout: 30_000, env: { PATH: `${join(dir, 'bin')}:/usr/bin:/bin`, HOME: dir, BERTH_BIN_DIR: join(dir, 'linked') } }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr, ms: performance.now() - started }),
    );
  });
}

const recorded = (): string[] => (existsSync(calls) ? readFileSync(calls, 'utf8').split('\n').filter(Boolean) : []);
const clear = (): void => writeFileSync(calls, '');
/** Every input of the build older than the build stamp, as after a build. */
function built(): void {
  const old = new Date(Date.now() - 60_000);
  for (const f of ['package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'src', 'src/a.ts']) utimesSync(join(checkout, f), old, old);
  const stamp = join(checkout, 'dist/.berth-build-stamp');
  writeFileSync(stamp, '');
  // File times tick coarsely (a few ms): the stamp is set clearly older than any change to come.
  utimesSync(stamp, new Date(Date.now() - 30_000), new Date(Date.now() - 30_000));
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'berth-wrapper-'));
  checkout = join(dir, 'checkout');
  calls = join(dir, 'calls');
  for (const d of ['bin', 'linked', 'checkout/scripts', 'checkout/src', 'checkout/dist/src/cli', 'checkout/node_modules']) mkdirSync(join(dir, d), { recursive: true });
  copyFileSync(join(ROOT, 'berth'), join(checkout, 'berth'));
  copyFileSync(join(ROOT, 'scripts/setup.sh'), join(checkout, 'scripts/setup.sh'));
  chmodSync(join(checkout, 'berth'), 0o755);
  for (const f of ['package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'src/a.ts', 'dist/src/cli/main.js']) writeFileSync(join(checkout, f), '{}\n');
  // The lockfile's hash as the last npm install left it.
  writeFileSync(join(checkout, 'node_modules/.berth-lock-sha256'), '');
  for (const tool of ['npm', 'npx', 'dpkg-query', 'apt-get', 'systemctl']) {
    writeFileSync(join(dir, 'bin', tool), `#!/bin/sh\necho "${tool} $*" >> ${calls}\n${tool === 'dpkg-query' ? "echo 'install ok installed'\n" : ''}`, { mode: 0o755 });
  }
  writeFileSync(join(dir, 'bin', 'node'), `#!/bin/sh\ncase "$1" in -p) echo 20 ;; *) echo "node $*" ;; esac\n`, { mode: 0o755 });
  symlinkSync(join(checkout, 'berth'), join(dir, 'bin', 'berth'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the ./berth wrapper', () => {
  it('runs a CLI command with no setup step when the build is current, also through a symlink on the PATH', async () => {
    const lock = (await run('sha256sum', [join(checkout, 'package-lock.json')])).out.split(' ')[0] as string;
    writeFileSync(join(checkout, 'node_modules/.berth-lock-sha256'), `${lock}\n`);
    built();
    clear();
    for (const berth of [join(checkout, 'berth'), 'berth']) {
      const r = await run(berth, ['apps', '--help']);
      expect(r.code, r.out).toBe(0);
      expect(r.out).toContain(`node ${join(checkout, 'dist/src/cli/main.js')} apps --help`);
      // The figure: ~1.7 s of setup per command. A bash start and a find are left (~10 ms).
      expect(r.ms).toBeLessThan(1700);
    }
    expect(recorded()).toEqual([]);
  });

  it('rebuilds before a command when a source file, the lockfile or a tsconfig is newer than the build', async () => {
    for (const changed of ['src/a.ts', 'package-lock.json', 'tsconfig.json']) {
      built();
      clear();
      const later = new Date();
      utimesSync(join(checkout, changed), later, later);
      const r = await run(join(checkout, 'berth'), ['apps']);
      expect(r.code, r.out).toBe(0);
      expect(recorded(), changed).toContain('npx --no-install tsc -p tsconfig.build.json');
            clear();
      expect((await run(join(checkout, 'berth'), ['apps'])).code).toBe(0);
      expect(recorded(), `${changed}: built once, then current`).toEqual([]);
    }
  });

  it('brings dependencies to a new lockfile in place (npm ci would delete node_modules under running processes)', async () => {
    built();
    clear();
    writeFileSync(join(checkout, 'package-lock.json'), '{"lockfileVersion": 3}\n');
    const r = await run(join(checkout, 'berth'), ['apps']);
    expect(r.code, r.out).toBe(0);
    expect(recorded(), r.out).toContain('npm install --no-audit --no-fund --loglevel=error');
    expect(recorded().some((c) => c.startsWith('npm ci'))).toBe(false);
  });

  it('checks Debian packages for up and agent only', async () => {
    built();
    clear();
    const r = await run(join(checkout, 'berth'), ['agent', '--help']);
    expect(r.code, r.out).toBe(0);
    expect(recorded().some((c) => c.startsWith('dpkg-query'))).toBe(true);
    // ...and put `berth` on the PATH, pointing at this checkout.
    expect(readlinkSync(join(dir, 'linked/berth'))).toBe(join(checkout, 'berth'));
  });
});
