import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createCa, issueLeaf } from '../../src/cluster/pki.js';
import { EtcdStore, StoreErrorCode, isStoreError, openStore } from '../../src/store/index.js';
import { freePort } from '../support/ports.js';

const dir = mkdtempSync(join(tmpdir(), 'berth-badinput-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function codeOf(fn: () => unknown): { code: string; message: string } {
  try {
    fn();
  } catch (err) {
    return { code: isStoreError(err) ? err.code : 'not a StoreError', message: (err as Error).message };
  }
  return { code: 'no error', message: '' };
}

describe('store URLs', () => {
  it.each([
    ['not a url', 'is not a URL'],
    ['postgres://db/berth', 'unknown scheme postgres'],
    ['sqlite://host/state.db', 'absolute path'],
    ['sqlite:///', 'missing the database file path'],
    ['sqlite:///tmp/x.db?sync=sometimes', 'sync must be full or normal'],
    ['etcd://127.0.0.1', 'is not host:port'],
    ['etcd://127.0.0.1:99999', 'is not host:port'],
    ['etcd://a:1,,b:2', 'is not host:port'],
  ])('rejects %s with invalid_store_url naming the problem', (url, says) => {
    const { code, message } = codeOf(() => openStore(url));
    expect(code).toBe(StoreErrorCode.InvalidUrl);
    expect(message).toContain(says);
  });

  it('lists the accepted forms when the scheme is unknown', () => {
    expect(codeOf(() => openStore('redis://x')).message).toMatch(/sqlite:\/\/\/.*etcd:\/\/.*memory:\/\//);
  });
  it('refuses an etcd without TLS with store_insecure, saying why and what to do', () => {
    const { code, message } = codeOf(() => openStore('etcd://127.0.0.1:2379'));
    expect(code).toBe(StoreErrorCode.Insecure);
    expect(message).toContain('without TLS or authentication');
    expect(message).toContain("read every app's config and write units that run code as root on every machine");
    expect(message).toMatch(/--cluster-init.*--server URL --token TOKEN.*--store-insecure/);
  });

  it('opens an etcd without TLS when insecure is accepted, and one with TLS as etcd+tls', async () => {
    const open = openStore('etcd://127.0.0.1:2379,127.0.0.2:2379', { insecure: true });
    expect(open.description).toBe('etcd://127.0.0.1:2379,127.0.0.2:2379');
    await open.close();
    const ca = await createCa('bad-input CA');
    const client = await issueLeaf(ca, { commonName: 'root', usages: ['client'], days: 1 });
    const secured = openStore('etcd://127.0.0.1:2379', { etcdTls: { ca: ca.cert, ...client } });
    expect(secured.description).toBe('etcd+tls://127.0.0.1:2379');
    await secured.close();
    // TLS material that is not PEM is named before any connection is tried.
    const bad = codeOf(() => openStore('etcd://127.0.0.1:2379', { etcdTls: { ca: ca.cert, cert: client.cert, key: 'not a key' } }));
    expect(bad.code).toBe(StoreErrorCode.InvalidArgument);
    expect(bad.message).toContain('the client key is not valid PEM');
  });
});

describe('sqlite files', () => {
  it('refuses a file that is not a database with store_corrupt, naming the file, and leaves it alone', () => {
    const file = join(dir, 'garbage.db');
    const garbage = 'this is not a sqlite database, just text '.repeat(200);
    writeFileSync(file, garbage);
    const { code, message } = codeOf(() => openStore(`sqlite://${file}`));
    expect(code).toBe(StoreErrorCode.Corrupt);
    expect(message).toContain(file);
  });

  it('refuses a SQLite database that is not a Berth store', () => {
    const file = join(dir, 'other.db');
    execFileSync(process.execPath, ['-e', `const D=require('better-sqlite3');const d=new D(${JSON.stringify(file)});d.exec('create table users(id)');d.close()`]);
    expect(codeOf(() => openStore(`sqlite://${file}`)).code).toBe(StoreErrorCode.Corrupt);
  });

  it('reports a store the process cannot write as store_read_only', async () => {
    const ro = join(dir, 'readonly');
    mkdirSync(ro);
    chmodSync(dir, 0o755);
    const file = join(ro, 'state.db');
    await openStore(`sqlite://${file}`).close();
    chmodSync(file, 0o444);
    chmodSync(ro, 0o555);
    // Root ignores file modes, so the open runs as an unprivileged user, the way a real operator
    // would meet a store they do not own.
    const asUser = process.getuid?.() === 0 ? ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'] : [];
    const out = execFileSync(asUser[0] ?? process.execPath, [
      ...asUser.slice(1),
      ...(asUser.length ? [process.execPath] : []),
      '--import',
      'tsx',
      join(import.meta.dirname, 'fixtures/open-store.ts'),
      `sqlite://${file}`,
    ], { env: { ...process.env, TSX_TSCONFIG_PATH: join(import.meta.dirname, '../../tsconfig.json') }, cwd: join(import.meta.dirname, '../..') });
    const result = JSON.parse(out.toString().trim().split('\n').pop() ?? '{}') as { ok: boolean; code?: string; message?: string };
    expect(result.ok).toBe(false);
    expect(result.code).toBe(StoreErrorCode.ReadOnly);
    expect(result.message).toContain(file);
  });
});

describe('etcd endpoints', () => {
  it('gives up on an unreachable etcd with a retryable store_unavailable naming the endpoint', async () => {
    const port = await freePort();
    const store = new EtcdStore({ endpoints: [`127.0.0.1:${port}`], retryForMs: 1500, callTimeoutMs: 500 });
    const started = Date.now();
    const err = await store.put('/k', 'v').catch((e: unknown) => e);
    await store.close();
    expect(isStoreError(err, StoreErrorCode.Unavailable)).toBe(true);
    expect(isStoreError(err) && err.retryable).toBe(true);
    expect((err as Error).message).toContain(`127.0.0.1:${port}`);
    // It retried with backoff for the time it was given rather than failing at the first refusal.
    expect(Date.now() - started).toBeGreaterThanOrEqual(1400);
  });
});
