/**
 * One-off dynos (`berth run`, `heroku run`, `POST /apps/:app/dynos`), run by the controller
 * process itself in the runtime `berth up` hands it. `createOneOffDynos` is wired like the
 * builder: its `routes` join the controller's server, `start` follows once the server is up.
 */
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Runtime } from '../../agent/runtime/types.js';
import { BerthError, errorMessage } from '../../domain/errors.js';
import type { Services } from '../services.js';
import { startRendezvous, type Rendezvous } from './rendezvous.js';
import { registerOneOffRoutes, type RendezvousInfo } from './routes.js';
import { OneOffRunner } from './runner.js';

export { OneOffRunner, type Sink } from './runner.js';

export interface OneOffOptions {
  dataDir: string;
  /** This node's id (the machine id). */
  node: string;
  /** Its own instance: a ProcessRuntime wipes its work dir when made, so never the agent's. */
  runtime: Runtime;
  slugPath: (slugId: string) => Promise<string>;
  /** Where the TLS listener for `heroku run` listens (port 0: any free one); none if absent. */
  rendezvous?: { host: string; port: number };
}

export interface OneOffDynos {
  routes(api: FastifyInstance, services: Services): void;
  start(): Promise<void>;
  /** The rendezvous listener's port and certificate, once started. */
  rendezvous(): { port: number; certPath: string } | undefined;
  /** Stops every one-off dyno of this node. */
  close(): Promise<void>;
}

export function createOneOffDynos(o: OneOffOptions): OneOffDynos {
  let parts: { runner: OneOffRunner; services: Services } | undefined;
  let listener: (Rendezvous & { url: string }) | undefined;
  const info = (): RendezvousInfo | undefined => listener && { url: listener.url, certPath: listener.certPath };
  return {
    routes(api, services) {
      const runner = new OneOffRunner({
        store: services.store,
        log: services.log.child({ component: 'run' }),
        runtime: o.runtime,
        slugPath: o.slugPath,
        appLog: (appId, line) => services.logs.append(appId, line),
        node: o.node,
      });
      parts = { runner, services };
      registerOneOffRoutes(api, services, runner, info);
    },
    async start() {
      if (!parts) throw new Error('the one-off dyno routes must be registered first');
      await parts.runner.start();
      if (!o.rendezvous) return;
      const log = parts.services.log.child({ component: 'rendezvous' });
      // The name clients reach the API by is the name they will reach the rendezvous port by.
      const host = new URL(parts.services.settings.apiUrl).hostname;
      const runner = parts.runner;
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
      await parts?.runner.close();
    },
  };
}
