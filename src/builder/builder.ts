import { execFile, execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmodSync, chownSync, cpSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { realpath, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { errorMessage } from '../domain/errors.js';
import type { Logger } from '../domain/log.js';
import type { Attachment, Networks } from '../network/index.js';
import type { Store } from '../store/index.js';
import { allocateUid, readTenantFile, type Bind, type Sandbox } from '../sandbox/index.js';
import { mountVolume, reapVolumes, type Volume } from '../sandbox/volume.js';
import { BuildError, compile, type Buildpack, type BuildpackPreparer, type CompileResult } from './compile.js';
import { applySlugignore } from './slugignore.js';
import { buildTimeout, DEFAULT_BUILD_TIMEOUT_MS, MAX_BUILD_TIMEOUT_MS } from './build-timeout.js';
import { SlugStore, type SlugRecord } from './slugs.js';

const exec = promisify(execFile);

/** Where the built-in buildpacks ship: `buildpacks/` at the package root. */
export const BUILTIN_BUILDPACKS_DIR = resolve(import.meta.dirname, '..', '..', ...(import.meta.dirname.includes('/dist/') ? ['..'] : []), 'buildpacks');

export interface BuilderOptions {
  store: Store;
  log: Logger;
  dataDir: string;
  /** Where every build step and release phase runs. */
  sandbox: Sandbox;
  /** Each build and release phase runs in an egress-only namespace of its own from here. */
  network: Networks;
  /** Default build time (15 min); BUILD_TIMEOUT (seconds) in an app's config overrides it up to `maxTimeoutMs`. */
  timeoutMs?: number;
  /** The most BUILD_TIMEOUT may ask for (default 60 min); a bigger value is clamped, with a line saying so. */
  maxTimeoutMs?: number;
  memoryBytes?: number;
  /** Bytes a build or release phase may print before it is stopped (default 100 MB). */
  outputLimitBytes?: number;
  /** A build's (or release phase's) writable space: app dir, /tmp and cache together (default 2 GiB). */
  diskBytes?: number;
  /** Host directories tenants may name as buildpacks (absolute, resolved; BERTH_BUILDPACK_DIRS); none by default. */
  buildpackDirs?: string[];
  /** This machine's id: the slug store records the blobs it holds under it. */
  machine?: string;
  /** Node and its package managers for the built-in nodejs buildpack, from a per-machine cache. */
  toolchains?: BuildpackPreparer;
  /** Variables every build step gets (NODE_EXTRA_CA_CERTS, BERTH_NPM_REGISTRY): the operator's, not a tenant's. */
  buildEnv?: Record<string, string>;
  /** A CA bundle (host path) builds trust besides Node's own: a TLS-inspecting proxy's, say. */
  extraCaCerts?: string;
}

/**
 * Turns source into a slug. The workspace lives under `<data-dir>/work` (mode 0711: the build uid
 * can reach its own directory by name, list nothing); each build's directory belongs to that uid.
 */
export interface Workspace {
  id: string;
  /** The mountpoint of the workspace's own volume, owned by `uid`. */
  root: string;
  appDir: string;
  envDir: string;
  cacheDir: string;
  tmpDir: string;
  uid: number;
}

export const DEFAULT_BUILD_DISK = 2 * 1024 * 1024 * 1024;

export class Builder {
  readonly slugs: SlugStore;
  readonly workDir: string;
  readonly sandbox: Sandbox;
  /** Why this node cannot build (said to every pusher), or undefined when it can. */
  readonly unavailable: string | undefined;
  private readonly builtins: Buildpack[];
  /** NODE_EXTRA_CA_CERTS and the bind that makes it readable in the sandbox, when the operator has one. */
  private readonly extraCa: { env: Record<string, string>; binds: Bind[] } = { env: {}, binds: [] };
  private readonly volumes = new Map<string, Volume>();
  /** Leftovers of a builder killed mid-build, unmounted and removed before the first workspace. */
  private readonly reaped: Promise<void>;

  constructor(private readonly options: BuilderOptions) {
    this.sandbox = options.sandbox;
    const dataDir = resolve(options.dataDir);
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    // The data dir may be traversed (not listed) so bwrap, running as a build uid, can reach the
    // one workspace bound into a sandbox; everything else in it stays owner-only.
    chmodSync(dataDir, 0o711);
    this.workDir = join(dataDir, 'work');
    mkdirSync(this.workDir, { recursive: true });
    chmodSync(this.workDir, 0o711);
    this.slugs = new SlugStore(options.store, join(dataDir, 'slugs'), undefined, options.machine);
    // A builder killed mid-build leaves its sandboxes' empty cgroups behind.
    this.sandbox.reapStaleCgroups('build-');
    this.unavailable = buildsUnavailable(this.workDir);
    if (this.unavailable) options.log.warn({ reason: this.unavailable }, 'builds are unavailable on this node');
    // A world-readable copy of the built-ins, so a checkout under a private home still works.
    const packs = join(this.workDir, 'buildpacks');
    rmSync(packs, { recursive: true, force: true });
    cpSync(BUILTIN_BUILDPACKS_DIR, packs, { recursive: true });
    chmodSync(packs, 0o755);
    const lib = { src: join(packs, 'lib.sh'), dest: '/buildpacks/lib.sh' };
    this.builtins = ['nodejs', 'static', 'procfile'].map((name) => ({
      name,
      hostDir: join(packs, name),
      mount: `/buildpacks/${name}`,
      binds: [lib],
      ...(name === 'nodejs' && options.toolchains ? { prepare: options.toolchains } : {}),
    }));
    if (options.extraCaCerts !== undefined) this.extraCa = this.copyExtraCa(options.extraCaCerts);
    this.reaped = this.reap().catch((err: unknown) => options.log.warn({ err: errorMessage(err) }, 'could not remove the workspaces of an earlier run'));
  }

  /**
   * The operator's CA bundle, copied where build uids can read it (the original may sit under
   * /root or in the data dir, neither reachable from the sandbox) and bound at a fixed path.
   */
  private copyExtraCa(path: string): { env: Record<string, string>; binds: Bind[] } {
    const copy = join(this.workDir, 'extra-ca.pem');
    try {
      cpSync(path, copy, { dereference: true });
      chmodSync(copy, 0o644);
    } catch (err) {
      this.options.log.warn({ file: path, err: errorMessage(err) }, 'NODE_EXTRA_CA_CERTS cannot be read; builds trust only the CAs Node ships with');
      return { env: {}, binds: [] };
    }
    return { env: { NODE_EXTRA_CA_CERTS: EXTRA_CA_MOUNT }, binds: [{ src: copy, dest: EXTRA_CA_MOUNT }] };
  }

  private async reap(): Promise<void> {
    await reapVolumes(this.workDir);
    for (const f of readdirSync(this.workDir)) if (WORKSPACE.test(f)) rmSync(join(this.workDir, f), { recursive: true, force: true });
    // Caches half saved when the builder died: the old copy is still in place beside them.
    const caches = join(this.workDir, 'cache');
    if (existsSync(caches)) for (const f of readdirSync(caches)) if (f.startsWith('.')) rmSync(join(caches, f), { recursive: true, force: true });
  }

  /**
   * A fresh workspace for one build or release phase: app (the source, becomes the slug), env,
   * /tmp and (unless `cache` is false) a copy of the app's build cache, all on one volume of `diskBytes`, so
   * a build that writes more gets ENOSPC and the host's disk holds no more than that for it. Each
   * app builds as its own unprivileged uid (allocated in the store), stable across builds so its
   * cache stays usable.
   */
  async workspace(appId: string, o: { cache?: boolean } = {}): Promise<Workspace> {
    // The id names a host path: checked here, where root uses it, whatever the store said.
    if (!APP_ID.test(appId)) throw new BuildError('invalid_app', `"${appId.slice(0, 64)}" is not an app id.`);
    await this.reaped;
    const id = randomUUID();
    const uid = await allocateUid(this.options.store, appId);
    const root = join(this.workDir, id);
    const volume = await mountVolume({ imagePath: join(this.workDir, `${id}.img`), mountpoint: root, bytes: this.options.diskBytes ?? DEFAULT_BUILD_DISK, uid, log: this.options.log });
    this.volumes.set(root, volume);
    try {
      // A fresh filesystem no tenant process has touched yet: root may make its directories.
      for (const d of ['app', 'env', 'tmp', 'cache']) mkdirSync(join(root, d), { mode: 0o700 });
      await exec('chown', ['-R', `${uid}:${uid}`, root]);
      const ws = { id, root, appDir: join(root, 'app'), envDir: join(root, 'env'), cacheDir: join(root, 'cache'), tmpDir: join(root, 'tmp'), uid };
      if (o.cache !== false) await this.loadCache(appId, ws);
      return ws;
    } catch (err) {
      await this.releaseWorkspace(root);
      throw err;
    }
  }

  /** The app's cache as its last successful build left it, copied in as the app's uid. */
  private async loadCache(appId: string, ws: Workspace): Promise<void> {
    const saved = join(this.workDir, 'cache', appId);
    if (!existsSync(saved)) return;
    try {
      await exec('setpriv', [`--reuid=${ws.uid}`, `--regid=${ws.uid}`, '--clear-groups', 'cp', '-a', '--', `${saved}/.`, `${ws.cacheDir}/`], { timeout: 600_000 });
    } catch (err) {
      // A cache that does not fit (the limit was lowered) or cannot be read: build without it, and
      // without the part copied so far, which would take the build's disk and look like a cache.
      this.options.log.warn({ app: appId, err: errorMessage(err) }, 'build cache not restored');
      // No tenant process runs in the workspace yet: root empties a directory nobody else writes.
      await rm(ws.cacheDir, { recursive: true, force: true });
      mkdirSync(ws.cacheDir, { mode: 0o700 });
      chownSync(ws.cacheDir, ws.uid, ws.uid);
    }
  }

  /**
   * Keeps the build's /cache for the app's next build: copied out as the app's uid (no larger than
   * the volume it was written in), then swapped in place of the old one.
   */
  private async saveCache(appId: string, ws: Workspace, output: (text: string) => void): Promise<void> {
    const dir = join(this.workDir, 'cache');
    mkdirSync(dir, { recursive: true });
    chmodSync(dir, 0o711);
    const saved = join(dir, appId);
    const fresh = join(dir, `.${appId}.${ws.id}`);
    mkdirSync(fresh, { mode: 0o700 });
    chownSync(fresh, ws.uid, ws.uid);
    try {
      await exec('setpriv', [`--reuid=${ws.uid}`, `--regid=${ws.uid}`, '--clear-groups', 'cp', '-a', '--', `${ws.cacheDir}/.`, `${fresh}/`], { timeout: 600_000 });
      rmSync(saved, { recursive: true, force: true });
      renameSync(fresh, saved);
    } catch (err) {
      rmSync(fresh, { recursive: true, force: true });
      output(` !     The build cache could not be saved; the next build starts without it.\n`);
      this.options.log.warn({ app: appId, err: errorMessage(err) }, 'build cache not saved');
    }
  }

  /**
   * Runs `fn` with an egress-only namespace for build `id` (the outside world, nothing of the
   * platform's), released afterwards whatever happens.
   */
  async withNetwork<T>(id: string, fn: (network: Attachment) => Promise<T>): Promise<T> {
    const network = await this.options.network.attachBuild(id);
    try {
      return await fn(network);
    } finally {
      await network.release().catch((err: unknown) => this.options.log.warn({ build: id, err: errorMessage(err) }, 'could not release a build network'));
    }
  }

  /**
   * Builds the source already in `ws.appDir` (owned by the app's uid) into a slug. Output goes to
   * `output` as it happens; failures are BuildErrors with a message for the pusher. Fetching
   * buildpacks and compiling share the build's namespace.
   */
  async build(
    app: { id: string; name: string },
    ws: Workspace,
    config: Record<string, string>,
    commit: string | null,
    output: (text: string) => void,
    signal?: AbortSignal,
  ): Promise<{ slug: SlugRecord; buildpacks: string[] }> {
    // Before any buildpack, as Heroku does: neither the build nor the slug sees what it lists.
    await applySlugignore(ws.appDir, ws.uid, output);
    const result = await this.withNetwork(ws.id, (network) => this.compileIn(network, ws, config, commit, output, signal));
    await this.saveCache(app.id, ws, output);
    output('-----> Compressing...\n');
    const slug = await this.slugs.create(app.id, ws.appDir, { processTypes: result.processTypes, commit, buildpack: result.buildpacks.join(', ') });
    output(`       Done: ${(slug.size / 1024 / 1024).toFixed(1)}M\n`);
    return { slug, buildpacks: result.buildpacks };
  }

  private async compileIn(
    network: Attachment,
    ws: Workspace,
    config: Record<string, string>,
    commit: string | null,
    output: (text: string) => void,
    signal?: AbortSignal,
  ): Promise<CompileResult> {
    const chosen = await this.resolveBuildpacks(config, ws, output, network.netns);
    const fetched = join(ws.root, 'buildpacks');
    await exec('chown', ['-R', `${ws.uid}:${ws.uid}`, ws.appDir, ...(existsSync(fetched) ? [fetched] : [])]);
    return compile({
      sandbox: this.sandbox,
      buildId: ws.id,
      appDir: ws.appDir,
      cacheDir: ws.cacheDir,
      envDir: ws.envDir,
      tmpDir: ws.tmpDir,
      config,
      commit,
      builtins: this.builtins,
      uid: ws.uid,
      gid: ws.uid,
      timeoutMs: buildTimeout(config.BUILD_TIMEOUT, this.options.timeoutMs ?? DEFAULT_BUILD_TIMEOUT_MS, this.options.maxTimeoutMs ?? MAX_BUILD_TIMEOUT_MS, output),
      memoryBytes: this.options.memoryBytes ?? 2 * 1024 * 1024 * 1024,
      ...(this.options.outputLimitBytes !== undefined ? { outputLimitBytes: this.options.outputLimitBytes } : {}),
      output,
      network,
      env: { ...this.options.buildEnv, ...this.extraCa.env },
      binds: this.extraCa.binds,
      ...(chosen ? { buildpacks: chosen } : {}),
      ...(signal ? { signal } : {}),
    });
  }

  /**
   * The buildpacks an app asks for: BUILDPACK_URL, else app.json's `buildpacks`; undefined means
   * "detect among the built-ins". Each entry is `heroku/<name>` (a built-in), a local path, or a
   * git URL (optionally `#ref`), fetched into the workspace so the build uid can read it.
   */
  private async resolveBuildpacks(config: Record<string, string>, ws: { root: string; appDir: string; uid: number }, output: (t: string) => void, netns: string | undefined): Promise<Buildpack[] | undefined> {
    let urls: string[] = [];
    if (config.BUILDPACK_URL) urls = [config.BUILDPACK_URL];
    else {
      const text = readTenantFile(ws.appDir, 'app.json');
      if (text !== undefined) {
        let parsed: { buildpacks?: { url?: unknown }[] };
        try {
          parsed = JSON.parse(text) as typeof parsed;
        } catch {
          throw new BuildError('invalid_app_json', 'app.json is not valid JSON.');
        }
        urls = (parsed.buildpacks ?? []).map((b) => String(b.url ?? ''));
      }
    }
    if (urls.length === 0) return undefined;
    mkdirSync(join(ws.root, 'buildpacks'), { recursive: true });
    // Fetched as the app's uid, into a directory it owns.
    chownSync(join(ws.root, 'buildpacks'), ws.uid, ws.uid);
    const packs: Buildpack[] = [];
    for (const [i, url] of urls.entries()) {
      const builtin = this.builtins.find((b) => url === `heroku/${b.name}` || url === b.name);
      if (builtin) {
        packs.push(builtin);
        continue;
      }
      const dest = join(ws.root, 'buildpacks', String(i));
      output(`-----> Fetching buildpack ${url}\n`);
      await this.fetchBuildpack(url, dest, ws.uid, netns);
      packs.push({ name: url, hostDir: dest, mount: `/buildpacks/custom-${i}`, binds: [] });
    }
    return packs;
  }

  /**
   * A tenant names a buildpack; Berth fetches it as the tenant's uid. Allowed: https git URLs, and
   * directories (or file:// repositories) inside the operator's BERTH_BUILDPACK_DIRS — never an
   * arbitrary host path, which root would otherwise copy into the sandbox for them.
   */
  private async fetchBuildpack(url: string, dest: string, uid: number, netns: string | undefined): Promise<void> {
    const [repo = url, ref] = url.split('#');
    const local = repo.startsWith('file://') ? repo.slice('file://'.length) : repo.startsWith('/') ? repo : undefined;
    if (local !== undefined) {
      const real = await realpath(local).catch(() => undefined);
      const allowed = (this.options.buildpackDirs ?? []).some((d) => real !== undefined && (real === d || real.startsWith(`${d}/`)));
      if (!allowed) throw new BuildError('invalid_buildpack', `Buildpack ${url} is not an https git URL or a directory the operator allows (BERTH_BUILDPACK_DIRS).`);
    } else if (!/^https:\/\/[^\s]+$/.test(repo)) {
      throw new BuildError('invalid_buildpack', `Buildpack ${url} must be heroku/<name> or an https git URL.`);
    }
    const source = local !== undefined && !existsSync(join(local, '.git')) && !local.endsWith('.git') ? undefined : repo;
    if (source === undefined) {
      // A plain directory the operator allows: copied as the app's uid.
      await exec('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', 'cp', '-R', '--no-preserve=ownership', '--', local as string, dest]).catch((err: Error) => {
        throw new BuildError('invalid_buildpack', `Could not copy buildpack ${url}: ${err.message.split('\n').pop()}`);
      });
    } else {
      // As the app's uid, with no config, credentials or prompts of root's.
      // A local repository is the operator's (allowed above) and owned by root: git only trusts
      // it through a global config, so the clone gets one of its own saying just that.
      let globalConfig = '/dev/null';
      if (local !== undefined) {
        globalConfig = `${dest}.gitconfig`;
        writeFileSync(globalConfig, '[safe]\n\tdirectory = *\n', { mode: 0o644 });
      }
      const args = ['-c', 'protocol.allow=never', '-c', 'protocol.https.allow=always', '-c', 'protocol.file.allow=always', 'clone', '--quiet', '--depth', '1', ...(ref ? ['--branch', ref] : []), '--', source, dest];
      // In the build's namespace: a tenant's URL reaches the outside world, nothing of ours. (The
      // host's resolv.conf applies: without a mount namespace of its own git cannot get another.)
      const [cmd, ...argv] = [...(netns !== undefined ? ['nsenter', `--net=${netns}`] : []), 'setpriv', `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', 'git', ...args];
      await exec(cmd as string, argv, {
        timeout: 120_000,
        env: { PATH: '/usr/bin:/bin', HOME: '/nonexistent', GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: globalConfig, GIT_TERMINAL_PROMPT: '0', GIT_ASKPASS: '/bin/false', SSH_ASKPASS: '/bin/false' },
      }).catch((err: Error & { stderr?: string }) => {
        throw new BuildError('invalid_buildpack', `Could not fetch buildpack ${url}: ${(err.stderr ?? err.message).trim().split('\n').pop()}`);
      });
    }
    if (!existsSync(join(dest, 'bin', 'compile'))) throw new BuildError('invalid_buildpack', `Buildpack ${url} has no bin/compile.`);
  }

  /** Unmounts and deletes a workspace's volume in the background. */
  removeWorkspace(root: string): void {
    void this.releaseWorkspace(root);
  }

  /** Unmounts and deletes a workspace's volume; never rejects (it runs in `finally` blocks). */
  async releaseWorkspace(root: string): Promise<void> {
    const volume = this.volumes.get(root);
    this.volumes.delete(root);
    try {
      await volume?.release();
      if (root.startsWith(`${this.workDir}/`) && existsSync(root)) rmSync(root, { recursive: true, force: true });
    } catch (err) {
      this.options.log.warn({ workspace: root, err: errorMessage(err) }, 'could not remove a workspace');
    }
  }
}

export { BuildError };

/** Where builds find the operator's extra CA bundle. */
const EXTRA_CA_MOUNT = '/berth/extra-ca.pem';

/** A workspace's mountpoint or image, by name (a UUID). */
const WORKSPACE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(\.img)?$/;
const APP_ID = /^[A-Za-z0-9][A-Za-z0-9-]{0,63}$/;

/**
 * Builds need root (cgroups, dropping to per-app uids) and a data dir that the build uids can
 * traverse (bwrap runs as them). Found out at start and said plainly, not as a failed detect.
 */
function buildsUnavailable(dir: string): string | undefined {
  if (process.getuid?.() !== 0) return 'Builds need Berth to run as root (sudo ./berth up): they use cgroups and per-app unprivileged uids.';
  try {
    execFileSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'test', '-x', dir], { stdio: 'ignore' });
    return undefined;
  } catch {
    return `Builds cannot reach ${dir}: every parent directory of the data dir must be searchable by other users (chmod o+x), or use a data dir under /var/lib.`;
  }
}
