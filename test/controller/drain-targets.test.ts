import { lookup } from 'node:dns';
import { connect, createServer, type AddressInfo, type Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { buildApi, createServices, type Services } from '../../src/controller/index.js';
import { DrainTargets, guardedLookup, isInternalAddress } from '../../src/controller/drains/targets.js';
import { put } from '../../src/domain/codec.js';
import { keys } from '../../src/domain/keys.js';
import { createLogger } from '../../src/domain/log.js';
import { codecs } from '../../src/domain/records.js';
import { openStore, type Store } from '../../src/store/index.js';

const log = createLogger('test', { level: 'silent' });

// Public addresses standing in for the cluster's machines: nothing here connects to them (the
// drain forwarder is not started), they are only compared.
const MACHINE = '93.184.216.34';
const SERVER = '93.184.216.40';
const SUBNET_EXTRA = '2.16.0.9';
const OVERLAY = '44.128.0.0/16';

let store: Store;
let services: Services;
let api: FastifyInstance;
let admin: string;
let alice: string;

async function addDrain(token: string, url: string): Promise<{ status: number; body: { id?: string; message?: string } }> {
  const r = await api.inject({ method: 'POST', url: '/apps/drained/log-drains', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, payload: JSON.stringify({ url }) });
  return { status: r.statusCode, body: JSON.parse(r.body) };
}

async function clusterRecords(s: Store, machineAddress: string): Promise<void> {
  const now = new Date().toISOString();
  await put(s, keys.machine('m1'), codecs.machine, { id: 'm1', name: 'm1', address: machineAddress, tags: {}, capacity: { memoryBytes: 1 << 30, cpus: 2 }, agent_version: '1' });
  await put(s, keys.server('s1'), codecs.server, { id: 's1', name: 's1', address: SERVER, api_url: `http://${SERVER}:5000`, join_url: `https://${SERVER}:5443`, etcd: null, started_at: now });
  await put(s, keys.subnet('44.128.1.0/24'), codecs.subnet, { machine: 'm1', public_ip: machineAddress, addresses: [SUBNET_EXTRA], backend: { type: 'vxlan' }, acquired_at: now });
  await put(s, keys.networkConfig(), codecs.networkConfig, { network: OVERLAY, subnet_len: 24, backend: { type: 'host-gw' }, created_at: now });
}

beforeAll(async () => {
  store = openStore('memory://');
  await clusterRecords(store, MACHINE);
  services = createServices(store, log, { domain: 'berth.test', apiUrl: 'http://127.0.0.1:5000' });
  api = buildApi(services, log);
  await services.lookups.start();
  admin = (await services.users.create('admin@example.com', { admin: true })).token;
  alice = (await services.users.create('alice@example.com')).token;
  await api.inject({ method: 'POST', url: '/apps', headers: { authorization: `Bearer ${alice}`, 'content-type': 'application/json' }, payload: '{"name":"drained"}' });
});

afterAll(async () => {
  await api.close();
  await services.close();
  await store.close();
});

describe('special ranges', () => {
  it('passes only globally routable unicast addresses', () => {
    for (const a of ['10.1.2.3', '172.16.0.1', '172.31.255.254', '192.168.1.1', '100.64.0.1', '100.127.255.254', '127.0.0.1', '127.9.9.9', '169.254.169.254', '0.0.0.0', '0.1.2.3', 'fc00::1', 'fd12:3456::1', 'fe80::1', '::1', '::', '::ffff:10.0.0.1', '::ffff:127.0.0.1', '::ffff:169.254.169.254', '224.0.0.1', '255.255.255.255', '64:ff9b::a00:1']) {
      expect(isInternalAddress(a), a).toBe(true);
    }
    for (const a of ['8.8.8.8', '172.32.0.1', '100.128.0.1', '192.169.0.1', '2001:4860:4860::8888', '::ffff:8.8.8.8']) expect(isInternalAddress(a), a).toBe(false);
  });
});

describe("a tenant's drain", () => {
  it('may not target a private or special range (422 naming why); an admin may', async () => {
    for (const host of ['10.1.2.3', '172.16.0.1', '192.168.1.1', '100.64.0.1', '127.0.0.1', '169.254.169.254', '0.0.0.0', '[fc00::1]', '[fe80::1]', '[::1]', '[::ffff:10.0.0.1]', 'localhost']) {
      const r = await addDrain(alice, `syslog://${host}:514`);
      expect(r.status, host).toBe(422);
      expect(r.body).toMatchObject({ id: 'invalid_params', message: expect.stringMatching(/is an internal address/) });
    }
    expect((await addDrain(admin, 'syslog://10.1.2.3:514')).status).toBe(201);
  });

  it("may not target any of the cluster's own addresses or its overlay range", async () => {
    for (const host of [MACHINE, SERVER, SUBNET_EXTRA, '44.128.7.9', `[::ffff:${MACHINE}]`]) {
      const r = await addDrain(alice, `syslog://${host}:514`);
      expect(r.status, host).toBe(422);
      expect(r.body.message).toMatch(/address of this Berth cluster/);
    }
    expect((await addDrain(alice, 'syslog://93.184.216.35:6514')).status).toBe(201);
  });
});

describe('at connect time', () => {
  let listener: Server;
  let port: number;
  let accepted = 0;
  beforeAll(async () => {
    listener = createServer((s) => {
      accepted++;
      s.destroy();
    });
    await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
    port = (listener.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((r) => listener.close(() => r())));

  const attempt = (lookup: typeof guardedLookup): Promise<string> =>
    new Promise((resolve) => {
      const socket = connect({ host: 'localhost', port, lookup });
      socket.on('connect', () => (socket.destroy(), resolve('connected')));
      socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    });

  it('resolves once and refuses a name that resolves inside, before any connection is made', async () => {
    const targets = new DrainTargets({ store, log });
    await targets.fresh();
    expect(await attempt(guardedLookup)).toBe('EACCES');
    expect(await attempt(targets.lookup)).toBe('EACCES');
    expect(accepted).toBe(0);
    // The same listener is reachable without the guard: the refusal above was the guard's.
    expect(await attempt((h, o, cb) => lookup(h, o, cb as never))).toBe('connected');
    expect(accepted).toBe(1);
  });

  it('learns a machine that joins after the drain was added, within maxAgeMs', async () => {
    const s = openStore('memory://');
    try {
      const targets = new DrainTargets({ store: s, log, maxAgeMs: 0 });
      await targets.fresh();
      expect(targets.refused('93.184.216.99')).toBe(false);
      await clusterRecords(s, '93.184.216.99');
      await targets.fresh();
      expect(targets.refused('93.184.216.99')).toBe(true);
      expect(targets.refused('44.128.200.1')).toBe(true);
      expect(targets.refused('93.184.216.98')).toBe(false);
    } finally {
      await s.close();
    }
  });

  it("a tenant's sender refuses an IP literal the guard refuses at connect time, with no packet sent", async () => {
    const { SyslogSender } = await import('../../src/controller/drains/syslog.js');
    const before = accepted;
    // A guard that refuses loopback as the cluster's own address would (what DrainTargets passes):
    // net.connect never calls a lookup for an IP literal, so the sender must put it through one.
    const guard = {
      lookup: ((h: string, o: object, cb: (err: NodeJS.ErrnoException | null, address: string, family: number) => void) =>
        h === '127.0.0.1' ? cb(Object.assign(new Error('the cluster\'s'), { code: 'EACCES' }), '', 4) : lookup(h, o, cb)) as unknown as typeof guardedLookup,
    };
    const sender = new SyslogSender({ host: '127.0.0.1', port, log, guard, minBackoffMs: 20, maxBackoffMs: 40 });
    sender.send('<190>1 - - - - - - hi');
    await new Promise((r) => setTimeout(r, 200));
    sender.close();
    expect(accepted).toBe(before);
  });

  it("waits for its first read of the cluster's addresses before it lets a connect through", async () => {
    const s = openStore('memory://');
    try {
      await clusterRecords(s, MACHINE);
      // A store that answers slower than DNS does, as etcd across machines may.
      const slow = new Proxy(s, { get: (t, k) => (k === 'range' || k === 'get' ? async (...a: unknown[]) => (await new Promise((r) => setTimeout(r, 100)), (t[k] as (...x: unknown[]) => unknown)(...a)) : Reflect.get(t, k)) }) as Store;
      const targets = new DrainTargets({ store: slow, log });
      // Called directly with an address for a name: dns.lookup answers it without the network.
      const code = await new Promise<string>((resolve) =>
        targets.lookup(MACHINE, { all: true }, (err) => resolve(err ? ((err as NodeJS.ErrnoException).code ?? err.message) : 'allowed')),
      );
      expect(code).toBe('EACCES');
    } finally {
      await s.close();
    }
  });

  it("refuses every connect while the cluster's addresses cannot be read at all", async () => {
    const s = openStore('memory://');
    try {
      const broken = new Proxy(s, { get: (t, k) => (k === 'range' || k === 'get' ? async () => Promise.reject(new Error('store down')) : Reflect.get(t, k)) }) as Store;
      const targets = new DrainTargets({ store: broken, log });
      const code = await new Promise<string>((resolve) => targets.lookup('93.184.216.99', {}, (err) => resolve(err ? ((err as NodeJS.ErrnoException).code ?? err.message) : 'allowed')));
      expect(code).toBe('EAGAIN');
    } finally {
      await s.close();
    }
  });
});
