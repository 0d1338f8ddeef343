import type { FastifyInstance } from 'fastify';
import type { Services } from '../../services/index.js';
import { HealthCheckSettings } from '../../services/healthchecks.js';

const check = {
  type: 'object',
  properties: {
    type: { type: 'string' },
    path: { type: 'string' },
    attempts: { type: 'integer' },
    timeout: { type: 'integer' },
    wait: { type: 'integer' },
    initialDelay: { type: 'integer' },
    content: { type: 'string' },
    name: { type: 'string' },
  },
  additionalProperties: false,
} as const;

/**
 * Berth's own endpoints for HTTP health checks (`berth healthchecks`, `healthchecks:set`,
 * `healthchecks:unset`): the effective checks per process type, and per-type overrides of app.json's.
 */
export function registerHealthCheckRoutes(api: FastifyInstance, s: Services): void {
  const settings = new HealthCheckSettings(s.store, s.apps);
  const params = (req: { params: unknown }): { app: string; type: string; check?: string } => req.params as { app: string; type: string; check?: string };

  api.get('/apps/:app/healthchecks', async (req) => settings.list(await s.apps.resolve(req.user, params(req).app)));

  api.put('/apps/:app/healthchecks/:type', { schema: { body: check } }, async (req) => {
    const { app, type } = params(req);
    return settings.set(req.user, await s.apps.resolve(req.user, app), type, req.body);
  });

  api.delete('/apps/:app/healthchecks/:type', async (req) => {
    const { app, type } = params(req);
    return settings.unset(req.user, await s.apps.resolve(req.user, app), type);
  });

  api.delete('/apps/:app/healthchecks/:type/:check', async (req) => {
    const { app, type, check: checkType } = params(req);
    return settings.unset(req.user, await s.apps.resolve(req.user, app), type, checkType);
  });
}
