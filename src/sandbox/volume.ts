import { execFile } from 'node:child_process';
import { chmodSync, chownSync, closeSync, mkdirSync, openSync, readdirSync, readFileSync, rmdirSync, rmSync, statfsSync, truncateSync, unlinkSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { BerthError } from '../domain/errors.js';
import type { Logger } from '../domain/log.js';

const exec = promisify(execFile);
const ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C' };

/**
 * A dyno's or a build's writable space with a hard size: an ext4 filesystem in an image whose
 * blocks are all allocated up front, loop-mounted. A tenant that fills it gets ENOSPC inside its own
 * filesystem; the host's disk gives it exactly the image's size, taken when the volume is made, so
 * a hundred dynos each writing up to their cap cannot fill the disk the platform's own state lives
 * on (a sparse image would promise space it does not hold). A tmpfs would count against memory.
 */
export interface Volume {
  /** The mountpoint: the filesystem's root, owned by the volume's uid, mode 0700. */
  path: string;
  /** Unmounts (lazily if something still holds it) and deletes the image. Idempotent. */
  release(): Promise<void>;
}

export interface VolumeOptions {
  /** The image to create; must not exist. */
  imagePath: string;
  /** Where to mount it (made if absent). */
  mountpoint: string;
  /** The filesystem's size: what the tenant can write, give or take ext4's metadata. */
  bytes: number;
  /** Owner of the filesystem's root. */
  uid: number;
  /** Free space the host's filesystem must keep after the image is allocated (default `hostReserveBytes`). */
  reserveBytes?: number;
  /** Where the warning goes when the host's filesystem cannot allocate the image up front. */
  log?: Logger;
}

/** The error a volume the host has no room for fails with (also when the allocation itself hits ENOSPC). */
export const NO_SPACE = 'no_space';

/**
 * What a volume may not take of the filesystem holding its image: max(2 GiB, 5% of it). The same
 * filesystem usually holds the store, the logs and the slugs; a platform that cannot write those
 * fails for every tenant at once.
 */
export const hostReserveBytes = (totalBytes: number): number => Math.max(2 * 1024 ** 3, Math.ceil(totalBytes * 0.05));

/** Smaller than this, ext4's own metadata leaves too little to be worth a mount. */
export const MIN_VOLUME_BYTES = 16 * 1024 * 1024;
// One inode per 8 KiB (ext4's default is 16 KiB): a node_modules tree runs out of inodes before it
// runs out of space at the default, and a slug that fits in bytes should fit in files too.
const BYTES_PER_INODE = '8192';

/**
 * A loop-mounted ext4 of `bytes` at `mountpoint` backed by an allocated image `imagePath`. Refused
 * (a BerthError `no_space`, retryable) when the host's filesystem would keep less than its reserve.
 */
export async function mountVolume(o: VolumeOptions): Promise<Volume> {
  if (!Number.isSafeInteger(o.bytes) || o.bytes < MIN_VOLUME_BYTES) throw new Error(`invalid volume size: ${o.bytes}`);
  if (!Number.isSafeInteger(o.uid) || o.uid < 0) throw new Error(`invalid volume owner: ${o.uid}`);
  const imagePath = resolve(o.imagePath);
  const mountpoint = resolve(o.mountpoint);
  mkdirSync(mountpoint, { recursive: true });
  try {
    // Before the image is made: a volume that cannot fit leaves nothing behind.
    checkRoom(imagePath, o.bytes, o.reserveBytes, 0);
    // 'wx': an existing file is someone else's (or a symlink planted where root will write).
    closeSync(openSync(imagePath, 'wx', 0o600));
  } catch (err) {
    removeEmptyDir(mountpoint);
    throw err;
  }
  try {
    await allocate(imagePath, o.bytes, o.reserveBytes, o.log);
  } catch (err) {
    rmSync(imagePath, { force: true });
    removeEmptyDir(mountpoint);
    throw err;
  }
  try {
    // No journal and lazy init: the filesystem lives as long as one dyno, crash consistency buys
    // nothing, and mkfs stays at tens of milliseconds whatever the size. -m 0: no root reserve.
    await exec('mkfs.ext4', ['-q', '-F', '-E', 'lazy_itable_init=1,lazy_journal_init=1,nodiscard', '-O', '^has_journal', '-m', '0', '-i', BYTES_PER_INODE, imagePath], { env: ENV });
    // mount's own loop set-up marks the device autoclear: it detaches when the last unmount goes,
    // so a lazy unmount cannot leak a loop device.
    await exec('mount', ['-t', 'ext4', '-o', 'loop,nosuid,nodev,noatime', imagePath, mountpoint], { env: ENV });
  } catch (err) {
    rmSync(imagePath, { force: true });
    removeEmptyDir(mountpoint);
    throw new Error(`cannot make a volume at ${mountpoint}: ${stderrOf(err)}`);
  }
  const volume = releasable(imagePath, mountpoint);
  try {
    // A tenant listing /app should not find root's unreadable lost+found in it.
    rmSync(join(mountpoint, 'lost+found'), { recursive: true, force: true });
    chownSync(mountpoint, o.uid, o.uid);
    chmodSync(mountpoint, 0o700);
  } catch (err) {
    await volume.release();
    throw err;
  }
  return volume;
}

/**
 * Allocates the image's blocks (unwritten extents: no zeroing, tens of milliseconds for 10 GiB on
 * ext4), then checks the reserve again: starts running side by side each passed the first check,
 * and only what is left once the space is taken tells whether together they ate into the reserve.
 * A filesystem that cannot allocate ahead (ext2/3, some network ones) gets a sparse image instead:
 * every start failing there would be worse than a cap the host's disk may not honour.
 */
async function allocate(imagePath: string, bytes: number, reserveBytes: number | undefined, log: Logger | undefined): Promise<void> {
  try {
    await exec('fallocate', ['-l', String(bytes), imagePath], { env: ENV });
  } catch (err) {
    const why = stderrOf(err);
    if (/No space left/i.test(why)) {
      const { free, total } = freeOf(imagePath);
      throw noSpace(bytes, free, reserveBytes ?? hostReserveBytes(total));
    }
    if (!/Operation not supported/i.test(why)) throw new Error(`cannot allocate a volume image at ${imagePath}: ${why}`);
    log?.warn({ image: imagePath, bytes }, 'this filesystem cannot allocate volume images up front: the image is sparse, and the host\'s disk may run out before the volume does');
    truncateSync(imagePath, bytes);
    return;
  }
  checkRoom(imagePath, bytes, reserveBytes, bytes);
}

/** Throws `no_space` unless `bytes` more (of which `taken` are already allocated) leave the reserve free. */
function checkRoom(imagePath: string, bytes: number, reserveBytes: number | undefined, taken: number): void {
  const { free, total } = freeOf(imagePath);
  const reserve = reserveBytes ?? hostReserveBytes(total);
  if (free - (bytes - taken) < reserve) throw noSpace(bytes, free + taken, reserve);
}

/** Space an unprivileged writer could still take (root's reserved blocks excluded) of the image's filesystem. */
function freeOf(imagePath: string): { free: number; total: number } {
  const st = statfsSync(dirname(imagePath));
  return { free: st.bavail * st.bsize, total: st.blocks * st.bsize };
}

function noSpace(bytes: number, free: number, reserve: number): BerthError {
  return new BerthError(NO_SPACE, `No space left on device (ENOSPC) for a ${gib(bytes)} disk: this machine has ${gib(free)} free and keeps ${gib(reserve)} for the platform`, { retryable: true });
}

const gib = (bytes: number): string => `${Number((bytes / 1024 ** 3).toFixed(2))} GiB`;

function releasable(imagePath: string, mountpoint: string): Volume {
  let released: Promise<void> | undefined;
  return {
    path: mountpoint,
    release: () => (released ??= unmount(mountpoint).then(() => {
      rmSync(imagePath, { force: true });
      // Only if empty: after a lazy unmount the dir is the bare mountpoint again.
      removeEmptyDir(mountpoint);
    })),
  };
}

function removeEmptyDir(dir: string): void {
  try {
    rmdirSync(dir);
  } catch {
    // Not empty, or gone: the caller's dir to clean.
  }
}

async function unmount(mountpoint: string): Promise<void> {
  try {
    await exec('umount', [mountpoint], { env: ENV });
    return;
  } catch {
    // Busy (a process still inside) or not mounted at all: a lazy unmount detaches it from the
    // tree now and frees the filesystem, image and loop device when its last user goes.
  }
  try {
    await exec('umount', ['-l', mountpoint], { env: ENV });
  } catch (err) {
    if (mountsUnder(mountpoint, true).length > 0) throw new Error(`cannot unmount ${mountpoint}: ${stderrOf(err)}`);
  }
}

/**
 * After a crash (an agent or builder SIGKILLed), unmounts every filesystem mounted below `dir`,
 * deepest first, deletes the images under `dir` that backed them, and detaches loop devices still
 * holding such images. The caller then removes whatever else is left in `dir`. For start-up only:
 * it reads the whole mount table.
 */
export async function reapVolumes(dir: string): Promise<void> {
  const root = resolve(dir);
  const mounts = mountsUnder(root, false).sort((a, b) => b.mountpoint.length - a.mountpoint.length);
  const images = new Set<string>();
  for (const m of mounts) {
    const backing = loopBacking(m.source);
    if (backing !== undefined) images.add(backing);
    await exec('umount', ['-l', m.mountpoint], { env: ENV }).catch(() => undefined);
  }
  // A loop device can outlive its mount (set up, then the process died before mounting).
  for (const dev of loopDevices()) {
    const backing = loopBacking(`/dev/${dev}`);
    if (backing !== undefined && isUnder(backing, root)) {
      images.add(backing);
      await exec('losetup', ['-d', `/dev/${dev}`], { env: ENV }).catch(() => undefined);
    }
  }
  for (const image of images) {
    if (!isUnder(image, root)) continue;
    try {
      unlinkSync(image);
    } catch {
      // Already gone.
    }
  }
}

interface Mount {
  mountpoint: string;
  source: string;
}

const isUnder = (path: string, root: string): boolean => path.startsWith(`${root}/`);

/** Mounts at or below `path` (`exact`: at it only), from this process's mount table. */
function mountsUnder(path: string, exact: boolean): Mount[] {
  const out: Mount[] = [];
  for (const line of readSafe('/proc/self/mountinfo').split('\n')) {
    // "<id> <parent> <maj:min> <root> <mountpoint> <options> [optional...] - <fstype> <source> <super options>"
    const fields = line.split(' ');
    const dash = fields.indexOf('-');
    const mp = fields[4];
    if (mp === undefined || dash < 0) continue;
    const mountpoint = unescapeMount(mp);
    if (exact ? mountpoint !== path : !isUnder(mountpoint, path)) continue;
    out.push({ mountpoint, source: unescapeMount(fields[dash + 2] ?? '') });
  }
  return out;
}

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
const unescapeMount = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

function loopDevices(): string[] {
  try {
    return readdirSync('/sys/block').filter((d) => /^loop\d+$/.test(d));
  } catch {
    return [];
  }
}

/** The file behind a loop device (`/dev/loopN`), if it is one that has a file. */
function loopBacking(source: string): string | undefined {
  const m = /^\/dev\/(loop\d+)$/.exec(source);
  if (!m) return undefined;
  const file = readSafe(`/sys/block/${m[1]}/loop/backing_file`).replace(/\n$/, '');
  // The kernel appends " (deleted)" once the image is unlinked: nothing left to delete then.
  return file === '' || file.endsWith(' (deleted)') ? undefined : file;
}

function readSafe(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

function stderrOf(err: unknown): string {
  const e = err as { stderr?: string; message?: string };
  return (e.stderr?.trim() || e.message) ?? String(err);
}
