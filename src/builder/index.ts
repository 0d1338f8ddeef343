/**
 * The builder: source → slug. `createBuilder` makes the parts that need nothing from the platform
 * (buildpacks in the sandbox, the slug store, the app repositories, running a command in a slug);
 * the controller's deploys drive them through the ports in `ports.ts`. `createBuilderServer` is the
 * builder's network edge: git over HTTP and SSH, the push hook and slug blobs, handing each push to
 * a `Deployer` and asking `GitAccess` who may reach what.
 */
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { get } from '../domain/codec.js';
import { errorMessage, isBerthError } from '../domain/errors.js';
import { keys } from '../domain/keys.js';
import { codecs } from '../domain/records.js';
import type { Logger } from '../domain/log.js';
import type { ClusterPeers } from '../domain/peers.js';
import type { SlugRecord } from '../domain/records.js';
import type { Networks } from '../network/index.js';
import type { Sandbox } from '../sandbox/index.js';
import type { Store } from '../store/index.js';
import { Builder } from './builder.js';
import { BuildCaches } from './caches.js';
import { GitRepos, registerGitRoutes } from './git.js';
import type { Deployer, GitAccess, SlugBuilder, SlugRunner } from './ports.js';
import { PushHandler, registerHookRoute } from './push.js';
import { SandboxSlugRunner } from './release-phase.js';
import { SlugReplicator, type SlugReplicatorOptions } from './replication.js';
import { GitSlugBuilder } from './slug-builder.js';
import { registerSlugBlobRoutes, registerSlugCopyRoutes } from './slug-routes.js';
import { checksumHex } from './slugs.js';
import { startGitSsh } from './ssh.js';
import { DEFAULT_REGISTRY, Toolchains } from './toolchains/index.js';

export { Builder, BUILTIN_BUILDPACKS_DIR } from './builder.js';
export { parseProcfile } from './procfile.js';
export { SlugReplicator, type SlugReplicatorOptions } from './replication.js';
export type { AppRef, BuildRequest, BuiltSlug, Deployer, GitAccess, PushSource, SlugBuilder, SlugCommand, SlugRunner } from './ports.js';

export interface BuilderOptions {
  store: Store;
  log: Logger;
  dataDir: string;
  /** Where builds and release phases run. */
  sandbox: Sandbox;
  /** Every build and release phase gets an egress-only namespace of its own (`attachBuild`). */
  network: Networks;
  /** Host directories tenants may name as buildpacks; none by default. */
  buildpackDirs?: string[];
  /**
   * This machine's id, which its slug copy records carry; `peers.self` when peers are given.
   * Without either, no copy records are written (a node that never joins a cluster).
   */
  machine?: string;
  /**
   * The other live servers: a build waits for one of them to hold its slug, and blobs this server
   * lacks are fetched from them. Absent (or none live): one copy, on this server.
   */
  peers?: ClusterPeers;
  /** What builds may use; each has a default (`BuildLimits`). */
  limits?: BuildLimits;
  /** Where Node and its package managers come from and are kept, for the built-in nodejs buildpack. */
  toolchains?: BuilderToolchainOptions;
  /** Timeouts and limits of the replication (defaults in `SlugReplicatorOptions`). */
  replication?: Pick<SlugReplicatorOptions, 'parallel' | 'copyTimeoutMs' | 'idleTimeoutMs' | 'repairMs' | 'collectGraceMs'>;
}

export interface BuilderToolchainOptions {
  /** The per-machine cache (default `<data-dir>/toolchains`); several Berth processes may share one. */
  dir?: string;
  /** The npm registry (default https://registry.npmjs.org); builds use it too unless an app sets its own. */
  registry?: string;
  /** A CA bundle builds trust besides Node's own (a TLS-inspecting proxy's, say): NODE_EXTRA_CA_CERTS. */
  extraCaCerts?: string;
}

/** An operator's limits on builds (and release phases), all optional. */
export interface BuildLimits {
  /** Default build time (15 min). */
  timeoutMs?: number;
  /** The most an app's BUILD_TIMEOUT may ask for (60 min); more is clamped with a warning line. */
  maxTimeoutMs?: number;
  /** Bytes a build or release phase may print before it is stopped (100 MB). */
  outputLimitBytes?: number;
  /** A build's writable space: its app dir, /tmp and cache (2 GiB; `--build-disk`). */
  diskBytes?: number;
}

export interface BuilderComponent {
  /** Source → slug, for the controller's deploys. */
  slugs: SlugBuilder;
  /** A command in a slug, sandboxed (the release phase, postdeploy). */
  runner: SlugRunner;
  /** The app repositories git pushes to (`<data-dir>/repos`). */
  repos: GitRepos;
  /** The buildpacks, workspaces and slug store behind `slugs` and `runner`. */
  builder: Builder;
  /** A slug's record, from the store. */
  slug(slugId: string): Promise<SlugRecord | undefined>;
  /**
   * The host path of a slug's tarball on this server (for its agent and one-off dynos), fetched
   * from another server first when this one lacks it.
   */
  slugPath(slugId: string): Promise<string>;
  /**
   * Keeps every live slug on this server and removes dead ones; its routes answer peers' copy
   * requests. The node starts it on every server (`start()`/`stop()`).
   */
  replicator: SlugReplicator;
  /** Removes the build caches of destroyed apps from this server (`start()`/`stop()`, as the replicator). */
  caches: BuildCaches;
}

export function createBuilder(options: BuilderOptions): BuilderComponent {
  const log = options.log.child({ component: 'builder' });
  const machine = options.peers?.self ?? options.machine;
  const tc = options.toolchains ?? {};
  const toolchainDir = resolve(tc.dir ?? join(options.dataDir, 'toolchains'));
  const toolchains = new Toolchains({ dir: toolchainDir, registry: tc.registry ?? DEFAULT_REGISTRY, log: log.child({ part: 'toolchains' }) });
  const buildEnv: Record<string, string> = { ...(tc.registry !== undefined ? { BERTH_NPM_REGISTRY: tc.registry } : {}) };
  const builder = new Builder({
    store: options.store,
    log,
    dataDir: options.dataDir,
    sandbox: options.sandbox,
    network: options.network,
    buildpackDirs: options.buildpackDirs ?? [],
    toolchains,
    buildEnv,
    ...(tc.extraCaCerts !== undefined ? { extraCaCerts: tc.extraCaCerts } : {}),
    ...(machine ? { machine } : {}),
    ...options.limits,
  });
  const replicator = new SlugReplicator({ store: options.store, log: log.child({ part: 'slug-replication' }), slugs: builder.slugs, ...(options.peers ? { peers: options.peers } : {}), ...options.replication });
  const repos = new GitRepos(join(options.dataDir, 'repos'));
  const slug = async (slugId: string): Promise<SlugRecord | undefined> => {
    return (await get(options.store, keys.slug(slugId), codecs.slug))?.value;
  };
  const slugPath = async (slugId: string): Promise<string> => {
    const record = await get(options.store, keys.slug(slugId), codecs.slug);
    const hex = record && checksumHex(record.value.checksum);
    if (!hex) throw new Error(`slug ${slugId} is missing`);
    // Kept until this server's replicator has seen the record, however far behind its watch is.
    await replicator.ensure(hex, record.mod);
    try {
      return await builder.slugs.verify(hex);
    } catch (err) {
      if (!isBerthError(err, 'slug_checksum_mismatch')) throw err;
      // The bad blob is gone: fetched again from a peer that holds it, and checked again.
      log.error({ slug: slugId, err: errorMessage(err) }, 'a slug blob failed its checksum; fetching it again');
      await replicator.ensure(hex, record.mod);
      return builder.slugs.verify(hex);
    }
  };
  const runner = new SandboxSlugRunner(options.store, builder, options.limits?.outputLimitBytes);
  return {
    slugs: new GitSlugBuilder(builder, repos, replicator, options.store, log),
    // The release phase may run on a server that has not fetched the slug yet (a rollback, a
    // config change right after a build elsewhere).
    runner: { run: async (command) => (await slugPath(command.slugId), runner.run(command)) },
    repos,
    builder,
    slug,
    slugPath,
    replicator,
    caches: new BuildCaches({ store: options.store, log: log.child({ part: 'build-caches' }), dir: join(builder.workDir, 'cache') }),
  };
}

export interface BuilderServerOptions {
  builder: BuilderComponent;
  /** Who may reach which app, and whose SSH key is whose (the controller). */
  access: GitAccess;
  /** Where an accepted push goes: the controller's deploys. */
  deployer: Deployer;
  /** Where the pre-receive hook reaches this process: the API on loopback. */
  hookUrl: string;
  /** The SSH server's host key (OpenSSH format); made on first start if missing. */
  hostKeyPath: string;
  log: Logger;
  /** Pushes building at once across apps (default: the number of cores). */
  maxParallel?: number;
}

export interface BuilderServer {
  /** One push at a time per app; shared by both transports. */
  pushes: PushHandler;
  /** The API server's extra routes: git at `/<app>.git`, the push hook, slug blobs. */
  routes(api: FastifyInstance): void;
  /** git over SSH on the same repositories and pushes; call after the API is listening. */
  startSsh(host: string, port: number): Promise<{ port: number; close(): Promise<void> }>;
}

export function createBuilderServer(o: BuilderServerOptions): BuilderServer {
  const { builder, access, deployer } = o;
  const log = o.log.child({ component: 'builder' });
  const pushes = new PushHandler({ access, deployer, builder: builder.slugs, repos: builder.repos, maxParallel: o.maxParallel ?? availableParallelism() }, o.hookUrl);
  return {
    pushes,
    routes(api) {
      registerGitRoutes(api, access, builder.repos, pushes);
      registerHookRoute(api, pushes);
      registerSlugBlobRoutes(api, { store: builder.builder.slugs.store, log, access, find: builder.slug, slugs: builder.builder.slugs, replicator: builder.replicator });
      registerSlugCopyRoutes(api, { slugs: builder.builder.slugs, replicator: builder.replicator });
    },
    startSsh(host, port) {
      return startGitSsh({ host, port, hostKeyPath: o.hostKeyPath, access, repos: builder.repos, pushes, log: log.child({ transport: 'ssh' }) });
    },
  };
}
