import semver from 'semver';
import type { Logger } from '../../domain/log.js';
import { errorMessage } from '../../domain/errors.js';
import { BuildError, type BuildpackPreparer } from '../compile.js';
import { canceled, PACKAGE_DIRS, ToolchainCache } from './cache.js';
import { clip, ToolchainErrorCode, warning, type Source } from './messages.js';
import { readProject, type Manager, type Project } from './project.js';
import { HttpPackageRegistry, type PackageRegistry, type Packument } from './registry.js';
import { NODE_PACKAGE, resolveNode, resolveNpm, resolvePnpm, resolveYarn, YARN_BERRY_PACKAGE, YARN_CLASSIC_PACKAGE, type Resolved } from './resolve.js';

export { HttpPackageRegistry, MemoryPackageRegistry, parsePackument, type PackageRegistry, type PackageVersion, type Packument } from './registry.js';
export { ToolchainErrorCode } from './messages.js';
export { LTS_MAJOR } from './resolve.js';

/** Where builds see the cache (read-only). */
export const TOOLCHAINS_MOUNT = '/berth/toolchains';
export const DEFAULT_REGISTRY = 'https://registry.npmjs.org';

export interface ToolchainsOptions {
  /** Per-machine cache, e.g. <data-dir>/toolchains (root-owned, 0755 dirs, 0644/0755 files). */
  dir: string;
  /** npm registry base URL. */
  registry?: string;
  log: Logger;
  /** Defaults to the HTTP registry at `registry`; tests pass an in-memory one. */
  registryClient?: PackageRegistry;
  /** Versions kept per package; least-recently-used beyond this are removed when not in use (default 6). */
  keepVersions?: number;
  /** Hard cap on versions per package; at it, a new version is refused (retryably) until pruning makes room (default 4 × keepVersions). */
  maxVersions?: number;
  /** The clock for end-of-life decisions and use-markers. */
  now?: () => Date;
}

/** What one build gets: the BERTH_* variables of the nodejs buildpack's contract, and the end of its hold. */
export interface ToolchainPlan {
  env: Record<string, string>;
  /** The build finished: its versions may be pruned again. Idempotent. */
  release(): void;
}

interface Selection {
  node: Resolved;
  npm: Resolved;
  yarn?: Resolved & { berry: boolean };
  pnpm?: Resolved;
  notes: string[];
}

/**
 * Waits for `promise` unless `signal` aborts first. Packuments are shared by every build for
 * minutes, so one build's cancel must not abort the request itself, only its own wait.
 */
function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(canceled(signal));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(canceled(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/**
 * The platform side of the built-in Node.js buildpack: resolves the Node.js, npm, Yarn and pnpm
 * versions a pushed app asks for (Heroku's rules), and installs them from the npm registry into a
 * per-machine cache as root, outside any sandbox (a cache tenants could write would let one plant
 * binaries for another). Builds get it read-only at TOOLCHAINS_MOUNT.
 */
export class Toolchains implements BuildpackPreparer {
  readonly dir: string;
  readonly mount = TOOLCHAINS_MOUNT;
  private readonly registryUrl: string;
  private readonly registry: PackageRegistry;
  private readonly cache: ToolchainCache;
  private readonly now: () => Date;

  constructor(private readonly opts: ToolchainsOptions) {
    this.dir = opts.dir;
    this.registryUrl = (opts.registry ?? DEFAULT_REGISTRY).replace(/\/+$/, '');
    this.registry = opts.registryClient ?? new HttpPackageRegistry(this.registryUrl);
    this.now = opts.now ?? (() => new Date());
    this.cache = new ToolchainCache({ dir: opts.dir, registry: this.registry, log: opts.log, keepVersions: opts.keepVersions ?? 6, maxVersions: opts.maxVersions, now: this.now });
  }

  /**
   * Checks the project (before anything is fetched), resolves every version, installs what is
   * missing, and returns the buildpack's environment. Throws a BuildError the pusher can act on.
   * When `signal` aborts (the build was canceled or timed out), it stops waiting at once.
   */
  async prepare(appDir: string, config: Record<string, string>, signal?: AbortSignal): Promise<ToolchainPlan> {
    if (signal?.aborted) throw canceled(signal);
    const project = readProject(appDir);
    const selection = await this.select(project, config, signal);
    if (signal?.aborted) throw canceled(signal);
    const picks = [selection.node, selection.npm, selection.yarn, selection.pnpm].filter((r): r is Resolved => r !== undefined);
    const releases = picks.map((r) => this.cache.hold(r.package, r.version));
    const release = (): void => {
      for (const r of releases) r();
    };
    // Settled, not raced: a build that fails leaves no install of its own still running.
    const results = await Promise.allSettled(picks.map((r) => this.cache.ensure(r.package, r.pv, signal)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      release();
      throw failed.reason;
    }
    return { env: this.env(project.manager, selection), release };
  }

  private async packument(name: string, signal?: AbortSignal): Promise<Packument | undefined> {
    try {
      return await abortable(this.registry.packument(name), signal);
    } catch (err) {
      if (signal?.aborted) throw canceled(signal);
      throw new BuildError(
        ToolchainErrorCode.DownloadFailed,
        [`Could not read the versions of ${name} from ${this.registryUrl}.`, errorMessage(err), 'To fix: this is usually a passing network problem, so push again; if it persists, the operator should check that this machine reaches the npm registry.'].join('\n'),
        { retryable: true, cause: err },
      );
    }
  }

  private async required(name: string, signal?: AbortSignal): Promise<Packument> {
    const p = await this.packument(name, signal);
    if (!p) throw new BuildError(ToolchainErrorCode.DownloadFailed, `${this.registryUrl} has no package ${name}.\nTo fix: the operator should point Berth at a registry (or mirror) that carries it.`);
    return p;
  }

  private async select(project: Project, config: Record<string, string>, signal: AbortSignal | undefined): Promise<Selection> {
    const pm = project.packageManager;
    // Heroku installs Yarn for a yarn.lock, an engines.yarn or a yarn packageManager, pnpm only for a pnpm-lock.yaml.
    const wantsYarn = project.manager === 'yarn' || project.engines.yarn !== undefined || pm?.name === 'yarn';
    const wantsPnpm = project.manager === 'pnpm';
    const [nodeDoc, npmDoc, yarnDoc, berryDoc, pnpmDoc] = await Promise.all([
      this.required(NODE_PACKAGE, signal),
      this.required('npm', signal),
      wantsYarn ? this.packument(YARN_CLASSIC_PACKAGE, signal) : undefined,
      wantsYarn ? this.packument(YARN_BERRY_PACKAGE, signal) : undefined,
      wantsPnpm ? this.required('pnpm', signal) : undefined,
    ]);
    const registry = this.registryUrl;
    const node = resolveNode(project.engines.node, nodeDoc, { allowWideRange: config.NODEJS_ALLOW_WIDE_RANGE === 'true', now: this.now(), registry });
    const npmRequest: { range: string; source: Source } | undefined = project.engines.npm ? { range: project.engines.npm, source: 'engines' } : pm?.name === 'npm' ? { range: pm.version, source: 'packageManager' } : undefined;
    const npm = resolveNpm(npmRequest, node.version, npmDoc, registry);
    const notes: string[] = [];

    let yarn: Selection['yarn'];
    if (wantsYarn) {
      if (project.engines.yarn && pm?.name === 'yarn') {
        notes.push(warning('Multiple Yarn versions declared', `package.json names Yarn in "packageManager" (${clip(pm.raw)}) and in "engines.yarn" (${clip(project.engines.yarn)}).`, `"packageManager" wins: Yarn ${clip(pm.version)} is installed. Remove one of the two to make that explicit.`));
      }
      if (pm?.name === 'yarn' && project.yarnPath) {
        notes.push(warning('Yarn release in .yarnrc.yml may override "packageManager"', `"packageManager" asks for ${clip(pm.raw)}, but .yarnrc.yml's yarnPath (${clip(project.yarnPath)}) is what Yarn will run.`, 'Keep one: remove "packageManager", or remove yarnPath and the vendored release.'));
      }
      const request: { range: string; source: Source } | undefined = pm?.name === 'yarn' ? { range: pm.version, source: 'packageManager' } : project.engines.yarn ? { range: project.engines.yarn, source: 'engines' } : undefined;
      const r = resolveYarn(request, yarnDoc, berryDoc, registry);
      // Berry: the lockfile is in Berry's format, the Yarn itself is 2+, or a vendored release takes over.
      yarn = { ...r, berry: project.yarnLockBerry || semver.major(r.version) >= 2 || project.yarnPath !== undefined };
    }

    let pnpm: Resolved | undefined;
    if (wantsPnpm && pnpmDoc) {
      if (project.engines.pnpm && pm?.name === 'pnpm') {
        notes.push(warning('Multiple pnpm versions declared', `package.json names pnpm in "packageManager" (${clip(pm.raw)}) and in "engines.pnpm" (${clip(project.engines.pnpm)}).`, `"packageManager" wins: pnpm ${clip(pm.version)} is installed. Remove one of the two to make that explicit.`));
      }
      const request: { range: string; source: Source } | undefined = pm?.name === 'pnpm' ? { range: pm.version, source: 'packageManager' } : project.engines.pnpm ? { range: project.engines.pnpm, source: 'engines' } : undefined;
      const r = resolvePnpm(request, node.version, pnpmDoc, registry);
      if (r.defaulted) {
        notes.push(warning('Default pnpm version used', `pnpm-lock.yaml is committed, but package.json names no pnpm version ("packageManager" or "engines.pnpm"), so pnpm ${r.version} (the newest) is used.`, `Set one, e.g. "packageManager": "pnpm@${r.version}", so builds do not change under you.`));
      }
      pnpm = r;
    }
    return { node, npm, yarn, pnpm, notes: [...node.notes, ...notes] };
  }

  private env(manager: Manager, s: Selection): Record<string, string> {
    const dirOf = (r: Resolved): string => `${TOOLCHAINS_MOUNT}/${PACKAGE_DIRS[r.package]}/${r.version}`;
    const env: Record<string, string> = {
      BERTH_NODE_VERSION: s.node.version,
      BERTH_NODE_DIR: dirOf(s.node),
      BERTH_NPM_VERSION: s.npm.version,
      BERTH_NPM_DIR: dirOf(s.npm),
      BERTH_PACKAGE_MANAGER: manager,
    };
    if (s.yarn) {
      env.BERTH_YARN_VERSION = s.yarn.version;
      env.BERTH_YARN_DIR = dirOf(s.yarn);
      env.BERTH_YARN_BERRY = String(s.yarn.berry);
    }
    if (s.pnpm) {
      env.BERTH_PNPM_VERSION = s.pnpm.version;
      env.BERTH_PNPM_DIR = dirOf(s.pnpm);
    }
    env.BERTH_TOOLCHAIN_NOTES = s.notes.join('\n\n');
    return env;
  }

  /** One pruning pass now (it also runs after each download): least recently used versions beyond keepVersions that no build uses. */
  prune(): Promise<void> {
    return this.cache.schedulePrune();
  }

  /** Stops background timers (tests, shutdown). */
  close(): void {
    this.cache.close();
  }
}
