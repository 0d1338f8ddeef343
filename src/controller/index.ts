/**
 * The controller: owns apps, releases, config, formation, domains, keys and users, all in the
 * store, behind a Heroku Platform API v3 subset. `startController` is what `berth up` wires in.
 */
import type { FastifyInstance } from 'fastify';
import type { Logger } from '../domain/log.js';
import type { Store } from '../store/index.js';
import { buildApi, type ApiOptions } from './api/server.js';
import type { PlatformSettings } from './services/types.js';
import { createServices, type Services } from './services/index.js';

export { buildApi, DEFAULT_RATE_LIMIT, type ApiOptions } from './api/server.js';
export { createServices, type ServiceOptions, type Services } from './services/index.js';
export { Deploys, type RunningBuild } from './services/deploys.js';
export type { PlatformSettings } from './services/types.js';

export interface Controller {
  api: FastifyInstance;
  services: Services;
  /** The URL the API listens on. */
  url: string;
  close(): Promise<void>;
}

/** What the controller's services are built from, when the caller does not hand them in. */
export interface ControllerParts {
  store: Store;
  log: Logger;
  settings: PlatformSettings;
  /** The log database (`<data-dir>/logs.db`); lines are kept in memory only without it. */
  logDb?: string;
}

/**
 * Serves the API on `host:port`. The composition root builds the services (with the builder's
 * ports) and hands them in; without `services`, they are built here from `store`, `log`,
 * `settings` and `logDb` (a controller that does not build). `close()` closes them too.
 */
export async function startController(
  options: (ControllerParts | { services: Services }) & {
    host: string;
    port: number;
    /** Other components' routes on the same server (the builder's git endpoints, one-off dynos). */
    routes?: ((api: FastifyInstance, services: Services) => void)[];
    /** The per-token rate limit and TLS of the listener. */
    api?: ApiOptions;
  },
): Promise<Controller> {
  const services = 'services' in options ? options.services : createServices(options.store, options.log, options.settings, options.logDb ? { logDb: options.logDb } : {});
  await services.lookups.start();
  const api = buildApi(services, services.log.child({ component: 'api' }), options.routes ?? [], options.api ?? {});
  await api.listen({ host: options.host, port: options.port });
  await services.drainForwarder.start();
  return {
    api,
    services,
    url: services.settings.apiUrl,
    close: async () => {
      // A connection that was opened and never sent a request (a peer's, a port probe) holds
      // close() until the socket times out: after 10 s the stragglers are cut.
      const cut = setTimeout(() => api.server.closeAllConnections(), 10_000);
      try {
        await api.close();
      } finally {
        clearTimeout(cut);
      }
      await api.drain(10_000);
      await services.close();
    },
  };
}
