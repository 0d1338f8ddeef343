import { randomInt } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, statfsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tar from 'tar';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProcessRuntime } from '../../src/agent/runtime/process.js';
import type { DynoSpec, RunningDyno } from '../../src/agent/runtime/types.js';
import { mountVolume, reapVolumes, UID_BASE, UID_COUNT } from '../../src/sandbox/index.js';
import { CGROUP_ROOT, testSandbox } from '../support/sandbox.js';
import { until } from '../support/until.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
let dir: string;
let work: string;
let slugPath: string;
let runtime: ProcessRuntime;
let n = 0;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-quotas-'));
  chmodSync(dir, 0o755);
  const src = join(dir, 'src');
  mkdirSync(src);
  writeFileSync(join(src, 'hello.txt'), 'hi\n');
  slugPath = join(dir, 'slug.tgz');
  await tar.c({ gzip: true, cwd: src, file: slugPath, portable: true }, ['.']);
  work = join(dir, 'work');
  runtime = new ProcessRuntime({ workDir: work, sandbox: testSandbox() });
});
const started: RunningDyno[] = [];
afterAll(async () => {
  await Promise.all(started.map((d) => d.stop(0)));
  // A failed case may leave a disk mounted in the dir: removing through it would hit EBUSY.
  await reapVolumes(dir);
  rmSync(dir, { recursive: true, force: true });
});

async function start(command: string, extra: Partial<DynoSpec> = {}): Promise<{ dyno: RunningDyno; lines: string[]; spec: DynoSpec }> {
  const lines: string[] = [];
  const spec: DynoSpec = {
    id: `q${process.pid}-${n++}`,
    appId: `quota-app-${n}`,
    uid: UID_BASE + randomInt(UID_COUNT),
    dyno: 'web.1',
    command,
    slugPath,
    env: {},
    memoryBytes: 512 * MiB,
    pidsMax: 100,
    onOutput: (_stream, line) => lines.push(line),
    ...extra,
  };
  const dyno = await runtime.start(spec);
  started.push(dyno);
  return { dyno, lines, spec };
}

const mountsUnder = (path: string): string[] =>
  readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((mp) => mp.startsWith(`${path}/`));
const loopsUnder = (path: string): string[] =>
  readdirSync('/sys/block')
    .filter((d) => d.startsWith('loop'))
    .filter((d) => {
      try {
        return readFileSync(`/sys/block/${d}/loop/backing_file`, 'utf8').startsWith(`${path}/`);
      } catch {
        return false;
      }
    });
const freeBytes = (path: string): number => {
  const s = statfsSync(path);
  return s.bavail * s.bsize;
};

describe('process runtime quotas', () => {
  it('caps a dyno writing 2.5 GB to /app and /tmp at its 1 GiB disk: ENOSPC, the host keeps its space, the volume goes with the dyno', async () => {
    const before = freeBytes(work);
    const script = [
      'dd if=/dev/zero of=/app/big bs=1M count=2500 2>&1',
      'dd if=/dev/zero of=/tmp/big bs=1M count=2500 2>&1',
      'echo "sizes $(stat -c %s /app/big) $(stat -c %s /tmp/big)"',
      'echo full; sleep 60',
    ].join('; ');
    const { dyno, lines, spec } = await start(script);
    await until('the disk to fill', () => (lines.includes('full') ? true : undefined), 60_000);
    const peak = freeBytes(work);
    const root = join(work, spec.id);
    expect(mountsUnder(root)).toHaveLength(1);
    const log = lines.join('\n');
    expect(log.match(/No space left on device/g)).toHaveLength(2);
    const [appBytes = 0, tmpBytes = 0] = (lines.find((l) => l.startsWith('sizes ')) ?? '').split(' ').slice(1).map(Number);
    // /app took the disk (less ext4's own metadata); /tmp shares it, so nothing was left.
    expect(appBytes).toBeGreaterThan(0.9 * GiB);
    expect(appBytes + tmpBytes).toBeLessThanOrEqual(GiB);
    // What the dyno holds of the host is its image, allocated once at its size: measured on the
    // image itself, since other suites write to the same disk meanwhile (uncapped, /app alone: 2.5 GB).
    const used = before - peak;
    const held = statSync(join(root, 'disk.img')).blocks * 512;
    console.log(`disk quota: the dyno wrote ${((appBytes + tmpBytes) / MiB).toFixed(0)} MiB of 5000 asked; its disk holds ${(held / MiB).toFixed(0)} MiB of the host (free space fell by ${(used / MiB).toFixed(0)} MiB, other suites included)`);
    expect(held).toBeLessThanOrEqual(GiB + MiB);

    await dyno.stop(0);
    expect(mountsUnder(root)).toEqual([]);
    expect(loopsUnder(work)).toEqual([]);
    expect(existsSync(root)).toBe(false);
  }, 120_000);

  it('puts a dyno in a cpu cgroup weighted by its memory, and removes it after', async () => {
    const small = await start('echo up; sleep 30', { memoryBytes: 256 * MiB });
    const big = await start('echo up; sleep 30', { memoryBytes: GiB });
    const set = await start('echo up; sleep 30', { cpuShares: 300 });
    // limits:set web=64G: a limit nothing reserves weighs no more than a 2 GiB dyno, asked or not.
    const huge = await start('echo up; sleep 30', { memoryBytes: 64 * GiB });
    const asked = await start('echo up; sleep 30', { cpuShares: 131_072 });
    const dynos = [small, big, set, huge, asked];
    for (const d of dynos) await until('up', () => (d.lines.includes('up') ? true : undefined));
    const shares = (id: string): string => readFileSync(join(CGROUP_ROOT, 'cpu', 'berth', `dyno-${id}`, 'cpu.shares'), 'utf8').trim();
    expect(dynos.map((d) => shares(d.spec.id))).toEqual(['512', '2048', '300', '4096', '4096']);
    // Its processes are in it, not only the cgroup made.
    const procs = readFileSync(join(CGROUP_ROOT, 'cpu', 'berth', `dyno-${small.spec.id}`, 'cgroup.procs'), 'utf8').trim().split('\n');
    expect(procs.length).toBeGreaterThan(0);
    await Promise.all(dynos.map((d) => d.dyno.stop(0)));
    for (const d of dynos) expect(existsSync(join(CGROUP_ROOT, 'cpu', 'berth', `dyno-${d.spec.id}`))).toBe(false);
  });

  it('refuses a disk size out of range before making anything', async () => {
    await expect(start('true', { diskBytes: 1024 })).rejects.toThrow(/invalid dyno disk size/);
    await expect(start('true', { diskBytes: 100 * GiB })).rejects.toThrow(/invalid dyno disk size/);
  });

  it('reaps the disks a crashed agent left behind before its first start', async () => {
    const crashed = join(dir, 'crashed-work');
    // What an agent SIGKILLed mid-dyno leaves once its dynos died with it: a mounted disk and its image.
    await mountVolume({ imagePath: join(crashed, 'old-dyno', 'disk.img'), mountpoint: join(crashed, 'old-dyno', 'disk'), bytes: 64 * MiB, uid: UID_BASE });
    expect(mountsUnder(crashed)).toHaveLength(1);
    const next = new ProcessRuntime({ workDir: crashed, sandbox: testSandbox() });
    const d = await next.start({ id: `reap${process.pid}`, appId: 'reap-app', uid: UID_BASE + 1, dyno: 'run.1', command: 'true', slugPath, env: {}, memoryBytes: 256 * MiB, pidsMax: 50, onOutput: () => undefined });
    await d.exited;
    expect(mountsUnder(crashed)).toEqual([]);
    expect(loopsUnder(crashed)).toEqual([]);
    expect(existsSync(join(crashed, 'old-dyno'))).toBe(false);
    execFileSync('rm', ['-rf', crashed]);
  });
});
