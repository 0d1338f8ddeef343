import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/domain/log.js';
import { startNode, type Node, type PlatformSummary } from '../../src/node/index.js';
import { testNetwork } from '../support/network.js';
import { freePort } from '../support/ports.js';
import { CGROUP_ROOT } from '../support/sandbox.js';

/**
 * A buildpack that prints 700 MB, pushed with git to a platform node running in this process:
 * the build is stopped with a clear message, this process's memory stays bounded, and the build
 * record keeps only the start and the end of what was printed.
 */

const TOKEN = 'flood-admin-token-0123456789abcdef';
let dir: string;
let node: Node<PlatformSummary>;
let api: string;

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(`${api}${path}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, accept: 'application/vnd.heroku+json; version=3', ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-flood-'));
  chmodSync(dir, 0o755);
  const port = await freePort();
  node = (await startNode({
    dataDir: join(dir, 'data'),
    log: createLogger('test', { level: 'silent' }),
    store: 'memory://',
    sandbox: { cgroupRoot: CGROUP_ROOT },
    network: testNetwork(),
    roles: { controller: { host: '127.0.0.1', port, domain: 'berth.test', bootstrapToken: TOKEN }, builder: { sshPort: 0, buildpackDirs: [dir] } },
  })) as Node<PlatformSummary>;
  api = node.summary.api_url;
}, 60_000);
afterAll(async () => {
  await node?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** `git push`, keeping only the end of what it prints (it prints megabytes of the build). */
function push(cwd: string): Promise<{ code: number; tail: string; bytes: number }> {
  return new Promise((resolve) => {
    const child = spawn('git', ['push', 'berth', 'main'], { cwd, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: cwd, GIT_TERMINAL_PROMPT: '0' } });
    let tail = '';
    let bytes = 0;
    const take = (d: Buffer): void => {
      bytes += d.length;
      tail = (tail + d.toString()).slice(-64 * 1024);
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    child.on('close', (code) => resolve({ code: code ?? 1, tail, bytes }));
  });
}

describe('a build that prints 700 MB', () => {
  it('is stopped with a clear message; memory and the stored output stay bounded', async () => {
    await call('POST', '/apps', { name: 'flood' });
    const bp = join(dir, 'bp-flood');
    mkdirSync(join(bp, 'bin'), { recursive: true });
    writeFileSync(join(bp, 'bin', 'detect'), '#!/bin/bash\necho Flood\n');
    writeFileSync(join(bp, 'bin', 'compile'), '#!/bin/bash\nyes | head -c 734003200\necho done printing\n');
    writeFileSync(join(bp, 'bin', 'release'), '#!/bin/bash\necho "--- {}"\n');
    execFileSync('chmod', ['-R', 'a+rx', bp]);
    await call('PATCH', '/apps/flood/config-vars', { BUILDPACK_URL: bp });
    const src = join(dir, 'src');
    mkdirSync(src);
    writeFileSync(join(src, 'README'), 'flood');
    const git = (...args: string[]): string => execFileSync('git', args, { cwd: src, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: src } }).toString();
    git('init', '-q', '-b', 'main');
    git('add', '.');
    git('-c', 'user.email=a@b', '-c', 'user.name=a', 'commit', '-qm', 'flood');
    const url = new URL(`${api}/flood.git`);
    url.username = 'git';
    url.password = TOKEN;
    git('remote', 'add', 'berth', url.toString());

    global.gc?.();
    const base = process.memoryUsage().rss;
    let peak = base;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
    const started = Date.now();
    const r = await push(src).finally(() => clearInterval(sampler));
    const growth = peak - base;
    console.log(`output flood: RSS ${Math.round(base / 1048576)} MB before, peak growth ${Math.round(growth / 1048576)} MB; git client got ${Math.round(r.bytes / 1048576)} MB in ${Date.now() - started} ms`);

    expect(r.code, r.tail.slice(-2000)).not.toBe(0);
    expect(r.tail).toMatch(/Build output exceeded 100 MB\./);
    expect(r.tail).toMatch(/Push rejected, failed to compile flood/);
    expect(r.tail).not.toMatch(/done printing/);
    // The pusher was streamed the start of it (16 MB), then the end, not the 100 MB printed: git
    // shows each 2-byte line as "remote: y" plus a line ending, about 5 times the bytes.
    expect(r.bytes).toBeLessThan(120 * 1024 * 1024);
    expect(growth).toBeLessThan(200 * 1024 * 1024);

    const [build] = await call<{ status: string; output: string }[]>('GET', '/apps/flood/builds');
    expect(build?.status).toBe('failed');
    expect(build?.output.length).toBeLessThan(300 * 1024);
    expect(build?.output).toMatch(/output truncated/);
    expect(build?.output).toMatch(/Build output exceeded 100 MB\./);
  }, 90_000);
});
