import type { FastifyInstance } from 'fastify';
import type { FormationUpdate } from '../../services/formation.js';
import type { Services } from '../../services/index.js';
import { sendPage } from '../range.js';
import * as shape from '../serialize.js';

const quantity = { anyOf: [{ type: 'integer' }, { type: 'string', pattern: '^[+-]?\\d+$' }] };
const update = { type: 'object', properties: { type: { type: 'string', pattern: '^[A-Za-z0-9_-]+$' }, quantity, size: { type: 'string' } }, required: ['type'] };

/** Formation: `ps:scale`, and the commands `ps` shows per process type. */
export function registerFormationRoutes(api: FastifyInstance, s: Services): void {
  const commands = async (access: Parameters<Services['releases']['current']>[0]): Promise<Record<string, string>> =>
    (await s.releases.current(access)).process_types;

  api.get('/apps/:app/formation', async (req, reply) => {
    const access = await s.apps.resolve(req.user, (req.params as { app: string }).app);
    const cmd = await commands(access);
    const list = (await s.formations.list(access)).map((f) => shape.formation(access.app, f, cmd[f.type]));
    return sendPage(req, reply, list, { type: (f) => String(f.type), id: (f) => String(f.id) }, 'type');
  });

  api.get('/apps/:app/formation/:type', async (req) => {
    const { app, type } = req.params as { app: string; type: string };
    const access = await s.apps.resolve(req.user, app);
    return shape.formation(access.app, await s.formations.get(access, type), (await commands(access))[type]);
  });

  const apply = async (req: { user: Parameters<Services['formations']['update']>[0] }, appName: string, updates: FormationUpdate[]): Promise<Record<string, unknown>[]> => {
    const access = await s.apps.resolve(req.user, appName);
    const changed = await s.formations.update(req.user, access, updates);
    const cmd = await commands(access);
    const summary = changed.map((f) => `${f.type}=${f.quantity}:${f.size}`).join(' ');
    s.logs.append(access.app.id, { source: 'app', dyno: 'api', message: `Scaled to ${summary} by user ${req.user.email}` });
    return changed.map((f) => shape.formation(access.app, f, cmd[f.type]));
  };

  api.patch(
    '/apps/:app/formation',
    { schema: { body: { type: 'object', properties: { updates: { type: 'array', items: update, minItems: 1, maxItems: 50 } }, required: ['updates'] } } },
    async (req) => apply(req, (req.params as { app: string }).app, (req.body as { updates: FormationUpdate[] }).updates),
  );

  api.patch(
    '/apps/:app/formation/:type',
    { schema: { body: { type: 'object', properties: { quantity, size: { type: 'string' } } } } },
    async (req) => {
      const { app, type } = req.params as { app: string; type: string };
      const body = req.body as Omit<FormationUpdate, 'type'>;
      const [one] = await apply(req, app, [{ ...body, type }]);
      return one;
    },
  );
}
