/**
 * One-off dynos (`berth run`, `heroku run`, `POST /apps/:app/dynos`), run by the controller
 * process itself in the runtime the node hands it. `createOneOffDynos` is wired like the builder:
 * the runner is built from the controller's services (which exist before the API), its `routes`
 * join the controller's server, and `start` follows once the server is up.
 */
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Runtime } from '../../agent/runtime/types.js';
import type { Networks } from '../../network/index.js';
import { BerthError, errorMessage } from '../../domain/errors.js';
import type { Services } from '../services/index.js';
import { startRendezvous, type Rendezvous } from './rendezvous.js';
import { registerOneOffRoutes, type RendezvousInfo } from './routes.js';
import { OneOffRunner } from './runner.js';

export { OneOffRunner, type Sink } from './runner.js';

export interface OneOffOptions {
  /** The controller's services: the store, its log, the app log stream, the API URL. */
  services: Services;
  dataDir: string;
  /** This node's id (the machine id). */
  node: string;
  /** Its own instance: a ProcessRuntime wipes its work dir when made, so never the agent's. */
  runtime: Runtime;
  /** A namespace and an overlay address per one-off dyno, as formation dynos get. */
  network: Networks;
  slugPath: (slugId: string) => Promise<string>;
  /** Where the TLS listener for `heroku run` listens (port 0: any free one); none if absent. */
  rendezvous?: { host: string; port: number };
  /** How often run records and slots left behind by a failed delete are swept (default 60 s). */
  sweepMs?: number;
}

export interface OneOffDynos {
  readonly runner: OneOffRunner;
  /** The API's routes for one-off dynos, for `startController({ routes })`. */
  routes(api: FastifyInstance): void;
  /** Starts the runner (its lease and stop requests) and the rendezvous listener; after the API is up. */
  start(): Promise<void>;
  /** The rendezvous listener's port and certificate, once started. */
  rendezvous(): { port: number; certPath: string } | undefined;
  /** Stops every one-off dyno of this node. */
  close(): Promise<void>;
}

export function createOneOffDynos(o: OneOffOptions): OneOffDynos {
  const { services } = o;
  const runner = new OneOffRunner({
    store: services.store,
    log: services.log.child({ component: 'run' }),
    runtime: o.runtime,
    network: o.network,
    slugPath: o.slugPath,
    appLog: (appId, line) => services.logs.append(appId, line),
    node: o.node,
    ...(o.sweepMs !== undefined ? { sweepMs: o.sweepMs } : {}),
  });
  let listener: (Rendezvous & { url: string }) | undefined;
  const info = (): RendezvousInfo | undefined => listener && { url: listener.url, certPath: listener.certPath };
  return {
    runner,
    routes(api) {
      registerOneOffRoutes(api, services, runner, info);
    },
    async start() {
      await runner.start();
      if (!o.rendezvous) return;
      const log = services.log.child({ component: 'rendezvous' });
      // The name clients reach the API by is the name they will reach the rendezvous port by.
      const host = new URL(services.settings.apiUrl).hostname;
      try {
        const r = await startRendezvous({
          dir: join(o.dataDir, 'rendezvous'),
          host: o.rendezvous.host,
          port: o.rendezvous.port,
          names: ['127.0.0.1', 'localhost', host.replace(/^\[|\]$/g, '')],
          log,
          attach: (secret, sink) => runner.attachBySecret(secret, sink),
        });
        listener = { ...r, url: `rendezvous://${host}:${r.port}/` };
      } catch (err) {
        // Without openssl `berth run` still works; only `heroku run` cannot attach.
        if (!(err instanceof BerthError) || err.code !== 'rendezvous_certificate') throw err;
        log.warn({ err: errorMessage(err) }, 'heroku run is unavailable: no rendezvous certificate');
      }
    },
    rendezvous: () => listener && { port: listener.port, certPath: listener.certPath },
    async close() {
      await listener?.close();
      await runner.close();
    },
  };
}
