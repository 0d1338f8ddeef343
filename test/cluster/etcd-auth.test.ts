import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ETCD_USERS, enableEtcdAuth } from '../../src/cluster/etcd-auth.js';
import { createCa, issueLeaf } from '../../src/cluster/pki.js';
import { EtcdStore, isStoreError, StoreErrorCode, type EtcdTls, type Store } from '../../src/store/index.js';
import { EtcdServer } from '../support/etcd-server.js';

/** One secured etcd (TLS, client certificates, auth on) for the whole file. */
let server: EtcdServer;
const opened: Store[] = [];

beforeAll(async () => {
  server = await EtcdServer.start({ secure: true });
});
afterAll(async () => {
  for (const s of opened) await s.close();
  await server?.stop();
});

const root = (): EtcdStore => storeAs(server.tls);

function storeAs(tls: EtcdTls | undefined): EtcdStore {
  const s = new EtcdStore({ endpoints: [server.endpoint], ...(tls ? { tls } : {}), retryForMs: 300, callTimeoutMs: 3000 });
  opened.push(s);
  return s;
}

async function failure(p: Promise<unknown>): Promise<{ code?: string; retryable?: boolean; message: string }> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, 'the call succeeded').toBeInstanceOf(Error);
  return isStoreError(err) ? { code: err.code, retryable: err.retryable, message: err.message } : { message: String((err as Error).message) };
}

describe('who gets in', () => {
  it('root, by its certificate alone, reads, writes and compacts anywhere', async () => {
    const admin = root();
    expect(admin.description).toBe(`etcd+tls://${server.endpoint}`);
    const { revision } = await admin.put('/outside/berth', 'x');
    await admin.put('/berth/apps/a', 'y');
    expect((await admin.get('/outside/berth'))?.value).toBe('x');
    await admin.compact(revision);
  });

  it('berth-agent reads and watches /berth/, writes only its machine, dyno, router and network keys', async () => {
    const agent = storeAs(await server.clientCreds(ETCD_USERS.agent));
    const watch = await agent.watch('/berth/status/', { prefix: true });
    const { revision } = await agent.put('/berth/status/m1.web.1', 'v');
    expect(await agent.currentRevision()).toBeGreaterThanOrEqual(revision);
    const next = await watch[Symbol.asyncIterator]().next();
    expect(next.value?.events[0]?.kv.key).toBe('/berth/status/m1.web.1');
    watch.close();
    // It reads what it runs, but writes no release, unit, app, user or token.
    expect((await agent.get('/berth/apps/a'))?.value).toBe('y');
    for (const key of ['/berth/apps/a', '/berth/units/m1/u1', '/berth/tokens/abc', '/berth/users/u', '/berth/cluster/machines/m1']) {
      expect((await failure(agent.put(key, 'forged'))).code, key).toBe(StoreErrorCode.PermissionDenied);
    }
    expect((await failure(agent.delete('/berth/apps/', { prefix: true }))).code).toBe(StoreErrorCode.PermissionDenied);
    const lease = await agent.grantLease(10);
    await agent.put('/berth/machines/m1', 'up', { lease: lease.id });
    await agent.revokeLease(lease.id);

    const outside = await failure(agent.put('/outside/berth', 'x'));
    expect(outside.code).toBe(StoreErrorCode.PermissionDenied);
    expect(outside.retryable).toBe(false);
    expect(outside.message).toMatch(/refused this client's certificate.*permission denied/);
    expect((await failure(agent.get('/outside/berth'))).code).toBe(StoreErrorCode.PermissionDenied);
    expect((await failure(agent.delete('/', { prefix: true }))).code).toBe(StoreErrorCode.PermissionDenied);
    expect((await root().get('/outside/berth'))?.value).toBe('x');
  });

  it('refuses a certificate from the cluster CA whose CN is no etcd user', async () => {
    const stranger = storeAs(await server.clientCreds('mallory'));
    const err = await failure(stranger.get('/berth/apps/a'));
    expect(err.code).toBe(StoreErrorCode.PermissionDenied);
    expect((await failure(stranger.put('/berth/apps/a', 'owned'))).code).toBe(StoreErrorCode.PermissionDenied);
  });

  it('refuses a certificate from another CA, even one named root, at the handshake', async () => {
    const otherCa = await createCa('berth test etcd CA');
    const forged = await issueLeaf(otherCa, { commonName: ETCD_USERS.server, usages: ['client'] });
    const err = await failure(storeAs({ ca: server.tls.ca, ...forged }).get('/berth/apps/a'));
    expect(err.code).toBe(StoreErrorCode.PermissionDenied);
    expect(err.message).toMatch(/bad certificate/);
  });

  it('refuses a TLS client without a certificate, and a plain client', async () => {
    const noCert = new Etcd3({ hosts: `https://${server.endpoint}`, credentials: { rootCertificate: Buffer.from(server.tls.ca) }, dialTimeout: 3000 });
    try {
      await expect(noCert.get('/berth/apps/a').string()).rejects.toThrow(/bad certificate|certificate required/);
    } finally {
      noCert.close();
    }
    const plain = await failure(storeAs(undefined).get('/berth/apps/a'));
    expect(plain.code).toBe(StoreErrorCode.Unavailable);
  });

  it('does not trust an etcd whose certificate another CA signed', async () => {
    const otherCa = await createCa('someone else');
    const err = await failure(storeAs({ ...server.tls, ca: otherCa.cert }).get('/berth/apps/a'));
    expect(err.code).toBe(StoreErrorCode.Unavailable);
    expect(err.retryable).toBe(false);
    expect(err.message).toMatch(/does not trust/);
  });
});

describe('enableEtcdAuth', () => {
  it('is idempotent, and leaves no password to log in with', async () => {
    await enableEtcdAuth({ endpoints: [server.endpoint], tls: server.tls });
    const admin = new Etcd3({
      hosts: `https://${server.endpoint}`,
      credentials: { rootCertificate: Buffer.from(server.tls.ca), certChain: Buffer.from(server.tls.cert), privateKey: Buffer.from(server.tls.key) },
      dialTimeout: 3000,
    });
    try {
      expect((await admin.auth.userList()).users.sort()).toEqual([ETCD_USERS.agent, ETCD_USERS.server].sort());
      expect((await admin.auth.userGet({ name: ETCD_USERS.server })).roles).toEqual(['root']);
      expect((await admin.auth.userGet({ name: ETCD_USERS.agent })).roles).toEqual([ETCD_USERS.agent]);
      const perms = (await admin.auth.roleGet({ role: ETCD_USERS.agent })).perm.map((p) => [p.permType, p.key.toString(), p.range_end.toString()]);
      expect(perms).toEqual(
        expect.arrayContaining([
          ['Read', '/berth/', '/berth0'],
          ['Readwrite', '/berth/machines/', '/berth/machines0'],
          ['Readwrite', '/berth/network/', '/berth/network0'],
          ['Read', '\u0000', ''],
        ]),
      );
      expect(perms).toHaveLength(7);
      // Users made without a password cannot authenticate with one.
      await expect(admin.auth.authenticate({ name: ETCD_USERS.server, password: 'root' })).rejects.toThrow(/authentication failed/);
    } finally {
      admin.close();
    }
    // Still enabled: a certificate with a stranger's CN gets nothing.
    expect((await failure(storeAs(await server.clientCreds('mallory')).get('/berth/x'))).code).toBe(StoreErrorCode.PermissionDenied);
  });

  it('says which step failed, with a coded error', async () => {
    const agentCreds = await server.clientCreds(ETCD_USERS.agent);
    const err = await enableEtcdAuth({ endpoints: [server.endpoint], tls: agentCreds }).then(
      () => undefined,
      (e: unknown) => e as Error & { code?: string },
    );
    expect(err?.code).toBe('etcd_auth_failed');
    expect(err?.message).toMatch(/add role root failed: .*permission denied/);
  });
});
