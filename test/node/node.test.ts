import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, type Logger } from '../../src/domain/log.js';
import { keys } from '../../src/domain/keys.js';
import { startNode, type PlatformNodeOptions } from '../../src/node/index.js';
import { testNetwork } from '../support/network.js';
import { freePort } from '../support/ports.js';
import { CGROUP_ROOT } from '../support/sandbox.js';

/** A debug logger whose lines are kept, to read the node's shutdown steps from. */
function recordingLogger(): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { log: createLogger('test', { level: 'debug', destination: sink }), lines };
}

const stoppedParts = (lines: Record<string, unknown>[]): unknown[] => lines.filter((l) => l.msg === 'stopped').map((l) => l.part);

let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'berth-node-'));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** A controller and a scheduler on a sqlite store in the data dir: no router, agent or builder, so no nginx or bubblewrap. */
async function options(log: Logger, port?: number): Promise<PlatformNodeOptions> {
  const dataDir = join(dir, 'data');
  return {
    dataDir,
    log,
    store: `sqlite://${join(dataDir, 'state.db')}`,
    sandbox: { cgroupRoot: CGROUP_ROOT },
    roles: { controller: { host: '127.0.0.1', port: port ?? (await freePort()), domain: 'berth.test' }, scheduler: { ttl: 2 } },
  };
}

describe('startNode (controller + scheduler, in-process)', () => {
  let token: string;

  it('bootstraps the store, serves the API, and stops in order, once', async () => {
    const { log, lines } = recordingLogger();
    const o = await options(log);
    const node = await startNode(o);
    const { summary } = node;
    expect(summary.api_url).toBe(`http://127.0.0.1:${o.roles.controller.port}`);
    expect(summary).toMatchObject({ data_dir: o.dataDir, domain: 'berth.test', ssh_port: null, http_port: null, https_port: null, rendezvous_port: null, rendezvous_cert: null });
    expect(summary.store).toContain('state.db');
    expect(summary.revision).toBeGreaterThan(0);
    expect(summary.admin_token).toMatch(/\S{16,}/);
    token = summary.admin_token as string;
    expect(readFileSync(join(o.dataDir, 'admin.token'), 'utf8').trim()).toBe(token);
    expect(readFileSync(join(o.dataDir, 'cluster.token'), 'utf8').trim()).toMatch(/\S{16,}/);
    expect(node.unavailable).toEqual({});

    const res = await fetch(`${summary.api_url}/account`, { headers: { authorization: `Bearer ${token}`, accept: 'application/vnd.heroku+json; version=3' } });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ email: 'admin@berth.test' });
    // The scheduler runs: it campaigns for leadership in the node's store.
    await expect.poll(async () => (await node.store.range(keys.leader('scheduler'), { prefix: true })).kvs.length, { timeout: 10_000 }).toBeGreaterThan(0);

    await node.stop();
    expect(stoppedParts(lines)).toEqual(['scheduler', 'controller', 'store']);
    await expect(fetch(`${summary.api_url}/account`)).rejects.toThrow();
    await expect(node.store.get(keys.platform())).rejects.toThrow();
    // A second stop is harmless: it stops nothing again.
    await node.stop();
    expect(stoppedParts(lines)).toEqual(['scheduler', 'controller', 'store']);
  });

  it('starts again on the same data dir without a new admin token; the first still works', async () => {
    const { log } = recordingLogger();
    const cluster = readFileSync(join(dir, 'data', 'cluster.token'), 'utf8');
    const node = await startNode(await options(log));
    try {
      expect(node.summary.admin_token).toBeNull();
      expect(readFileSync(join(dir, 'data', 'admin.token'), 'utf8').trim()).toBe(token);
      expect(readFileSync(join(dir, 'data', 'cluster.token'), 'utf8')).toBe(cluster);
      const res = await fetch(`${node.summary.api_url}/account`, { headers: { authorization: `Bearer ${token}` } });
      expect(res.status).toBe(200);
    } finally {
      await node.stop();
    }
  });

  it('takes down what it made when a start fails half way', async () => {
    const { log, lines } = recordingLogger();
    const port = await freePort();
    const taken: Server = createServer();
    await new Promise<void>((resolve) => taken.listen(port, '127.0.0.1', resolve));
    try {
      await expect(startNode(await options(log, port))).rejects.toThrow(/EADDRINUSE/);
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
    // The API never listened; its services (the log database) and the store are closed.
    expect(stoppedParts(lines)).toEqual(['controller', 'store']);
  });
});

describe('startNode with a builder and an agent (the overlay network)', () => {
  it('starts the network before anything runs in its namespaces, hands it out, and stops it after them, before the store', async () => {
    const { log, lines } = recordingLogger();
    const dataDir = join(dir, 'net-data');
    const net = testNetwork();
    const node = await startNode({
      dataDir,
      log,
      store: `sqlite://${join(dataDir, 'state.db')}`,
      sandbox: { cgroupRoot: CGROUP_ROOT },
      network: net,
      roles: { controller: { host: '127.0.0.1', port: await freePort(), domain: 'berth.test' }, builder: { sshPort: await freePort() }, agent: {} },
    });
    try {
      const info = node.summary.network;
      expect(info).toMatchObject({ network: net.overlay, backend: 'host-gw' });
      expect(info?.subnet.startsWith(net.overlay.replace(/0\.0\/16$/, ''))).toBe(true);
      // The agent registered at the network's public address, and its subnet is leased to it.
      const machines = (await node.store.range(keys.machines(), { prefix: true })).kvs.map((kv) => JSON.parse(kv.value) as { id: string; address: string; ports?: unknown });
      expect(machines).toHaveLength(1);
      expect(machines[0]?.address).toBe(info?.public_ip);
      expect(machines[0]).not.toHaveProperty('ports');
      const subnet = await node.store.get(keys.subnet(info?.subnet ?? ''));
      expect(JSON.parse(subnet?.value ?? '{}')).toMatchObject({ machine: machines[0]?.id, public_ip: info?.public_ip });
    } finally {
      await node.stop();
    }
    expect(stoppedParts(lines)).toEqual(['one-off', 'agent', 'ssh', 'controller', 'slugs', 'network', 'store']);
    // Nothing of the network is left in the kernel: its table is gone.
    expect(execFileSync('nft', ['list', 'tables']).toString()).not.toContain(` ${net.name}\n`);
  });
});
