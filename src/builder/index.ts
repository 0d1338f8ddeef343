/**
 * The builder: source → slug. `createBuilder` makes the parts that need nothing from the platform
 * (buildpacks in the sandbox, the slug store, the app repositories, running a command in a slug);
 * the controller's deploys drive them through the ports in `ports.ts`. `createBuilderServer` is the
 * builder's network edge: git over HTTP and SSH, the push hook and slug blobs, handing each push to
 * a `Deployer` and asking `GitAccess` who may reach what.
 */
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { get } from '../domain/codec.js';
import { keys } from '../domain/keys.js';
import { codecs } from '../domain/records.js';
import type { Logger } from '../domain/log.js';
import type { SlugRecord } from '../domain/records.js';
import type { Networks } from '../network/index.js';
import type { Sandbox } from '../sandbox/index.js';
import type { Store } from '../store/index.js';
import { Builder } from './builder.js';
import { GitRepos, registerGitRoutes } from './git.js';
import type { Deployer, GitAccess, SlugBuilder, SlugRunner } from './ports.js';
import { PushHandler, registerHookRoute } from './push.js';
import { SandboxSlugRunner } from './release-phase.js';
import { GitSlugBuilder } from './slug-builder.js';
import { registerSlugBlobRoutes } from './slug-routes.js';
import { startGitSsh } from './ssh.js';

export { Builder, BUILTIN_BUILDPACKS_DIR } from './builder.js';
export { parseProcfile } from './procfile.js';
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
  /** The host path of a slug's tarball on this node (for the embedded agent and one-off dynos). */
  slugPath(slugId: string): Promise<string>;
}

export function createBuilder(options: BuilderOptions): BuilderComponent {
  const builder = new Builder({ store: options.store, log: options.log.child({ component: 'builder' }), dataDir: options.dataDir, sandbox: options.sandbox, network: options.network, buildpackDirs: options.buildpackDirs ?? [] });
  const repos = new GitRepos(join(options.dataDir, 'repos'));
  const slug = async (slugId: string): Promise<SlugRecord | undefined> => {
    return (await get(options.store, keys.slug(slugId), codecs.slug))?.value;
  };
  return {
    slugs: new GitSlugBuilder(builder, repos),
    runner: new SandboxSlugRunner(options.store, builder),
    repos,
    builder,
    slug,
    async slugPath(slugId) {
      const record = await slug(slugId);
      if (!record) throw new Error(`slug ${slugId} is missing`);
      return builder.slugs.blobPath(record.checksum);
    },
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
      registerSlugBlobRoutes(api, access, builder.slug, builder.builder.slugs);
    },
    startSsh(host, port) {
      return startGitSsh({ host, port, hostKeyPath: o.hostKeyPath, access, repos: builder.repos, pushes, log: log.child({ transport: 'ssh' }) });
    },
  };
}
