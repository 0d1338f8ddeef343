import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Services } from '../../services.js';

/**
 * Heroku's restart and stop calls, as the heroku CLI makes them (`ps:restart`, `ps:stop`): all
 * dynos, one process type, or one dyno. One-off dynos (`run.N`) have their own routes (a regex
 * route wins over this plain parameter in Fastify's router).
 */
export function registerDynoActionRoutes(api: FastifyInstance, s: Services): void {
  const restart = async (req: FastifyRequest, target: string | undefined, verb: 'Restart' | 'Stop') => {
    const access = await s.apps.resolve(req.user, (req.params as { app: string }).app);
    const bumped = await s.formations.restart(req.user, access, target);
    s.logs.append(access.app.id, { source: 'app', dyno: 'api', message: `${verb} ${target ?? 'all processes'} by user ${req.user.email}` });
    return { restarted: bumped };
  };
  const param = (req: FastifyRequest, name: 'dyno' | 'type'): string => (req.params as Record<string, string>)[name] ?? '';

  api.delete('/apps/:app/dynos', async (req, reply) => reply.code(202).send(await restart(req, undefined, 'Restart')));
  api.delete('/apps/:app/dynos/:dyno', async (req, reply) => reply.code(202).send(await restart(req, param(req, 'dyno'), 'Restart')));
  api.delete('/apps/:app/formations/:type', async (req, reply) => reply.code(202).send(await restart(req, param(req, 'type'), 'Restart')));
  api.post('/apps/:app/dynos/:dyno/actions/stop', async (req, reply) => reply.code(202).send(await restart(req, param(req, 'dyno'), 'Stop')));
  api.post('/apps/:app/formations/:type/actions/stop', async (req, reply) => reply.code(202).send(await restart(req, param(req, 'type'), 'Stop')));
}
