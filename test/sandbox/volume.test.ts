import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostReserveBytes, mountVolume, NO_SPACE, reapVolumes, type Volume } from '../../src/sandbox/index.js';
import { captureLog } from '../support/log.js';

const exec = promisify(execFile);
const MiB = 1024 * 1024;
const UID = 151_000;
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'berth-volume-'));
  // The owners pass through by name, as they do through a runtime's work dir.
  chmodSync(dir, 0o711);
});
afterAll(async () => {
  await reapVolumes(dir);
  rmSync(dir, { recursive: true, force: true });
});

const mounted = (path: string): boolean => readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === path);
/** Loop devices whose image is under `root` (the kernel's view, so a leak shows even unmounted). */
const loopsUnder = (root: string): string[] =>
  readdirSync('/sys/block')
    .filter((d) => d.startsWith('loop'))
    .map((d) => {
      try {
        return readFileSync(`/sys/block/${d}/loop/backing_file`, 'utf8').trim();
      } catch {
        return '';
      }
    })
    .filter((f) => f.startsWith(`${root}/`));

/** Volumes a test made (also one that should have been refused): released in `onOwnFs`'s finally. */
const made: Volume[] = [];
const keep = async (v: Promise<Volume>): Promise<Volume> => {
  const volume = await v;
  made.push(volume);
  return volume;
};

/**
 * Runs `fn` on a filesystem of its own mounted on a dir under `dir`: a 512 MiB tmpfs (free space
 * no other writer on the host changes), or a 48 MiB ext2 in an image on such a tmpfs (no
 * fallocate: ext2 has no extents). Whatever `fn` mounted is released, then the filesystem goes.
 */
async function onOwnFs(kind: 'tmpfs' | 'ext2', fn: (fs: string) => Promise<void>): Promise<void> {
  const base = mkdtempSync(join(dir, 'fs-'));
  chmodSync(base, 0o711);
  const tmpfs = join(base, 'tmpfs');
  const ext2 = join(base, 'ext2');
  mkdirSync(tmpfs);
  await exec('mount', ['-t', 'tmpfs', '-o', 'size=512m,mode=0711', 'berth-test', tmpfs]);
  try {
    if (kind === 'ext2') {
      const image = join(tmpfs, 'ext2.img');
      await exec('truncate', ['-s', '48M', image]);
      await exec('mkfs.ext2', ['-q', '-F', '-m', '0', image]);
      mkdirSync(ext2);
      await exec('mount', ['-t', 'ext2', '-o', 'loop', image, ext2]);
      chmodSync(ext2, 0o711);
    }
    await fn(kind === 'ext2' ? ext2 : tmpfs);
  } finally {
    await Promise.allSettled(made.splice(0).map((v) => v.release()));
    if (kind === 'ext2') await exec('umount', [ext2]).catch(() => exec('umount', ['-l', ext2]));
    await exec('umount', [tmpfs]).catch(() => exec('umount', ['-l', tmpfs]));
    rmSync(base, { recursive: true, force: true });
  }
}

/** Writes as the volume's uid, as a tenant would: dd's status and its complaint. */
async function writeAs(uid: number, file: string, mib: number): Promise<{ code: number; stderr: string }> {
  try {
    await exec('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', 'dd', 'if=/dev/zero', `of=${file}`, 'bs=1M', `count=${mib}`, 'conv=fsync']);
    return { code: 0, stderr: '' };
  } catch (err) {
    const e = err as { code: number; stderr: string };
    return { code: e.code, stderr: e.stderr };
  }
}

describe('volumes', () => {
  it('caps what its owner can write, and takes no more of the host than its size', async () => {
    const v = await mountVolume({ imagePath: join(dir, 'a.img'), mountpoint: join(dir, 'a'), bytes: 64 * MiB, uid: UID });
    try {
      expect(v.path).toBe(join(dir, 'a'));
      expect(mounted(v.path)).toBe(true);
      const st = statSync(v.path);
      expect([st.uid, st.gid, st.mode & 0o777]).toEqual([UID, UID, 0o700]);
      expect(readdirSync(v.path)).toEqual([]);
      const r = await writeAs(UID, join(v.path, 'big'), 200);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/No space left on device/);
      const written = statSync(join(v.path, 'big')).size;
      expect(written).toBeGreaterThan(40 * MiB);
      expect(written).toBeLessThanOrEqual(64 * MiB);
      // What the volume holds of the host is its image: measured on the image, since other suites
      // write to the same disk meanwhile.
      expect(statSync(join(dir, 'a.img')).blocks * 512).toBeLessThanOrEqual(64 * MiB + MiB);
      // nosuid, nodev: a tenant's setuid binary or device node means nothing there.
      const opts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === v.path)?.split(' ')[5] ?? '';
      expect(opts.split(',')).toEqual(expect.arrayContaining(['nosuid', 'nodev']));
    } finally {
      await v.release();
    }
    expect(mounted(join(dir, 'a'))).toBe(false);
    expect(existsSync(join(dir, 'a.img'))).toBe(false);
    expect(existsSync(join(dir, 'a'))).toBe(false);
    expect(loopsUnder(dir)).toEqual([]);
    await v.release();
  });

  it('takes its whole size from the host when it is made, not as the tenant writes', async () => {
    const v = await mountVolume({ imagePath: join(dir, 'r.img'), mountpoint: join(dir, 'r'), bytes: 256 * MiB, uid: UID });
    try {
      // Allocated blocks (st_blocks counts 512-byte units): a sparse image holds only what mkfs wrote.
      expect(statSync(join(dir, 'r.img')).blocks * 512).toBeGreaterThanOrEqual(256 * MiB);
      expect(readdirSync(v.path)).toEqual([]);
    } finally {
      await v.release();
    }
  });

  it('is refused when the host would keep less than its reserve, leaving nothing behind', async () => {
    // On a filesystem of its own, whose free space only this test changes.
    await onOwnFs('tmpfs', async (fs) => {
      const st = statfsSync(fs);
      const room = st.bavail * st.bsize;
      expect(hostReserveBytes(st.blocks * st.bsize)).toBe(2 * 1024 * MiB);
      const start = Date.now();
      const refused = mountVolume({ imagePath: join(fs, 'big.img'), mountpoint: join(fs, 'big'), bytes: 64 * MiB, uid: UID });
      await expect(refused).rejects.toMatchObject({ code: NO_SPACE, retryable: true, message: 'No space left on device (ENOSPC) for a 0.06 GiB disk: this machine has 0.5 GiB free and keeps 2 GiB for the platform' });
      // Refused before any allocation: at once, and nothing to clean.
      expect(Date.now() - start).toBeLessThan(1000);
      expect(readdirSync(fs)).toEqual([]);
      // The same against a reserve of the caller's: just inside it is refused, just outside it mounts.
      await expect(keep(mountVolume({ imagePath: join(fs, 's.img'), mountpoint: join(fs, 's'), bytes: 64 * MiB, uid: UID, reserveBytes: room - 32 * MiB }))).rejects.toMatchObject({ code: NO_SPACE });
      expect(readdirSync(fs)).toEqual([]);
      const fits = await keep(mountVolume({ imagePath: join(fs, 't.img'), mountpoint: join(fs, 't'), bytes: 64 * MiB, uid: UID, reserveBytes: room - 96 * MiB }));
      expect(mounted(fits.path)).toBe(true);
    });
  });

  it('falls back to a sparse image, with a warning, on a filesystem that cannot allocate ahead', async () => {
    await onOwnFs('ext2', async (fs) => {
      const { log, lines } = captureLog();
      const v = await keep(mountVolume({ imagePath: join(fs, 'v.img'), mountpoint: join(fs, 'v'), bytes: 32 * MiB, uid: UID, reserveBytes: 0, log }));
      expect(mounted(v.path)).toBe(true);
      expect(statSync(join(fs, 'v.img')).blocks * 512).toBeLessThan(32 * MiB);
      expect(lines.filter((l) => l.level === 40).map((l) => l.msg)).toEqual([expect.stringMatching(/cannot allocate volume images up front/)]);
      // Still a cap of its own.
      const r = await writeAs(UID, join(v.path, 'big'), 64);
      expect(r.stderr).toMatch(/No space left on device/);
    });
  });

  it('leaves neither image nor mountpoint behind when mkfs fails', async () => {
    await onOwnFs('ext2', async (fs) => {
      // The host filesystem full but for a few blocks: the sparse image is made, mkfs cannot write it.
      await exec('sh', ['-c', `dd if=/dev/zero of=${join(fs, 'filler')} bs=1M 2>/dev/null; true`]);
      const made = keep(mountVolume({ imagePath: join(fs, 'm.img'), mountpoint: join(fs, 'm'), bytes: 64 * MiB, uid: UID, reserveBytes: -1024 * MiB }));
      await expect(made).rejects.toThrow(/cannot make a volume at/);
      expect(readdirSync(fs).filter((f) => f !== 'lost+found')).toEqual(['filler']);
    });
  });

  it('unmounts lazily when a process still holds it, and leaks no loop device', async () => {
    const v = await mountVolume({ imagePath: join(dir, 'b.img'), mountpoint: join(dir, 'b'), bytes: 32 * MiB, uid: UID });
    const holder = execFile('sleep', ['30'], { cwd: v.path });
    try {
      await new Promise((r) => setTimeout(r, 100));
      await v.release();
      expect(mounted(join(dir, 'b'))).toBe(false);
      expect(existsSync(join(dir, 'b.img'))).toBe(false);
    } finally {
      holder.kill('SIGKILL');
    }
    await new Promise((r) => holder.on('exit', r));
    // The autoclear loop device goes once the holder has let go.
    for (let i = 0; i < 50 && readdirSync('/sys/block').some((d) => readFileSyncSafe(`/sys/block/${d}/loop/backing_file`).startsWith(join(dir, 'b.img'))); i++) await new Promise((r) => setTimeout(r, 100));
    expect(readdirSync('/sys/block').filter((d) => readFileSyncSafe(`/sys/block/${d}/loop/backing_file`).startsWith(join(dir, 'b.img')))).toEqual([]);
  });

  it('mounts many at once', async () => {
    const vols = await Promise.all(Array.from({ length: 8 }, (_, i) => mountVolume({ imagePath: join(dir, `c${i}.img`), mountpoint: join(dir, `c${i}`), bytes: 32 * MiB, uid: UID + i })));
    try {
      expect(vols.every((v) => mounted(v.path))).toBe(true);
      expect(new Set(vols.map((v) => statSync(v.path).uid)).size).toBe(8);
    } finally {
      await Promise.all(vols.map((v) => v.release()));
    }
    expect(loopsUnder(dir)).toEqual([]);
  });

  it('refuses an image path that exists, leaving it alone', async () => {
    const victim = join(dir, 'victim');
    execFileSync('sh', ['-c', `echo keep > ${victim}`]);
    await expect(mountVolume({ imagePath: victim, mountpoint: join(dir, 'd'), bytes: 32 * MiB, uid: UID })).rejects.toThrow(/EEXIST/);
    expect(readFileSync(victim, 'utf8')).toBe('keep\n');
    await expect(mountVolume({ imagePath: join(dir, 'e.img'), mountpoint: join(dir, 'e'), bytes: 1024, uid: UID })).rejects.toThrow(/invalid volume size/);
  });

  it('reaps what a crashed owner left: mounts below the dir, their images and loop devices', async () => {
    const crashed = join(dir, 'crashed');
    // Two owners that never released, one nested in the other's dir, and a bare loop device.
    await mountVolume({ imagePath: join(dir, 'f.img'), mountpoint: join(crashed, 'dyno1', 'vol'), bytes: 32 * MiB, uid: UID });
    await mountVolume({ imagePath: join(crashed, 'g.img'), mountpoint: join(crashed, 'dyno2', 'vol'), bytes: 32 * MiB, uid: UID });
    execFileSync('truncate', ['-s', '32M', join(crashed, 'h.img')]);
    execFileSync('losetup', ['-f', join(crashed, 'h.img')]);
    const outside = await mountVolume({ imagePath: join(dir, 'i.img'), mountpoint: join(dir, 'outside'), bytes: 32 * MiB, uid: UID });
    try {
      await reapVolumes(crashed);
      expect(mounted(join(crashed, 'dyno1', 'vol'))).toBe(false);
      expect(mounted(join(crashed, 'dyno2', 'vol'))).toBe(false);
      expect(loopsUnder(crashed)).toEqual([]);
      expect(existsSync(join(crashed, 'g.img'))).toBe(false);
      expect(existsSync(join(crashed, 'h.img'))).toBe(false);
      // Outside the reaped dir: not its business, even when it backed a mount inside.
      expect(existsSync(join(dir, 'f.img'))).toBe(true);
      expect(mounted(outside.path)).toBe(true);
    } finally {
      await outside.release();
      rmSync(join(dir, 'f.img'), { force: true });
    }
  });
});

function readFileSyncSafe(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}
