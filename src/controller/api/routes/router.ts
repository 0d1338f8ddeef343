import type { FastifyInstance } from 'fastify';
import { forbidden } from '../../../domain/errors.js';
import type { Services } from '../../services/index.js';

const changes = { type: 'object', additionalProperties: { type: ['string', 'boolean', 'null'] } } as const;

/**
 * Berth's own router endpoints (not Heroku's): platform-wide nginx settings for admins
 * (`berth router`, `berth router:set`), and each app's routing options (`-a app`).
 */
export function registerRouterRoutes(api: FastifyInstance, s: Services): void {
  api.get('/berth/router', async (req) => {
    if (!req.user.admin) throw forbidden('Router settings are for admins.');
    return s.routerSettings.list();
  });

  api.patch('/berth/router', { schema: { body: { type: 'object', additionalProperties: { type: ['string', 'null'] } } } }, async (req) => {
    if (!req.user.admin) throw forbidden('Router settings are for admins.');
    return s.routerSettings.set(req.body as Record<string, string | null>);
  });

  api.get('/apps/:app/router', async (req) => {
    const access = await s.apps.resolve(req.user, (req.params as { app: string }).app);
    return s.routerSettings.app(access);
  });

  api.patch('/apps/:app/router', { schema: { body: changes } }, async (req) => {
    const access = await s.apps.resolve(req.user, (req.params as { app: string }).app);
    return s.routerSettings.setApp(access, req.body as Record<string, unknown>);
  });
}
