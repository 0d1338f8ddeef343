import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openStore } from '../../src/store/index.js';
import { EtcdServer } from '../support/etcd-server.js';

const main = join(import.meta.dirname, '../../src/cli/main.ts');
const dir = mkdtempSync(join(tmpdir(), 'berth-up-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Run {
  summary: Record<string, unknown>;
  code: number | null;
  stderr: string;
}

/** Starts `berth up`, waits for its summary line, stops it with SIGTERM. */
function up(args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', main, 'up', '--json', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let summary: Record<string, unknown> = {};
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      const line = stdout.split('\n')[0];
      if (stdout.includes('\n') && line) {
        summary = JSON.parse(line) as Record<string, unknown>;
        child.kill('SIGTERM');
      }
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ summary, code, stderr });
    });
  });
}

describe('berth up', () => {
  it('creates the data dir and the embedded store, says where it lives, and stops cleanly', async () => {
    const dataDir = join(dir, 'node1');
    const first = await up(['--data-dir', dataDir]);
    expect(first.code).toBe(0);
    expect(first.summary).toMatchObject({ data_dir: dataDir, store: `sqlite://${join(dataDir, 'state.db')}` });
    expect(existsSync(join(dataDir, 'state.db'))).toBe(true);
    expect(statSync(dataDir).mode & 0o777).toBe(0o700);
    // Idempotent: a second start finds the platform already recorded and writes nothing new.
    const second = await up(['--data-dir', dataDir]);
    expect(second.code).toBe(0);
    expect(second.summary.revision).toBe(first.summary.revision);
    const store = openStore(`sqlite://${join(dataDir, 'state.db')}`);
    expect(JSON.parse((await store.get('/berth/platform'))?.value ?? '{}')).toHaveProperty('created_at');
    await store.close();
  });

  it('runs on a real etcd given --store etcd://', async () => {
    const etcd = await EtcdServer.start();
    try {
      const run = await up(['--data-dir', join(dir, 'node2'), '--store', etcd.url]);
      expect(run.code).toBe(0);
      expect(run.summary.store).toBe(etcd.url);
      const store = openStore(etcd.url);
      expect(await store.get('/berth/platform')).toBeDefined();
      await store.close();
    } finally {
      await etcd.stop();
    }
  });

  it('refuses a malformed store URL with a clear message and exit code 1', async () => {
    const run = await up(['--data-dir', join(dir, 'node3'), '--store', 'mysql://db']);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('unknown scheme mysql');
    expect(run.stderr).toContain('invalid_store_url');
  });
});
