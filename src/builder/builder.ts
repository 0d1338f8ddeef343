import { execFile, execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmodSync, chownSync, cpSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { realpath } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { errorMessage } from '../domain/errors.js';
import type { Logger } from '../domain/log.js';
import type { Attachment, Networks } from '../network/index.js';
import type { Store } from '../store/index.js';
import { allocateUid, readTenantFile, type Sandbox } from '../sandbox/index.js';
import { BuildError, compile, type Buildpack, type CompileResult } from './compile.js';
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
  /** Default build limits; BUILD_TIMEOUT (seconds) in an app's config overrides the time. */
  timeoutMs?: number;
  memoryBytes?: number;
  /** Host directories tenants may name as buildpacks (absolute, resolved; BERTH_BUILDPACK_DIRS); none by default. */
  buildpackDirs?: string[];
  /** This machine's id: the slug store records the blobs it holds under it. */
  machine?: string;
}

/**
 * Turns source into a slug. The workspace lives under `<data-dir>/work` (mode 0711: the build uid
 * can reach its own directory by name, list nothing); each build's directory belongs to that uid.
 */
export class Builder {
  readonly slugs: SlugStore;
  readonly workDir: string;
  readonly sandbox: Sandbox;
  /** Why this node cannot build (said to every pusher), or undefined when it can. */
  readonly unavailable: string | undefined;
  private readonly builtins: Buildpack[];

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
    this.builtins = ['nodejs', 'static', 'procfile'].map((name) => ({ name, hostDir: join(packs, name), mount: `/buildpacks/${name}`, binds: [lib] }));
  }

  /**
   * A fresh workspace for one build: app (the source, becomes the slug), env, and the app's cache.
   * Each app builds as its own unprivileged uid (allocated in the store), stable across builds so
   * its cache stays usable.
   */
  async workspace(appId: string): Promise<{ id: string; root: string; appDir: string; envDir: string; cacheDir: string; uid: number }> {
    const id = randomUUID();
    const uid = await allocateUid(this.options.store, appId);
    const root = join(this.workDir, id);
    const cacheDir = join(this.workDir, 'cache', appId);
    mkdirSync(join(root, 'app'), { recursive: true });
    mkdirSync(join(root, 'env'), { recursive: true });
    mkdirSync(cacheDir, { recursive: true });
    chmodSync(join(this.workDir, 'cache'), 0o711);
    await exec('chown', ['-R', `${uid}:${uid}`, root, cacheDir]);
    chmodSync(root, 0o700);
    chmodSync(cacheDir, 0o700);
    return { id, root, appDir: join(root, 'app'), envDir: join(root, 'env'), cacheDir, uid };
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
    ws: { id: string; root: string; appDir: string; envDir: string; cacheDir: string; uid: number },
    config: Record<string, string>,
    commit: string | null,
    output: (text: string) => void,
    signal?: AbortSignal,
  ): Promise<{ slug: SlugRecord; buildpacks: string[] }> {
    const result = await this.withNetwork(ws.id, (network) => this.compileIn(network, ws, config, commit, output, signal));
    output('-----> Compressing...\n');
    const slug = await this.slugs.create(app.id, ws.appDir, { processTypes: result.processTypes, commit, buildpack: result.buildpacks.join(', ') });
    output(`       Done: ${(slug.size / 1024 / 1024).toFixed(1)}M\n`);
    return { slug, buildpacks: result.buildpacks };
  }

  private async compileIn(
    network: Attachment,
    ws: { id: string; root: string; appDir: string; envDir: string; cacheDir: string; uid: number },
    config: Record<string, string>,
    commit: string | null,
    output: (text: string) => void,
    signal?: AbortSignal,
  ): Promise<CompileResult> {
    const chosen = await this.resolveBuildpacks(config, ws, output, network.netns);
    const fetched = join(ws.root, 'buildpacks');
    await exec('chown', ['-R', `${ws.uid}:${ws.uid}`, ws.appDir, ...(existsSync(fetched) ? [fetched] : [])]);
    const timeoutSec = Number(config.BUILD_TIMEOUT);
    return compile({
      sandbox: this.sandbox,
      buildId: ws.id,
      appDir: ws.appDir,
      cacheDir: ws.cacheDir,
      envDir: ws.envDir,
      config,
      commit,
      builtins: this.builtins,
      uid: ws.uid,
      gid: ws.uid,
      // Tenants may lower or raise the limit, up to an hour.
      timeoutMs: Number.isFinite(timeoutSec) && timeoutSec > 0 ? Math.min(timeoutSec, 3600) * 1000 : (this.options.timeoutMs ?? 15 * 60_000),
      memoryBytes: this.options.memoryBytes ?? 2 * 1024 * 1024 * 1024,
      output,
      network,
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

  removeWorkspace(root: string): void {
    if (root.startsWith(this.workDir) && existsSync(root)) rmSync(root, { recursive: true, force: true });
  }
}

export { BuildError };

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
