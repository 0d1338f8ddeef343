import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient } from '../support/api.js';
import { answerCredential } from '../../src/cli/credentials.js';
import { startBerth, type BerthProcess } from '../support/berth-process.js';
import { runCommand, type CommandResult } from '../support/command.js';
import { removeNetwork } from '../support/network.js';
import { freePort } from '../support/ports.js';

// A network of this file's own: testNetwork()'s names repeat across vitest runs side by side.
const NET = ['--network-name', 'btlg', '--overlay', '10.236.0.0/16', '--backend', 'host-gw'];

const ROOT = join(import.meta.dirname, '../..');
const MAIN = join(ROOT, 'src/cli/main.ts');
const ADMIN = 'login-admin-token-0123456789abcdef';

type Run = CommandResult;
const run = (cmd: string, args: string[], cwd: string, env: Record<string, string>): Promise<Run> => runCommand(cmd, args, { cwd, env });

let berth: BerthProcess;
let dir: string;
let home: string;
let repo: string;

/** The real CLI entry, as a user whose HOME is `home` (the loader from the checkout, cwd anywhere). */
const cli = (...args: string[]): Promise<Run> => run(process.execPath, ['--import', 'tsx', MAIN, ...args], ROOT, { HOME: home });
/** git as that user, never prompting: a missing credential is a failure, not a hang. */
const git = (...args: string[]): Promise<Run> => run('git', args, repo, { HOME: home, GIT_TERMINAL_PROMPT: '0' });

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-login-'));
  chmodSync(dir, 0o755);
  berth = await startBerth(['--data-dir', join(dir, 'data'), '--no-agent', ...NET], { BERTH_BOOTSTRAP_TOKEN: ADMIN });
  await apiClient(() => berth.apiUrl, ADMIN).ok('POST', '/apps', { name: 'login-push' });
  home = join(dir, 'home');
  repo = join(dir, 'repo');
  mkdirSync(home);
  mkdirSync(repo);
  writeFileSync(join(repo, 'Procfile'), 'web: python3 -m http.server $PORT\n');
  for (const args of [['init', '-q', '-b', 'main'], ['config', 'user.email', 'dev@example.com'], ['config', 'user.name', 'Dev'], ['add', '.'], ['commit', '-qm', 'initial'], ['remote', 'add', 'berth', `${berth.apiUrl}/login-push.git`]]) {
    const r = await git(...args);
    if (r.code !== 0) throw new Error(`git ${args.join(' ')}: ${r.out}`);
  }
}, 90_000);
afterAll(async () => {
  await berth?.stop();
  await removeNetwork('btlg');
  rmSync(dir, { recursive: true, force: true });
});

describe('berth login and git', () => {
  it('lets git push ask for nothing after berth login, only for that URL, and logout undoes it', async () => {
    // Someone else's entry, in a netrc others could read: login keeps it and closes the file.
    writeFileSync(join(home, '.netrc'), 'machine example.com\n  login me\n  password keep-me\n', { mode: 0o644 });
    chmodSync(join(home, '.netrc'), 0o644);

    const anonymous = await git('push', 'berth', 'main');
    expect(anonymous.code, anonymous.out).not.toBe(0);
    expect(anonymous.out).toMatch(/terminal prompts disabled|could not read Username/);

    const login = await cli('login', '--api-url', berth.apiUrl, '--token', ADMIN);
    expect(login.code, login.out).toBe(0);
    expect(login.out).toMatch(/Logged in as /);
    const netrc = readFileSync(join(home, '.netrc'), 'utf8');
    expect(netrc).toMatch(/machine example\.com[\s\S]*password keep-me/);
    expect(statSync(join(home, '.netrc')).mode & 0o777).toBe(0o600);
    // The token lives in netrc only, never in the git config (often world-readable).
    expect(readFileSync(join(home, '.gitconfig'), 'utf8')).not.toContain(ADMIN);
    // Scoped to this platform's URL: another port on the same host gets no answer from it.
    const here = await git('config', '--global', '--get-urlmatch', 'credential.helper', `${berth.apiUrl}/login-push.git`);
    expect(here.out).toContain('credential-helper.ts');
    const elsewhere = await git('config', '--global', '--get-urlmatch', 'credential.helper', `http://127.0.0.1:${await freePort()}/x.git`);
    expect(elsewhere.out).toBe('');

    const push = await git('push', 'berth', 'main');
    expect(push.code, push.out).toBe(0);
    expect(push.out).toMatch(/Procfile app detected/);

    const logout = await cli('logout');
    expect(logout.code, logout.out).toBe(0);
    expect(readFileSync(join(home, '.gitconfig'), 'utf8')).not.toContain('credential-helper');
    const after = readFileSync(join(home, '.netrc'), 'utf8');
    expect(after).not.toContain(ADMIN);
    expect(after).toContain('keep-me');
    await git('commit', '-q', '--allow-empty', '-m', 'again');
    const again = await git('push', 'berth', 'main');
    expect(again.code, again.out).not.toBe(0);
    expect(again.out).toMatch(/terminal prompts disabled|could not read Username/);
  }, 120_000);

  it('answers git only for http(s) hosts it holds a token for, and never with a forged field', () => {
    const own = join(dir, 'helper-home');
    mkdirSync(own);
    writeFileSync(join(own, '.netrc'), 'machine 127.0.0.1:5000\n  login a@example.com\n  password tok-1\nmachine 127.0.0.1:6000\n  login "x\\nusername=evil"\n  password tok-2\n', { mode: 0o600 });
    const ctx = { env: {}, cwd: own, home: own, out: () => undefined, err: () => undefined, interactive: false };
    expect(answerCredential(ctx, 'get', 'protocol=http\nhost=127.0.0.1:5000\n\n')).toBe('username=a@example.com\npassword=tok-1\n');
    expect(answerCredential(ctx, 'get', 'protocol=http\nhost=127.0.0.1:5001\n\n')).toBe('');
    expect(answerCredential(ctx, 'get', 'protocol=ssh\nhost=127.0.0.1:5000\n\n')).toBe('');
    expect(answerCredential(ctx, 'store', 'protocol=http\nhost=127.0.0.1:5000\nusername=u\npassword=p\n\n')).toBe('');
    // One username line at most, whatever the file holds.
    expect(answerCredential(ctx, 'get', 'protocol=http\nhost=127.0.0.1:6000\n\n').split('\n').filter((l) => l.startsWith('username=')).length).toBeLessThanOrEqual(1);
  });
});
