import { spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiUrl, DEFAULT_API_URL } from '../../src/cli/api-client.js';
import { normaliseFingerprint } from '../../src/cli/trust.js';
import { runCommand, type CommandResult } from '../support/command.js';
import { removeNetwork } from '../support/network.js';
import { freePort } from '../support/ports.js';

// A network of this file's own (other suites: bt<n>, btlg, btlf).
const NET = ['--network-name', 'btlt', '--overlay', '10.238.0.0/16', '--backend', 'host-gw'];

const ROOT = join(import.meta.dirname, '../..');
const MAIN = join(ROOT, 'src/cli/main.ts');
// Absolute, so the CLI runs from the app's checkout (apps:create adds its remote there).
const TSX = import.meta.resolve('tsx');
const ADMIN = 'login-tls-admin-token-0123456789abcdef';

type Run = CommandResult;
const run = (cmd: string, args: string[], cwd: string, env: Record<string, string>): Promise<Run> => runCommand(cmd, args, { cwd, env });

let berth: ChildProcess;
let exited: Promise<number | null>;
let dir: string;
let home: string;
let repo: string;
let url: string;
let fingerprint: string;
let certPath: string;
/** The login line `berth up` printed, as arguments after `berth`. */
let printedLogin: string[];

/** The real CLI as a user whose HOME is `h`, with no NODE_EXTRA_CA_CERTS or BERTH_* set. */
const cliAs = (h: string, ...args: string[]): Promise<Run> => run(process.execPath, ['--import', TSX, MAIN, ...args], repo, { HOME: h });
const cliWith = (env: Record<string, string>, ...args: string[]): Promise<Run> => run(process.execPath, ['--import', TSX, MAIN, ...args], repo, { HOME: home, ...env });
const cli = (...args: string[]): Promise<Run> => cliAs(home, ...args);
/** git as that user, never prompting, with no GIT_SSL_* set. */
const git = (...args: string[]): Promise<Run> => run('git', args, repo, { HOME: home, GIT_TERMINAL_PROMPT: '0' });
const pin = (): string => join(home, '.config', 'berth', 'certs', `127.0.0.1_${new URL(url).port}.pem`);
const gitconfig = (): string => (existsSync(join(home, '.gitconfig')) ? readFileSync(join(home, '.gitconfig'), 'utf8') : '');

/** `berth up` as a person runs it (no --json), until it prints its summary. */
async function startUp(args: string[]): Promise<string> {
  berth = spawn(process.execPath, ['--import', 'tsx', MAIN, 'up', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, BERTH_BOOTSTRAP_TOKEN: ADMIN } });
  exited = new Promise((resolve) => berth.on('exit', (code) => resolve(code)));
  let out = '';
  let err = '';
  berth.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`berth up printed no summary within 45 s:\n${out}\n${err}`)), 45_000);
    berth.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('Press Ctrl-C to stop.')) {
        clearTimeout(timer);
        resolve(out);
      }
    });
    void exited.then((code) => reject(new Error(`berth up exited with ${code}:\n${out}\n${err}`)));
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-login-tls-'));
  chmodSync(dir, 0o755);
  const port = await freePort();
  const ports = ['--api-port', String(port), '--ssh-port', String(await freePort()), '--http-port', String(await freePort()), '--https-port', String(await freePort())];
  // Loopback for the test, and an https --api-url: the node makes its self-signed certificate as it does on 0.0.0.0.
  const summary = await startUp(['--data-dir', join(dir, 'data'), '--no-agent', '--api-host', '127.0.0.1', '--api-url', `https://127.0.0.1:${port}`, ...ports, ...NET]);
  url = /^API:\s+(\S+)$/m.exec(summary)?.[1] ?? '';
  const tls = /^API TLS:\s+self-signed certificate (\S+), SHA-256 (\S+);/m.exec(summary);
  certPath = tls?.[1] ?? '';
  fingerprint = tls?.[2] ?? '';
  printedLogin = (/^Log in \(berth and git push\):\s+berth (.+)$/m.exec(summary)?.[1] ?? '').split(' ');
  home = join(dir, 'home');
  repo = join(dir, 'repo');
  mkdirSync(home);
  mkdirSync(repo);
  writeFileSync(join(repo, 'Procfile'), 'web: python3 -m http.server $PORT\n');
  for (const args of [['init', '-q', '-b', 'main'], ['config', 'user.email', 'dev@example.com'], ['config', 'user.name', 'Dev'], ['add', '.'], ['commit', '-qm', 'initial']]) {
    const r = await git(...args);
    if (r.code !== 0) throw new Error(`git ${args.join(' ')}: ${r.out}`);
  }
}, 90_000);
afterAll(async () => {
  if (berth && berth.exitCode === null && berth.signalCode === null) {
    const kill = setTimeout(() => berth.kill('SIGKILL'), 10_000);
    berth.kill('SIGTERM');
    await exited;
    clearTimeout(kill);
  }
  await removeNetwork('btlt');
  rmSync(dir, { recursive: true, force: true });
});

describe('berth login to an API with a self-signed certificate', () => {
  it('serves https with a certificate no CA vouches for, and berth up prints the login line that trusts it', () => {
    expect(url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(fingerprint).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    expect(new X509Certificate(readFileSync(certPath)).fingerprint256).toBe(fingerprint);
    expect(printedLogin).toEqual(['login', '--api-url', url, '--fingerprint', fingerprint, '--token', ADMIN]);
  });

  it('refuses a wrong fingerprint, or none, and saves nothing', async () => {
    const wrong = fingerprint.replace(/^../, fingerprint.startsWith('00') ? '11' : '00');
    const refused = await cli('login', '--api-url', url, '--token', ADMIN, '--fingerprint', wrong);
    expect(refused.code, refused.out).not.toBe(0);
    expect(refused.out).toContain(`has SHA-256 fingerprint ${fingerprint}, not ${wrong}`);
    expect(refused.out).toContain('nothing was saved');

    // Not at a terminal, nothing to vouch for it: the fingerprint to check, and how to pass it.
    const unvouched = await cli('login', '--api-url', url, '--token', ADMIN);
    expect(unvouched.code, unvouched.out).not.toBe(0);
    expect(unvouched.out).toContain(`--fingerprint ${fingerprint}`);

    expect(existsSync(join(home, '.netrc')) ? readFileSync(join(home, '.netrc'), 'utf8') : '').not.toContain(ADMIN);
    expect(existsSync(join(home, '.config', 'berth'))).toBe(false);
    expect(gitconfig()).not.toMatch(/sslcainfo/i);
  }, 60_000);

  it('pins the certificate for the CLI and git: apps:create, config:set, logs and a push need no env var; logout removes the trust', async () => {
    // Exactly what berth up printed.
    const login = await cli(...printedLogin);
    expect(login.code, login.out).toBe(0);
    expect(login.out).toMatch(/Logged in as /);
    expect(new X509Certificate(readFileSync(pin())).fingerprint256).toBe(fingerprint);
    expect(statSync(pin()).mode & 0o777).toBe(0o644);
    expect(JSON.parse(readFileSync(join(home, '.config', 'berth', 'cli.json'), 'utf8'))).toEqual({ api_url: url, ca_file: pin() });
    const scoped = await git('config', '--global', '--get-urlmatch', 'http.sslCAInfo', `${url}/tls-push.git`);
    expect(scoped.out.trim()).toBe(pin());
    // Other remotes keep the system's CAs.
    const other = await git('config', '--global', '--get-urlmatch', 'http.sslCAInfo', 'https://example.com/x.git');
    expect(other.out.trim()).toBe('');

    const create = await cli('apps:create', 'tls-push');
    expect(create.code, create.out).toBe(0);
    expect(create.out).toContain(`${url}/tls-push.git`);
    const remote = await git('remote', 'get-url', 'berth');
    expect(remote.out.trim()).toBe(`${url}/tls-push.git`);

    const set = await cli('config:set', 'GREETING=hello', '-a', 'tls-push');
    expect(set.code, set.out).toBe(0);
    const get = await cli('config:get', 'GREETING', '-a', 'tls-push');
    expect(get.out.trim()).toBe('hello');

    const push = await git('push', 'berth', 'main');
    expect(push.code, push.out).toBe(0);
    expect(push.out).toMatch(/Procfile app detected/);

    // The log stream is its own connection.
    const logs = await cli('logs', '-a', 'tls-push', '-n', '5');
    expect(logs.code, logs.out).toBe(0);

    const logout = await cli('logout');
    expect(logout.code, logout.out).toBe(0);
    expect(existsSync(pin())).toBe(false);
    expect(gitconfig()).not.toMatch(/sslcainfo/i);
    await git('commit', '-q', '--allow-empty', '-m', 'again');
    const again = await git('push', 'berth', 'main');
    expect(again.code, again.out).not.toBe(0);
    expect(again.out).toMatch(/certificate|SSL|TLS/i);
    // A token alone no longer gets the CLI through: the certificate is untrusted again, and it says how to fix that.
    const untrusted = await cliWith({ BERTH_API_KEY: ADMIN }, 'apps');
    expect(untrusted.code, untrusted.out).not.toBe(0);
    expect(untrusted.out).toContain(`berth login --api-url ${url} --fingerprint`);
  }, 150_000);

  it('trusts, without asking, the certificate the platform on this machine serves from its data dir', async () => {
    const local = join(dir, 'local-home');
    mkdirSync(join(local, '.berth', 'api-tls'), { recursive: true });
    copyFileSync(certPath, join(local, '.berth', 'api-tls', 'cert.pem'));
    const login = await cliAs(local, 'login', '--api-url', url, '--token', ADMIN);
    expect(login.code, login.out).toBe(0);
    expect(login.out).toContain(`is the one in ${join(local, '.berth', 'api-tls', 'cert.pem')}`);
    const whoami = await cliAs(local, 'whoami');
    expect(whoami.code, whoami.out).toBe(0);
  }, 60_000);

  it('takes the fingerprint in lower case without colons too', async () => {
    mkdirSync(join(dir, 'spelling-home'));
    const login = await cliAs(join(dir, 'spelling-home'), 'login', '--api-url', url, '--token', ADMIN, '--fingerprint', fingerprint.replaceAll(':', '').toLowerCase());
    expect(login.code, login.out).toBe(0);
  }, 60_000);

  it('says a https URL answers plain HTTP instead of sending the token in clear', async () => {
    let hits = 0;
    const plain: Server = createServer((req, res) => {
      if (req.headers.authorization) hits++;
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"email":"x@example.com"}');
    });
    await new Promise<void>((resolve) => plain.listen(0, '127.0.0.1', resolve));
    try {
      const port = (plain.address() as AddressInfo).port;
      const login = await cliAs(join(dir, 'plain-home'), 'login', '--api-url', `https://127.0.0.1:${port}`, '--token', ADMIN);
      expect(login.code, login.out).not.toBe(0);
      expect(login.out).toContain(`answers plain HTTP, not HTTPS`);
      expect(login.out).toContain(`--api-url http://127.0.0.1:${port}`);
      expect(hits).toBe(0);
    } finally {
      plain.close();
    }
  }, 60_000);
});

describe('the CLI defaults', () => {
  it("reaches berth up's default API over https", () => {
    const h = mkdtempSync(join(tmpdir(), 'berth-default-'));
    try {
      expect(DEFAULT_API_URL).toBe('https://127.0.0.1:5000');
      expect(apiUrl({ env: {}, cwd: h, home: h, out: () => undefined, err: () => undefined, interactive: false })).toBe(DEFAULT_API_URL);
    } finally {
      rmSync(h, { recursive: true, force: true });
    }
  });

  it('reads a SHA-256 fingerprint in any common spelling', () => {
    const canonical = `AB:${'01:'.repeat(30)}CD`;
    expect(normaliseFingerprint(canonical)).toBe(canonical);
    expect(normaliseFingerprint(canonical.replaceAll(':', '').toLowerCase())).toBe(canonical);
    expect(normaliseFingerprint(`SHA256:${Buffer.from(canonical.replaceAll(':', ''), 'hex').toString('base64').replace(/=$/, '')}`)).toBe(canonical);
    expect(normaliseFingerprint('AB:CD')).toBeUndefined();
  });
});
