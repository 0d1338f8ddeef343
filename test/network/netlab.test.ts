import { execFileSync, spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLab, startEtcdIn, type Lab, type LabHost } from '../support/netlab.js';
import { until } from '../support/until.js';

/** The lab itself: namespaces, veths and the bridge are real; the suite runs as root. */

const ping = (from: LabHost, to: LabHost): Promise<number> => from.exec('ping', ['-c1', '-W1', to.address], { timeoutMs: 5000 }).then((r) => r.code);

const belongs = (prefix: string, n: string): boolean => n.startsWith(prefix) && n.length > prefix.length && !/^\d/.test(n.slice(prefix.length));

function namespaces(prefix: string): string[] {
  const names = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n').map((l) => l.split(' ')[0] ?? '');
  return names.filter((n) => belongs(prefix, n));
}

function rootLinks(prefix: string): string[] {
  const names = execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).split('\n').map((l) => /^\d+: ([^:@\s]+)/.exec(l)?.[1] ?? '');
  return names.filter((n) => belongs(prefix, n));
}

const leftovers = (prefix: string): string[] => [...namespaces(prefix), ...rootLinks(prefix)];

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

// A tiny HTTP server bound to the host's underlay address, answering with that address.
const SERVER = "require('http').createServer((q, s) => s.end('hello from ' + process.argv[1])).listen(8080, process.argv[1])";
const CLIENT = 'fetch(process.argv[1], { signal: AbortSignal.timeout(2000) }).then((r) => r.text()).then((t) => console.log(t))';

describe.skipIf(process.getuid?.() !== 0)('network lab (namespace hosts on one bridge)', () => {
  let lab: Lab;
  let createMs = 0;

  beforeAll(async () => {
    const started = performance.now();
    lab = await createLab({ hosts: 3 });
    createMs = performance.now() - started;
  });

  afterAll(async () => {
    await lab?.destroy();
  });

  it('builds three hosts and the internet host quickly, named and addressed from its prefix', async () => {
    console.log(`3-host lab created in ${createMs.toFixed(0)} ms`);
    expect(createMs).toBeLessThan(1500);
    const id = lab.prefix.slice(2);
    expect(lab.prefix.length).toBeLessThanOrEqual(4);
    expect(lab.underlay).toBe(`198.18.${id}.0/24`);
    expect(lab.hosts.map((h) => [h.name, h.netns, h.address])).toEqual(
      [1, 2, 3].map((i) => [`${lab.prefix}h${i}`, `/run/netns/${lab.prefix}h${i}`, `198.18.${id}.${i}`]),
    );
    expect(lab.internet.address).toBe(`198.18.${id}.250`);
    const h1 = lab.hosts[0]!;
    expect((await h1.exec('cat', ['/proc/sys/net/ipv4/ip_forward'])).stdout.trim()).toBe('1');
    expect((await h1.exec('ip', ['route', 'show', 'default'])).stdout).toContain(`via ${lab.internet.address} dev eth0`);
    expect((await h1.exec('ping', ['-c1', '-W1', '127.0.0.1'])).code).toBe(0);
    // Five namespaces, and nothing of the lab on the real host's network.
    expect(namespaces(lab.prefix).sort()).toEqual([...lab.hosts.map((h) => h.name), `${lab.prefix}i`, `${lab.prefix}u`].sort());
    expect(rootLinks(lab.prefix)).toEqual([]);
  });

  it('every host pings every other host and the internet host', async () => {
    const all = [...lab.hosts, lab.internet];
    const pairs = all.flatMap((a) => all.filter((b) => b !== a).map((b) => [a, b] as const));
    const codes = await Promise.all(pairs.map(([a, b]) => ping(a, b)));
    expect(pairs.map(([a, b], i) => `${a.name}->${b.name}:${codes[i]}`)).toEqual(pairs.map(([a, b]) => `${a.name}->${b.name}:0`));
  });

  it('carries a TCP connection from one host to a server in another', async () => {
    const [h1, h2] = lab.hosts as [LabHost, LabHost];
    const server = h1.spawn(process.execPath, ['-e', SERVER, h1.address]);
    const url = `http://${h1.address}:8080/`;
    const answer = await until('the server in h1 to answer h2', async () => {
      const r = await h2.exec(process.execPath, ['-e', CLIENT, url], { timeoutMs: 5000 });
      return r.code === 0 && r.stdout.trim();
    });
    expect(answer).toBe(`hello from ${h1.address}`);
    server.kill('SIGKILL');
  });

  it('partitions a host off the bridge and heals it', async () => {
    const [h1, h2, h3] = lab.hosts as [LabHost, LabHost, LabHost];
    await lab.partition(h3);
    const [cutIn, cutOut, others] = await Promise.all([ping(h1, h3), ping(h3, lab.internet), ping(h1, h2)]);
    expect(cutIn).not.toBe(0);
    expect(cutOut).not.toBe(0);
    expect(others).toBe(0);
    // The host keeps its own routes while cut off, as with a pulled cable.
    expect((await h3.exec('ip', ['route', 'show', 'default'])).stdout).toContain('via');
    await lab.heal(h3);
    // ARP for an address tried during the partition may still be retrying (1 s apart): poll.
    await until('h1 to reach h3 again', async () => (await ping(h1, h3)) === 0, 5000);
    await until('h3 to reach the internet host again', async () => (await ping(h3, lab.internet)) === 0, 5000);
  });

  it('runs etcd in one host, healthy and usable from the others', async () => {
    const [h1, h2, h3] = lab.hosts as [LabHost, LabHost, LabHost];
    const etcd = await startEtcdIn(h1);
    try {
      expect(etcd.url).toBe(`http://${h1.address}:2379`);
      const env = { ETCDCTL_API: '3' };
      const health = await h2.exec('etcdctl', ['--endpoints', etcd.url, 'endpoint', 'health'], { env, timeoutMs: 10_000 });
      expect(health.code, health.stderr).toBe(0);
      expect(health.stdout + health.stderr).toContain('is healthy');
      expect((await h2.exec('etcdctl', ['--endpoints', etcd.url, 'put', 'lab', 'ok'], { env, timeoutMs: 10_000 })).code).toBe(0);
      expect((await h3.exec('etcdctl', ['--endpoints', etcd.url, 'get', '--print-value-only', 'lab'], { env, timeoutMs: 10_000 })).stdout.trim()).toBe('ok');
    } finally {
      await etcd.stop();
    }
    const after = await h2.exec('etcdctl', ['--endpoints', etcd.url, '--dial-timeout', '1s', '--command-timeout', '1s', 'endpoint', 'health'], { env: { ETCDCTL_API: '3' }, timeoutMs: 10_000 });
    expect(after.code).not.toBe(0);
  });

  it('a second lab while one is live gets another id; a pinned id held by a live process is refused', async () => {
    const second = await createLab({ hosts: 1 });
    try {
      expect(second.prefix).not.toBe(lab.prefix);
      expect(second.underlay).not.toBe(lab.underlay);
      expect(await ping(second.hosts[0]!, second.internet)).toBe(0);
      await expect(createLab({ hosts: 1, id: Number(lab.prefix.slice(2)) })).rejects.toThrow(/held by a live process/);
    } finally {
      await second.destroy();
    }
    expect(leftovers(second.prefix)).toEqual([]);
  });

  it('a gateway puts the test process on the bridge (.254, only the link route) and goes with destroy', async () => {
    const gw = await createLab({ hosts: 1, gateway: true });
    try {
      const id = gw.prefix.slice(2);
      expect(gw.gateway).toBe(`198.18.${id}.254`);
      expect(lab.gateway).toBeUndefined();
      const links = rootLinks(gw.prefix);
      expect(links).toHaveLength(1);
      expect(links[0]).toMatch(new RegExp(`^${gw.prefix}g[0-9a-f]{4}$`));
      // The address and its link route, nothing more: no default route, no other route through it.
      const addrs = execFileSync('ip', ['-o', '-4', 'addr', 'show', 'dev', links[0]!], { encoding: 'utf8' });
      expect(addrs).toContain(`inet ${gw.gateway}/24`);
      const routes = execFileSync('ip', ['-4', 'route', 'show', 'table', 'all', 'dev', links[0]!], { encoding: 'utf8' }).split('\n').filter((l) => l && !/^(local|broadcast) /.test(l));
      expect(routes).toHaveLength(1);
      expect(routes[0]).toMatch(new RegExp(`^${gw.underlay.replace(/\./g, '\\.')} proto kernel scope link src ${gw.gateway!.replace(/\./g, '\\.')}`));
      expect(execFileSync('ip', ['-6', 'route', 'show', 'table', 'all', 'dev', links[0]!], { encoding: 'utf8' }).trim()).toBe('');
      // The test process itself reaches a server in a host, and the host sees the gateway address.
      const h1 = gw.hosts[0]!;
      const server = h1.spawn(process.execPath, ['-e', "require('http').createServer((q, s) => s.end(q.socket.remoteAddress)).listen(8080, process.argv[1])", h1.address]);
      const seen = await until('the server in h1 to answer the test process', async () => {
        const r = await fetch(`http://${h1.address}:8080/`, { signal: AbortSignal.timeout(2000) }).catch(() => undefined);
        return r?.ok ? r.text() : undefined;
      });
      expect(seen).toBe(gw.gateway);
      server.kill('SIGKILL');
    } finally {
      await gw.destroy();
    }
    expect(leftovers(gw.prefix)).toEqual([]);
    expect(execFileSync('ip', ['-4', 'route', 'show', 'table', 'all'], { encoding: 'utf8' })).not.toContain(gw.underlay.split('/')[0]!);
  });

  it('destroy kills what the lab spawned and leaves no namespace or root link with its prefix, twice', async () => {
    const sleeper = lab.hosts[1]!.spawn('sleep', ['600'], { stdio: 'ignore' });
    await until('the sleeper to run', () => sleeper.pid !== undefined && alive(sleeper.pid));
    expect(leftovers(lab.prefix).length).toBeGreaterThan(0);
    await lab.destroy();
    await lab.destroy();
    expect(leftovers(lab.prefix)).toEqual([]);
    await until('the sleeper to be gone', () => !alive(sleeper.pid!), 3000);
  });

  it('createLab reaps what a crashed run with its prefix left (namespaces, their processes, root links)', async () => {
    // Id 99: far from the ids labs start at (their worker's), so no other suite's lab takes it meanwhile.
    const prefix = 'nl99';
    const stale = `${prefix}h7`;
    execFileSync('ip', ['netns', 'add', stale]);
    execFileSync('ip', ['link', 'add', `${stale}-dead`, 'type', 'bridge']);
    // A process left running inside the stale namespace, as after a crashed worker.
    const left = spawn('nsenter', [`--net=/run/netns/${stale}`, 'sleep', '600'], { stdio: 'ignore', detached: true });
    left.unref();
    await until('the orphan to run', () => left.pid !== undefined && alive(left.pid));
    expect(leftovers(prefix)).toEqual(expect.arrayContaining([stale, `${stale}-dead`]));
    const again = await createLab({ hosts: 1, id: 99 });
    try {
      expect(again.prefix).toBe(prefix);
      expect(again.underlay).toBe('198.18.99.0/24');
      expect(leftovers(prefix)).not.toContain(stale);
      expect(leftovers(prefix)).not.toContain(`${stale}-dead`);
      await until('the orphan to be killed', () => !alive(left.pid!), 3000);
      expect(await ping(again.hosts[0]!, again.internet)).toBe(0);
    } finally {
      await again.destroy();
    }
    expect(leftovers(prefix)).toEqual([]);
  });
});
