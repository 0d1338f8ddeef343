import type { FastifyInstance } from 'fastify';
import { notFound } from '../../../domain/errors.js';
import { keys } from '../../../domain/keys.js';
import { getJson, listJson } from '../../model/json-store.js';
import type { FormationUpdate } from '../../model/formation.js';
import type { Services } from '../../services.js';
import { sendPage } from '../range.js';
import * as shape from '../serialize.js';

const quantity = { anyOf: [{ type: 'integer' }, { type: 'string', pattern: '^[+-]?\\d+$' }] };
const update = { type: 'object', properties: { type: { type: 'string', pattern: '^[A-Za-z0-9_-]+$' }, quantity, size: { type: 'string' } }, required: ['type'] };

/** What agents report for a dyno at /berth/status/<unit> (written by the scheduler issue's agents). */
interface DynoStatus {
  app_id: string;
  name: string;
  type: string;
  state: string;
  command?: string;
  size?: string;
  release?: { id: string; version: number };
  updated_at?: string;
  created_at?: string;
  machine?: string;
  restarts?: number;
  reason?: string | null;
}

/** Formation (`ps:scale`), dynos (`ps`), builds and slugs. */
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

  api.get('/apps/:app/dynos', async (req, reply) => {
    const access = await s.apps.resolve(req.user, (req.params as { app: string }).app);
    // Unit names start with the app's name and a dot (names cannot hold one): read only its own.
    const formationDynos = await listJson<DynoStatus>(s.store, `${keys.statuses()}${access.app.name}.`);
    // One-off dynos (`berth run`) are recorded by the node running them, with the same fields.
    const all = [...formationDynos, ...(await listJson<DynoStatus>(s.store, keys.runs(access.app.id)))];
    const dynos = all
      .filter((d) => d.app_id === access.app.id)
      .map((d) => ({
        id: `${access.app.id}:${d.name}`,
        name: d.name,
        type: d.type,
        state: d.state,
        command: d.command ?? '',
        size: d.size ?? 'standard-1x',
        attach_url: null,
        app: shape.appRef(access.app),
        release: d.release ?? null,
        // Berth's own: where it runs and why it is not up (Heroku clients ignore unknown fields).
        machine: d.machine ?? null,
        restarts: d.restarts ?? 0,
        reason: d.reason ?? null,
        created_at: d.created_at ?? d.updated_at ?? access.app.updated_at,
        updated_at: d.updated_at ?? access.app.updated_at,
      }));
    return sendPage(req, reply, dynos, { name: (d) => d.name, id: (d) => d.id }, 'name');
  });

  api.get('/apps/:app/builds', async (req, reply) => {
    const access = await s.apps.resolve(req.user, (req.params as { app: string }).app);
    const builds = await listJson<Record<string, unknown>>(s.store, keys.builds(access.app.id));
    return sendPage(req, reply, builds, { id: (b) => String(b.id), created_at: (b) => String(b.created_at) }, 'created_at');
  });

  api.get('/apps/:app/builds/:build', async (req) => {
    const { app, build } = req.params as { app: string; build: string };
    const access = await s.apps.resolve(req.user, app);
    if (!/^[0-9a-f-]{36}$/.test(build)) throw notFound('build');
    const b = await getJson<Record<string, unknown>>(s.store, keys.build(access.app.id, build));
    if (!b) throw notFound('build');
    return b.value;
  });

  api.get('/apps/:app/slugs/:slug', async (req) => {
    const { app, slug } = req.params as { app: string; slug: string };
    const access = await s.apps.resolve(req.user, app);
    if (!/^[0-9a-f-]{36}$/.test(slug)) throw notFound('slug');
    const rec = await getJson<Record<string, unknown> & { app_id?: string }>(s.store, keys.slug(slug));
    if (!rec || rec.value.app_id !== access.app.id) throw notFound('slug');
    return { ...rec.value, blob: { method: 'get', url: `${s.settings.apiUrl}/apps/${access.app.name}/slugs/${slug}/blob` } };
  });
}
