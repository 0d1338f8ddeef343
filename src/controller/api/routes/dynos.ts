import type { FastifyInstance, FastifyRequest } from 'fastify';
import { list } from '../../../domain/codec.js';
import { keys } from '../../../domain/keys.js';
import { codecs } from '../../../domain/records.js';
import type { Services } from '../../services/index.js';
import { sendPage } from '../range.js';
import * as shape from '../serialize.js';

/** What a formation dyno's `StatusRecord` and a one-off dyno's `RunRecord` have in common. */
interface DynoStatus {
  app_id: string;
  name: string;
  type: string;
  state: string;
  command?: string;
  size?: string;
  release?: { id?: string; version: number };
  updated_at?: string;
  created_at?: string;
  machine?: string | null;
  /** Its overlay address (formation dynos). */
  address?: string | null;
  restarts?: number;
  reason?: string | null;
}

/**
 * Dynos: the list (`ps`), and Heroku's restart and stop calls as the heroku CLI makes them
 * (`ps:restart`, `ps:stop`): all dynos, one process type, or one dyno. One-off dynos (`run.N`) have
 * their own routes (a regex route wins over this plain parameter in Fastify's router).
 */
export function registerDynoRoutes(api: FastifyInstance, s: Services): void {
  api.get('/apps/:app/dynos', async (req, reply) => {
    const access = await s.apps.resolve(req.user, (req.params as { app: string }).app);
    // Unit names start with the app's name and a dot (names cannot hold one): read only its own.
    const formationDynos = await list(s.store, keys.appStatuses(access.app.name), codecs.status);
    // One-off dynos (`berth run`) are recorded by the node running them, with the same fields.
    const all: DynoStatus[] = [...formationDynos, ...(await list(s.store, keys.runs(access.app.id), codecs.run))].map((e) => e.value);
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
        address: d.address ?? null,
        restarts: d.restarts ?? 0,
        reason: d.reason ?? null,
        created_at: d.created_at ?? d.updated_at ?? access.app.updated_at,
        updated_at: d.updated_at ?? access.app.updated_at,
      }));
    return sendPage(req, reply, dynos, { name: (d) => d.name, id: (d) => d.id }, 'name');
  });


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
