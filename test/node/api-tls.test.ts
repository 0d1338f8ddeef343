import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { request } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startController, type Controller } from '../../src/controller/index.js';
import { createLogger } from '../../src/domain/log.js';
import { apiTls, startHookRelay, type ApiTls } from '../../src/node/api-tls.js';
import { openStore } from '../../src/store/index.js';
import { runHeroku } from '../support/heroku.js';
import { freePort } from '../support/ports.js';

const log = createLogger('test', { level: 'silent' });

let dir: string;
let tls: ApiTls;
let controller: Controller;
let url: string;
let token: string;

function git(args: string[], env: Record<string, string>): Promise<{ code: number; err: string }> {
  return new Promise((resolve) =>
    execFile('git', args, { timeout: 30_000, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir, GIT_TERMINAL_PROMPT: '0', ...env } }, (error, _out, err) => resolve({ code: error ? 1 : 0, err })),
  );
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-api-tls-'));
  tls = await apiTls(join(dir, 'data'), { selfSigned: true });
  const port = await freePort();
  url = `https://127.0.0.1:${port}`;
  controller = await startController({ store: openStore('memory://'), log, settings: { domain: 'berth.test', apiUrl: url }, host: '127.0.0.1', port, api: { https: { cert: tls.cert, key: tls.key } } });
  token = (await controller.services.users.create('alice@example.com')).token;
}, 30_000);

afterAll(async () => {
  await controller?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('the self-signed certificate', () => {
  it('is made once under the data dir (key 0600) and kept across restarts, with its SHA-256 fingerprint', async () => {
    expect(tls.certPath).toBe(join(dir, 'data', 'api-tls', 'cert.pem'));
    expect(statSync(join(dir, 'data', 'api-tls', 'key.pem')).mode & 0o777).toBe(0o600);
    const cert = new X509Certificate(readFileSync(tls.certPath));
    expect(tls.fingerprint).toBe(cert.fingerprint256);
    expect(cert.subjectAltName).toContain('IP Address:127.0.0.1');
    expect(cert.subjectAltName).toContain('DNS:localhost');
    const again = await apiTls(join(dir, 'data'), { selfSigned: true });
    expect(again.fingerprint).toBe(tls.fingerprint);
  });

  it('is made again when the API is now reached at a name the kept certificate lacks', async () => {
    const data = join(dir, 'renamed');
    const first = await apiTls(data, { selfSigned: true });
    const named = await apiTls(data, { selfSigned: true }, ['api.example.test', '192.0.2.7']);
    expect(named.fingerprint).not.toBe(first.fingerprint);
    expect(new X509Certificate(named.cert).subjectAltName).toMatch(/DNS:api\.example\.test[\s\S]*IP Address:192\.0\.2\.7/);
    // Asked again for names it has: kept.
    expect((await apiTls(data, { selfSigned: true }, ['api.example.test'])).fingerprint).toBe(named.fingerprint);
  });

  it("refuses an operator's key that does not belong to the certificate", async () => {
    const other = await apiTls(join(dir, 'other'), { selfSigned: true });
    await expect(apiTls(dir, { certFile: tls.certPath, keyFile: join(dir, 'other', 'api-tls', 'key.pem') })).rejects.toThrow(/does not belong/);
    expect(other.fingerprint).not.toBe(tls.fingerprint);
  });
});

describe('the API over HTTPS', () => {
  it('answers a client that trusts the certificate, and no client that does not', async () => {
    const get = (ca?: string): Promise<number | string> =>
      new Promise((resolve) => {
        const port = Number(new URL(url).port);
        const req = request({ host: '127.0.0.1', port, path: '/account', headers: { authorization: `Bearer ${token}` }, ...(ca ? { ca } : {}) }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
        req.end();
      });
    expect(await get(tls.cert)).toBe(200);
    expect(await get()).toBe('DEPTH_ZERO_SELF_SIGNED_CERT');
    // Plain HTTP on the same port gets no API.
    await expect(fetch(url.replace('https:', 'http:') + '/health')).rejects.toThrow();
  });

  it('works with the official heroku CLI given NODE_EXTRA_CA_CERTS', async () => {
    const home = mkdtempSync(join(dir, 'home-'));
    const trusted = await runHeroku({ apiUrl: url, token, home, timeoutMs: 45_000, env: { NODE_EXTRA_CA_CERTS: tls.certPath } }, ['apps:create', 'tls-app']);
    expect(trusted.err + trusted.out).toContain('tls-app');
    expect(trusted.code).toBe(0);
    const info = await runHeroku({ apiUrl: url, token, home, timeoutMs: 45_000, env: { NODE_EXTRA_CA_CERTS: tls.certPath } }, ['apps:info', '-a', 'tls-app', '--json']);
    expect(info.code).toBe(0);
    // The git URL the API hands out (what git:remote sets) is https too.
    expect((JSON.parse(info.out) as { app: { git_url: string } }).app.git_url).toBe(`${url}/tls-app.git`);
    const untrusted = await runHeroku({ apiUrl: url, token, home, timeoutMs: 45_000 }, ['apps']);
    expect(untrusted.code).not.toBe(0);
  }, 120_000);

  it("passes git's own TLS check (GnuTLS on Debian) given GIT_SSL_CAINFO", async () => {
    // No git routes are served here: a 404 after the handshake is what proves the certificate passed.
    const trusted = await git(['ls-remote', `${url}/tls-app.git`], { GIT_SSL_CAINFO: tls.certPath });
    expect(trusted.err).not.toMatch(/certificate|SSL|TLS/i);
    expect(trusted.err).toMatch(/not found|404|Authentication|could not read/i);
    const untrusted = await git(['ls-remote', `${url}/tls-app.git`], {});
    expect(untrusted.err).toMatch(/certificate|SSL|TLS/i);
  }, 60_000);
});

describe('the git hook relay', () => {
  it('passes only the hook route, in plain HTTP on loopback, to the API', async () => {
    const relay = await startHookRelay('/internal/git-hook');
    try {
      expect((await fetch(`${relay.base}/internal/git-hook`, { method: 'POST', body: '{}' })).status).toBe(503);
      relay.attach(controller.api);
      expect(new URL(relay.base).hostname).toBe('127.0.0.1');
      expect((await fetch(`${relay.base}/account`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(404);
      expect((await fetch(`${relay.base}/health`)).status).toBe(404);
      // The route itself reaches the API (which has no hook route here, so its auth answers).
      const hook = await fetch(`${relay.base}/internal/git-hook`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
      expect(hook.status).toBe(401);
      expect(hook.headers.get('request-id')).toBeTruthy();
      expect((controller.api.server.address() as AddressInfo).port).toBe(Number(new URL(url).port));
    } finally {
      await relay.close();
    }
  });
});
