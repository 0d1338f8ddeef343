import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient } from '../../src/cli/api-client.js';
import { attachDyno } from '../../src/cli/commands/run/attach.js';
import type { CliContext, Terminal } from '../../src/cli/context.js';
import { pinnedCa, savePin, vouchedCertificate } from '../../src/cli/trust.js';
import { apiTls, type ApiTls } from '../../src/node/api-tls.js';

let dir: string;
let tls: ApiTls;
let other: ApiTls;
let server: Server;
let url: string;

/** A CLI context with its own HOME; at a "terminal" whose keyboard types `typed`, if given. */
function context(name: string, typed?: string): CliContext & { said: string[] } {
  const home = join(dir, name);
  mkdirSync(home, { recursive: true });
  const said: string[] = [];
  let terminal: Terminal | undefined;
  if (typed !== undefined) {
    const stdin = Object.assign(new PassThrough(), { isTTY: true });
    stdin.end(typed);
    terminal = { stdin, stdout: new PassThrough(), stderr: new PassThrough() } as unknown as Terminal;
  }
  return { env: { BERTH_API_KEY: 'tok' }, cwd: home, home, out: (t) => said.push(t), err: (t) => said.push(t), interactive: terminal !== undefined, ...(terminal ? { terminal } : {}), said };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-trust-'));
  tls = await apiTls(join(dir, 'data'), { selfSigned: true });
  other = await apiTls(join(dir, 'other'), { selfSigned: true });
  // Stands in for the attach route of a TLS API: one exit event, as a dyno that ran `true`.
  server = createServer({ cert: tls.cert, key: tls.key }, (req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'application/x-ndjson' }).end(`${JSON.stringify({ exit: 0 })}\n`);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
}, 30_000);
afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
  rmSync(dir, { recursive: true, force: true });
});

describe('trust on first use', () => {
  it('asks at a terminal: y trusts the certificate, anything else refuses', async () => {
    expect(await vouchedCertificate(context('yes', 'y\n'), url, undefined)).toBe(`${tls.cert.trimEnd()}\n`);
    await expect(vouchedCertificate(context('no', 'n\n'), url, undefined)).rejects.toThrow(`--fingerprint ${tls.fingerprint}`);
    await expect(vouchedCertificate(context('enter', '\n'), url, undefined)).rejects.toThrow(/not trusted by this system/);
  });

  it('refuses a certificate that changed since it was pinned, even with a y, unless the new fingerprint is given', async () => {
    const ctx = context('changed', 'y\n');
    savePin(ctx, url, other.cert);
    await expect(vouchedCertificate(ctx, url, undefined)).rejects.toThrow(`CHANGED since you logged in: it now has SHA-256 fingerprint ${tls.fingerprint}`);
    expect(await vouchedCertificate(context('changed'), url, tls.fingerprint)).toContain('BEGIN CERTIFICATE');
  });

  it("berth run's attach connection trusts the pinned certificate", async () => {
    const ctx = context('attach');
    savePin(ctx, url, tls.cert);
    const attached = await attachDyno(new ApiClient(url, 'tok', pinnedCa(ctx, url)), ctx, 'app', 'run.1', false);
    expect((await attached.events.next()).value).toEqual({ exit: 0 });
    attached.close();
    // Without the pin the same call is refused by TLS, with what to run.
    await expect(attachDyno(new ApiClient(url, 'tok'), ctx, 'app', 'run.1', false)).rejects.toThrow(/self-signed certificate[\s\S]*berth login --api-url/);
  });

  it("the API client's fetch trusts the pinned certificate besides the system's CAs", async () => {
    const ctx = context('fetch');
    savePin(ctx, url, tls.cert);
    const res = await new ApiClient(url, 'tok', pinnedCa(ctx, url)).fetch(`${url}/x`);
    expect(res.status).toBe(200);
    await res.text();
    await expect(new ApiClient(url, 'tok', other.cert).get('/x')).rejects.toThrow(/Cannot reach the Berth API/);
  });
});
