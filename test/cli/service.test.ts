import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execWord, envLine } from '../../src/cli/commands/service/unit.js';
import { runCommand, type CommandResult } from '../support/command.js';

const ROOT = join(import.meta.dirname, '../..');
const MAIN = join(ROOT, 'src/cli/main.ts');
const TOKEN = 'K10-cluster-token::server:0123456789abcdef';

type Run = CommandResult;

const run = (cmd: string, args: string[], env: Record<string, string> = {}): Promise<Run> => runCommand(cmd, args, { cwd: ROOT, env: { HOME: dir, ...env } });

let dir: string;
const berth = (args: string[], env?: Record<string, string>): Promise<Run> => run(process.execPath, ['--import', 'tsx', MAIN, ...args], env);
/** systemd's own check of a unit file: exit 0 and not one complaint about the unit. */
async function verify(unit: string): Promise<Run> {
  const r = await run('systemd-analyze', ['verify', unit]);
  return { code: r.code !== 0 || r.out.includes(unit) ? Math.max(r.code, 1) : 0, out: r.out };
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'berth-service-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('berth service:install', () => {
  it('writes a unit systemd accepts, running berth up with the flags, the token only in a 0600 env file; uninstall removes both', async () => {
    const unit = join(dir, 'berth.service');
    const envFile = join(dir, 'etc/berth.env');
    const install = await berth(['service:install', '--unit-dir', dir, '--environment-file', envFile, '--no-enable', '--server', 'http://10.0.0.1:5000', '--token', TOKEN, '--advertise', '10.0.0.2', '--admin-email', 'ops$team%1@example.com', '--no-agent'], { BERTH_LOG_LEVEL: 'debug' });
    expect(install.code, install.out).toBe(0);
    const text = readFileSync(unit, 'utf8');
    expect(text).toContain(`ExecStart="${join(ROOT, 'berth')}" "up" "--server" "http://10.0.0.1:5000" "--advertise" "10.0.0.2" "--admin-email" "ops$$team%%1@example.com" "--no-agent"`);
    expect(text).toMatch(/^Restart=on-failure$/m);
    expect(text).toMatch(/^KillMode=mixed$/m);
    expect(text).toMatch(/^TimeoutStopSec=(\d+)$/m);
    expect(Number(/^TimeoutStopSec=(\d+)$/m.exec(text)?.[1])).toBeGreaterThan(30);
    expect(text).toMatch(/^LimitNOFILE=\d+$/m);
    expect(text).toContain(`EnvironmentFile=${envFile}`);
    expect(text).not.toContain(TOKEN);
    expect(statSync(envFile).mode & 0o777).toBe(0o600);
    expect(readFileSync(envFile, 'utf8')).toContain(`BERTH_TOKEN="${TOKEN}"`);
    expect(readFileSync(envFile, 'utf8')).toContain('BERTH_LOG_LEVEL="debug"');

    const checked = await verify(unit);
    expect(checked.code, checked.out).toBe(0);

    const uninstall = await berth(['service:uninstall', '--unit-dir', dir, '--environment-file', envFile]);
    expect(uninstall.code, uninstall.out).toBe(0);
    expect(existsSync(unit)).toBe(false);
    expect(existsSync(envFile)).toBe(false);
  }, 60_000);

  it('has a verify step that fails on a malformed unit', async () => {
    const bad = join(dir, 'bad.service');
    writeFileSync(bad, '[Service]\nExecStart=/bin/true\nRestart=sometimes\nthis is not a setting\n');
    expect((await verify(bad)).code).not.toBe(0);
    writeFileSync(bad, '[Service]\nExecStart=relative/berth up\n');
    expect((await verify(bad)).code).not.toBe(0);
  });

  it('refuses flags berth up does not take, writing nothing', async () => {
    const r = await berth(['service:install', '--unit-dir', join(dir, 'x'), '--environment-file', join(dir, 'x/berth.env'), '--no-enable', '--no-such-flag']);
    expect(r.code).not.toBe(0);
    expect(r.out).toMatch(/unknown option '--no-such-flag'/);
    expect(existsSync(join(dir, 'x'))).toBe(false);
  }, 30_000);

  it('quotes every word so systemd passes it on unchanged, and refuses line breaks', () => {
    expect(execWord('a b"c\\d$e%f')).toBe('"a b\\"c\\\\d$$e%%f"');
    expect(() => execWord('x\nExecStartPre=/bin/sh')).toThrow(/line breaks/);
    expect(envLine('BERTH_TOKEN', 'a"b$c')).toBe('BERTH_TOKEN="a\\"b\\$c"');
    expect(() => envLine('BERTH_TOKEN', 'a\nLD_PRELOAD=/x')).toThrow(/line breaks/);
  });
});
