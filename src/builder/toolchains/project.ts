import { closeSync, constants, fstatSync, lstatSync, openSync, readSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { readTenantFile } from '../../sandbox/safe-fs.js';
import { errorMessage } from '../../domain/errors.js';
import {
  clip,
  dotHeroku,
  fail,
  fieldTooLong,
  iojsUnsupported,
  invalidPackageJson,
  lockfileMismatch,
  missingYarnPath,
  missingYarnVendor,
  missingYarnrc,
  multipleLockfiles,
  multiplePackageManagers,
  shrinkwrapConflict,
  ToolchainErrorCode,
  VERSION_FIELD_MAX,
} from './messages.js';

export type Manager = 'npm' | 'yarn' | 'pnpm';

/** What the toolchains need to know of a pushed Node.js project, read without trusting it. */
export interface Project {
  engines: { node?: string; npm?: string; yarn?: string; pnpm?: string };
  /** `packageManager`, when it names npm, yarn or pnpm: `raw` as written, `version` without `+sha...`. */
  packageManager?: { name: Manager; version: string; raw: string };
  lockfiles: { npm: boolean; shrinkwrap: boolean; yarn: boolean; pnpm: boolean };
  /** The package manager that installs: the lockfile's, npm without one (as Heroku's classic buildpack). */
  manager: Manager;
  /** yarn.lock is in Berry's format (it has `__metadata`). */
  yarnLockBerry: boolean;
  /** `yarnPath` of .yarnrc.yml, when set. */
  yarnPath?: string;
}

const PACKAGE_JSON_MAX = 4 * 1024 * 1024;
const YARNRC_MAX = 256 * 1024;
/** Berry writes `__metadata` within the first lines; no need to read a 20 MB lockfile to see it. */
const LOCK_HEAD_BYTES = 64 * 1024;

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
    throw err;
  }
}

/** The first `bytes` of a tenant's file, never through a symlink, never blocking on a FIFO. */
function readTenantHead(dir: string, name: string, bytes: number): string | undefined {
  let fd: number;
  try {
    fd = openSync(join(dir, name), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return undefined;
  }
  try {
    if (!fstatSync(fd).isFile()) return undefined;
    const buf = Buffer.alloc(bytes);
    const n = readSync(fd, buf, 0, bytes, 0);
    return buf.subarray(0, n).toString('utf8');
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

function readTenant(dir: string, name: string, max: number, onError: (detail: string) => Error): string | undefined {
  try {
    return readTenantFile(dir, name, max);
  } catch (err) {
    throw onError(errorMessage(err));
  }
}

/**
 * A version field as a string: numbers are accepted as written (`"node": 20`), other types are
 * invalid. Longer than semver accepts is refused here: megabytes of `a || b || ...` would keep
 * semver busy for seconds on Berth's own thread and end up quoted in messages and the build's env.
 */
function versionField(value: unknown, name: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') {
    const v = value.trim();
    if (v.length > VERSION_FIELD_MAX) throw fieldTooLong(name, v.length);
    return v === '' ? undefined : v;
  }
  if (typeof value === 'number') return String(value);
  throw invalidPackageJson(`${name} must be a string, not ${clip(JSON.stringify(value) ?? typeof value)}`);
}

function parsePackageManager(value: unknown): Project['packageManager'] {
  if (typeof value !== 'string') return undefined;
  if (value.trim().length > VERSION_FIELD_MAX) throw fieldTooLong('packageManager', value.trim().length);
  const m = /^(npm|yarn|pnpm)@([^+#]*)(?:[+#].*)?$/.exec(value.trim());
  if (!m) return undefined;
  return { name: m[1] as Manager, version: m[2]!, raw: value.trim() };
}

/**
 * A relative path inside the app for yarnPath; each directory on the way must be a real directory
 * (not a link) and the file must exist. Only existence is learned, nothing is read.
 */
function vendoredFileExists(appDir: string, rel: string): boolean {
  if (rel.startsWith('/') || rel.includes('\0')) return false;
  const parts = rel.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.length === 0 || parts.includes('..')) return false;
  for (let i = 1; i < parts.length; i++) {
    if (!lstatOrUndefined(join(appDir, ...parts.slice(0, i)))?.isDirectory()) return false;
  }
  return lstatOrUndefined(join(appDir, ...parts)) !== undefined;
}

/**
 * Reads package.json, the lockfiles' presence and .yarnrc.yml from the pushed source (tenant-owned,
 * read as root: no links followed, sizes capped, nothing written) and applies the checks Heroku
 * makes before it installs anything, in its order. Throws the BuildError the pusher should see.
 */
export function readProject(appDir: string): Project {
  const heroku = lstatOrUndefined(join(appDir, '.heroku'));
  if (heroku && !heroku.isDirectory()) throw dotHeroku('.heroku');
  const herokuNode = heroku ? lstatOrUndefined(join(appDir, '.heroku', 'node')) : undefined;
  if (herokuNode && !herokuNode.isDirectory()) throw dotHeroku('.heroku/node');

  const text = readTenant(appDir, 'package.json', PACKAGE_JSON_MAX, (d) => invalidPackageJson(d));
  if (text === undefined) {
    throw fail(ToolchainErrorCode.MissingPackageJson, 'No package.json at the root of the app.', 'The Node.js buildpack needs one to know what to install.', 'To fix: commit package.json (`npm init -y` writes one), then push again.');
  }
  let pkg: unknown;
  try {
    pkg = JSON.parse(text.replace(/^\uFEFF/, ''));
  } catch (err) {
    throw invalidPackageJson(errorMessage(err));
  }
  if (!pkg || typeof pkg !== 'object' || Array.isArray(pkg)) throw invalidPackageJson('the top level must be an object');
  const json = pkg as Record<string, unknown>;
  const rawEngines = json.engines && typeof json.engines === 'object' && !Array.isArray(json.engines) ? (json.engines as Record<string, unknown>) : {};
  const engines = {
    node: versionField(rawEngines.node, 'engines.node'),
    npm: versionField(rawEngines.npm, 'engines.npm'),
    yarn: versionField(rawEngines.yarn, 'engines.yarn'),
    pnpm: versionField(rawEngines.pnpm, 'engines.pnpm'),
  };
  const packageManager = parsePackageManager(json.packageManager);

  const has = (name: string): boolean => lstatOrUndefined(join(appDir, name)) !== undefined;
  const lockfiles = { npm: has('package-lock.json'), shrinkwrap: has('npm-shrinkwrap.json'), yarn: has('yarn.lock'), pnpm: has('pnpm-lock.yaml') };
  const locked = (['npm', 'pnpm', 'yarn'] as const).filter((m) => lockfiles[m]);
  if (locked.length > 1) throw multipleLockfiles(locked);
  if (locked.length > 0 && lockfiles.shrinkwrap) throw shrinkwrapConflict(locked);

  // Heroku counts engines.npm/yarn/pnpm and a yarn/pnpm packageManager; an npm packageManager is
  // Berth's engines.npm stand-in, so it counts too.
  const declared = new Map<Manager, string[]>();
  const note = (m: Manager, what: string): void => void declared.set(m, [...(declared.get(m) ?? []), what]);
  if (engines.npm) note('npm', `npm version in engines.npm (${clip(engines.npm)})`);
  if (engines.yarn) note('yarn', `yarn version in engines.yarn (${clip(engines.yarn)})`);
  if (engines.pnpm) note('pnpm', `pnpm version in engines.pnpm (${clip(engines.pnpm)})`);
  if (packageManager) note(packageManager.name, `${packageManager.name} version in packageManager (${clip(packageManager.raw)})`);
  if (declared.size > 1) throw multiplePackageManagers([...declared.values()].flat());

  const iojs = rawEngines.iojs;
  if (iojs !== undefined && iojs !== null && iojs !== '') throw iojsUnsupported(String(typeof iojs === 'string' ? iojs : JSON.stringify(iojs)));

  const manager: Manager = lockfiles.yarn ? 'yarn' : lockfiles.pnpm ? 'pnpm' : 'npm';
  const lockManager = locked[0] ?? (lockfiles.shrinkwrap ? 'npm' : undefined);
  if (lockManager && packageManager && packageManager.name !== lockManager) {
    const lockfile = lockfiles.shrinkwrap ? 'npm-shrinkwrap.json' : { npm: 'package-lock.json', yarn: 'yarn.lock', pnpm: 'pnpm-lock.yaml' }[lockManager];
    throw lockfileMismatch(lockManager, lockfile, packageManager.raw);
  }

  const yarnLockBerry = lockfiles.yarn && /^__metadata:/m.test(readTenantHead(appDir, 'yarn.lock', LOCK_HEAD_BYTES) ?? '');
  let yarnrc: Record<string, unknown> | undefined;
  const yarnrcText = readTenant(appDir, '.yarnrc.yml', YARNRC_MAX, (d) => fail(ToolchainErrorCode.MissingYarnrc, `.yarnrc.yml cannot be read: ${d}`, 'To fix: commit .yarnrc.yml as a regular file, then push again.'));
  if (yarnrcText !== undefined) {
    try {
      const parsed: unknown = parseYaml(yarnrcText);
      yarnrc = parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : {};
    } catch (err) {
      throw fail(ToolchainErrorCode.MissingYarnrc, `.yarnrc.yml is not valid YAML: ${errorMessage(err)}`, 'To fix: correct .yarnrc.yml, commit and push again.');
    }
  }
  const yarnPath = typeof yarnrc?.yarnPath === 'string' && yarnrc.yarnPath.trim() !== '' ? yarnrc.yarnPath.trim() : undefined;

  // Heroku's Berry checks: a Berry lockfile with no declared Yarn 2+ needs a vendored release
  // (Yarn 1 is then only the bootstrap that hands over to yarnPath).
  if (manager === 'yarn' && yarnLockBerry) {
    const declaredMajor = declaredYarnMajor(packageManager, engines.yarn);
    if (declaredMajor === undefined || declaredMajor < 2) {
      if (yarnrcText === undefined) throw missingYarnrc();
      if (!yarnPath) throw missingYarnPath();
    }
  }
  if (manager === 'yarn' && yarnPath && !vendoredFileExists(appDir, yarnPath)) throw missingYarnVendor(yarnPath);

  return { engines, packageManager, lockfiles, manager, yarnLockBerry, yarnPath };
}

/** The major Yarn version package.json declares (packageManager first, then engines.yarn's first number). */
export function declaredYarnMajor(packageManager: Project['packageManager'], enginesYarn: string | undefined): number | undefined {
  if (packageManager?.name === 'yarn') {
    const m = /^\s*(\d+)/.exec(packageManager.version);
    return m ? Number(m[1]) : undefined;
  }
  const m = enginesYarn ? /^[^0-9]*(\d+)/.exec(enginesYarn) : null;
  return m ? Number(m[1]) : undefined;
}
