/**
 * The builder: git push over smart HTTP, Heroku buildpacks in a sandbox, content-addressed slugs.
 * `builderRoutes` is what `berth up` hands the API server: git at `/<app>.git` and the push hook.
 */
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Services } from '../controller/services.js';
import { Builder } from './builder.js';
import { GitRepos, registerGitRoutes } from './git.js';
import { PushHandler, registerHookRoute } from './push.js';
import { releasePhase } from './release-phase.js';
import { registerSlugRoutes } from './slug-routes.js';
import { registerBuildRoutes } from './build-routes.js';
import { startGitSsh } from './ssh.js';
import type { Logger } from '../domain/log.js';
import { keys } from '../domain/keys.js';

export { Builder, BUILTIN_BUILDPACKS_DIR } from './builder.js';
export { parseProcfile } from './procfile.js';

export interface BuilderOptions {
  dataDir: string;
  /** Where the pre-receive hook reaches this process: the API on loopback. */
  hookUrl: string;
  /** Pushes building at once across apps (default: the number of cores). */
  maxParallel?: number;
  /** Slugs kept per app: those of its newest N releases (default 10). */
  retainSlugs?: number;
}

export interface BuilderComponent {
  /** The API server's extra routes: git at `/<app>.git`, the push hook, slugs and build output. */
  routes: (api: FastifyInstance, services: Services) => void;
  /** git over SSH on the same repositories and pushes; call after the API is listening. */
  startSsh(host: string, port: number): Promise<{ port: number; close(): Promise<void> }>;
  /** The host path of a slug's tarball on this node (for the embedded agent). */
  slugPath(slugId: string): Promise<string>;
}

export function createBuilder(options: BuilderOptions): BuilderComponent {
  let parts: { services: Services; repos: GitRepos; pushes: PushHandler; log: Logger; builder: Builder } | undefined;
  return {
    routes(api, services) {
      const log = services.log.child({ component: 'builder' });
      const builder = new Builder({ store: services.store, log, dataDir: options.dataDir });
      const repos = new GitRepos(join(options.dataDir, 'repos'));
      const pushes = new PushHandler({ services, builder, repos, log, maxParallel: options.maxParallel ?? availableParallelism(), retainSlugs: options.retainSlugs ?? 10 }, options.hookUrl);
      services.releases.setReleasePhase(releasePhase(services.store, builder));
      registerGitRoutes(api, services, repos, pushes);
      registerHookRoute(api, pushes);
      registerSlugRoutes(api, services, builder.slugs);
      registerBuildRoutes(api, services, pushes);
      parts = { services, repos, pushes, log, builder };
    },
    async slugPath(slugId) {
      if (!parts) throw new Error('the builder routes must be registered first');
      const kv = await parts.services.store.get(keys.slug(slugId));
      if (!kv) throw new Error(`slug ${slugId} is missing`);
      return parts.builder.slugs.blobPath((JSON.parse(kv.value) as { checksum: string }).checksum);
    },
    async startSsh(host, port) {
      if (!parts) throw new Error('the builder routes must be registered before SSH starts');
      return startGitSsh({ host, port, hostKeyPath: join(options.dataDir, 'ssh', 'host_ed25519'), services: parts.services, repos: parts.repos, pushes: parts.pushes, log: parts.log.child({ transport: 'ssh' }) });
    },
  };
}
