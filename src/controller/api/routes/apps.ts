import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { notFound } from '../../../domain/errors.js';
import type { Services } from '../../services/index.js';
import { sendPage } from '../range.js';
import * as shape from '../serialize.js';

const appParams = { type: 'object', properties: { app: { type: 'string', minLength: 1, maxLength: 100 } }, required: ['app'] } as const;

/** Account and apps: `heroku apps`, `apps:create`, `apps:info`, `apps:rename`, `apps:destroy`. */
export function registerAppRoutes(api: FastifyInstance, s: Services): void {
  const render = async (apps: Parameters<typeof shape.app>[0][]): Promise<Record<string, unknown>[]> => {
    const owners = await s.users.getMany([...new Set(apps.map((a) => a.owner_id))]);
    return apps.map((a) => shape.app(a, owners.get(a.owner_id), s.settings));
  };

  api.get('/account', async (req) => shape.account(req.user));
  api.get('/users/:user', async (req) => {
    const { user } = req.params as { user: string };
    if (user !== '~' && user !== req.user.id && user !== req.user.email) throw notFound('user');
    return shape.account(req.user);
  });

  const listApps = async (req: FastifyRequest, reply: FastifyReply): Promise<unknown> => {
    const apps = await render(await s.apps.list(req.user));
    return sendPage(req, reply, apps, { id: (a) => String(a.id), name: (a) => String(a.name) }, 'id');
  };
  api.get('/apps', listApps);
  api.get('/users/:user/apps', async (req, reply) => {
    const { user } = req.params as { user: string };
    if (user !== '~' && user !== req.user.id && user !== req.user.email) throw notFound('user');
    // Heroku lists only the user's own and collaborated apps here, even for admins.
    const mine = await s.apps.list({ ...req.user, admin: false });
    return sendPage(req, reply, await render(mine), { id: (a) => String(a.id), name: (a) => String(a.name) }, 'id');
  });

  const createBody = {
    type: ['object', 'null'],
    properties: {
      name: { type: ['string', 'null'], maxLength: 100 },
      region: { type: ['string', 'null'] },
      stack: { type: ['string', 'null'] },
      team: { type: ['string', 'null'] },
      feature_flags: { type: 'array' },
      space: { type: ['string', 'null'] },
      personal: { type: ['boolean', 'null'] },
      kernel: { type: ['string', 'null'] },
      generation: { type: ['string', 'null'] },
    },
  } as const;
  const create = async (req: FastifyRequest, reply: FastifyReply): Promise<unknown> => {
    const body = (req.body ?? {}) as { name?: string | null };
    const app = await s.apps.create(req.user, body.name ?? undefined);
    s.logs.append(app.id, { source: 'app', dyno: 'api', message: `Initial release by user ${req.user.email}` });
    reply.code(201);
    return (await render([app]))[0];
  };
  api.post('/apps', { schema: { body: createBody } }, create);
  api.post('/teams/apps', { schema: { body: createBody } }, create);

  api.get('/apps/:app', { schema: { params: appParams } }, async (req) => {
    const { app } = await s.apps.resolve(req.user, (req.params as { app: string }).app);
    return (await render([app]))[0];
  });

  // Berth has no add-ons; clients (apps:info) require the list to exist.
  api.get('/apps/:app/addons', { schema: { params: appParams } }, async (req) => {
    await s.apps.resolve(req.user, (req.params as { app: string }).app);
    return [];
  });

  api.patch(
    '/apps/:app',
    {
      schema: {
        params: appParams,
        body: { type: 'object', properties: { name: { type: 'string', maxLength: 100 }, maintenance: { type: 'boolean' }, build_stack: { type: 'string', enum: ['heroku-22'] } } },
      },
    },
    async (req) => {
      const access = await s.apps.resolve(req.user, (req.params as { app: string }).app);
      const body = req.body as { name?: string; maintenance?: boolean };
      let app = access.app;
      if (body.maintenance !== undefined) app = await s.apps.setMaintenance(access, body.maintenance);
      if (body.name !== undefined) app = await s.apps.rename(await s.apps.resolve(req.user, app.id), body.name);
      return (await render([app]))[0];
    },
  );

  api.delete('/apps/:app', { schema: { params: appParams } }, async (req) => {
    const access = await s.apps.resolve(req.user, (req.params as { app: string }).app);
    await s.apps.destroy(access);
    s.logs.forget(access.app.id);
    return (await render([access.app]))[0];
  });
}
