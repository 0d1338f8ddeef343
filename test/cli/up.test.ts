import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openStore } from '../../src/store/index.js';
import { apiClient, type ApiReply } from '../support/api.js';
import { failBerth, startBerth } from '../support/berth-process.js';
import { EtcdServer } from '../support/etcd-server.js';
import { testNetwork, upFlags } from '../support/network.js';

const dir = mkdtempSync(join(tmpdir(), 'berth-up-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A GET to a node's API, as `token` if given. */
const get = (apiUrl: string, path: string, token?: string): Promise<ApiReply<Record<string, unknown>>> => apiClient(apiUrl, token)('GET', path);

describe('berth up', () => {
  it('creates the data dir and store, makes the first admin once, serves the API, and stops cleanly', async () => {
    const dataDir = join(dir, 'node1');
    const net = testNetwork();
    const first = await startBerth(['--data-dir', dataDir, ...upFlags(net)]);
    let subnet = '';
    try {
      expect(first.summary).toMatchObject({ data_dir: dataDir, store: `sqlite://${join(dataDir, 'state.db')}`, domain: 'berth.localhost' });
      // The overlay it was asked for, and a /24 of it for this machine.
      expect(first.summary.network).toMatchObject({ network: net.overlay, backend: 'host-gw', public_ip: expect.stringMatching(/^\d+\.\d+\.\d+\.\d+$/) });
      subnet = (first.summary.network as { subnet: string }).subnet;
      expect(subnet.startsWith(net.overlay.replace(/0\.0\/16$/, ''))).toBe(true);
      expect(subnet).toMatch(/\/24$/);
      expect(existsSync(join(dataDir, 'state.db'))).toBe(true);
      // Traversable (builds reach their workspace by name), not listable; what is inside is private.
      expect(statSync(dataDir).mode & 0o777).toBe(0o711);
      expect(statSync(join(dataDir, 'state.db')).mode & 0o777).toBe(0o600);
      const token = String(first.summary.admin_token);
      expect(token).toMatch(/^berth_/);
      expect(readFileSync(join(dataDir, 'admin.token'), 'utf8').trim()).toBe(token);
      expect(statSync(join(dataDir, 'admin.token')).mode & 0o777).toBe(0o600);
      expect((await get(first.apiUrl, '/health')).status).toBe(200);
      expect((await get(first.apiUrl, '/account')).status).toBe(401);
      expect((await get(first.apiUrl, '/account', token)).body.email).toBe('admin@berth.localhost');
    } finally {
      expect(await first.stop()).toBe(0);
    }
    // A second start finds the admin and prints no token; the first token still works. The
    // machine takes its subnet back.
    const second = await startBerth(['--data-dir', dataDir, ...upFlags(net)]);
    try {
      expect(second.summary.admin_token).toBeNull();
      expect((second.summary.network as { subnet: string }).subnet).toBe(subnet);
      const token = readFileSync(join(dataDir, 'admin.token'), 'utf8').trim();
      expect((await get(second.apiUrl, '/account', token)).status).toBe(200);
    } finally {
      expect(await second.stop()).toBe(0);
    }
    const store = openStore(`sqlite://${join(dataDir, 'state.db')}`);
    expect(JSON.parse((await store.get('/berth/platform'))?.value ?? '{}')).toHaveProperty('created_at');
    await store.close();
  });

  it('takes the admin token from BERTH_BOOTSTRAP_TOKEN and runs on a real etcd given --store etcd://', async () => {
    const etcd = await EtcdServer.start();
    try {
      const token = 'automation-token-0123456789abcdef';
      const run = await startBerth(['--data-dir', join(dir, 'node2'), '--store', etcd.url, '--store-insecure'], { BERTH_BOOTSTRAP_TOKEN: token });
      try {
        expect(run.summary).toMatchObject({ store: etcd.url, admin_token: token });
        expect((await get(run.apiUrl, '/account', token)).status).toBe(200);
      } finally {
        expect(await run.stop()).toBe(0);
      }
    } finally {
      await etcd.stop();
    }
  });

  it('refuses a malformed store URL or port with a clear message and exit code 1', async () => {
    const bad = await failBerth(['--data-dir', join(dir, 'node3'), '--store', 'mysql://db']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('unknown scheme mysql');
    expect(bad.stderr).toContain('invalid_store_url');
    const open = await failBerth(['--data-dir', join(dir, 'node3'), '--store', 'etcd://127.0.0.1:2379']);
    expect(open.code).toBe(1);
    expect(open.stderr).toContain('store_insecure');
    expect(open.stderr).toContain('--store-insecure');
    const port = await failBerth(['--data-dir', join(dir, 'node4'), '--api-port', 'http']);
    expect(port.code).toBe(1);
    expect(port.stderr).toContain('--api-port must be a port number');
    for (const [flags, message] of [
      [['--backend', 'gre'], '--backend must be vxlan or host-gw'],
      [['--overlay', '10.244.0.0'], '--overlay must be an IPv4 range'],
      [['--network-name', 'much-too-long'], '--network-name must be 1-6 lowercase letters'],
      [['--public-ip', 'host.example'], '--public-ip must be an IPv4 address'],
    ] as const) {
      const r = await failBerth(['--data-dir', join(dir, 'node5'), ...flags]);
      expect(r.code, flags.join(' ')).toBe(1);
      expect(r.stderr).toContain(message);
    }
  });
});
