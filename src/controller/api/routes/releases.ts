import type { FastifyInstance } from 'fastify';
import { invalid } from '../../../domain/errors.js';
import type { Services } from '../../services/index.js';
import { sendPage } from '../range.js';
import * as shape from '../serialize.js';

const appParams = { type: 'object', properties: { app: { type: 'string' } }, required: ['app'] } as const;

/** Config vars and releases: `config*`, `releases`, `releases:info`, `releases:rollback`. */
export function registerReleaseRoutes(api: FastifyInstance, s: Services): void {
  api.get('/apps/:app/config-vars', { schema: { params: appParams } }, async (req) => {
    const access = await s.apps.resolve(req.user, (req.params as { app: string }).app);
    return s.releases.config(access);
  });

  api.patch(
    '/apps/:app/config-vars',
    { schema: { params: appParams, body: { type: 'object', additionalProperties: { type: ['string', 'null'] } } } },
    async (req) => {
      const access = await s.apps.resolve(req.user, (req.params as { app: string }).app);
      const { config, release } = await s.releases.setConfig(req.user, access, req.body as Record<string, string | null>);
      s.logs.append(access.app.id, { source: 'app', dyno: 'api', message: `${release.description} by user ${req.user.email}` });
      s.logs.append(access.app.id, { source: 'app', dyno: 'api', message: `Release v${release.version} created by user ${req.user.email}` });
      return config;
    },
  );

  api.get('/apps/:app/releases', { schema: { params: appParams } }, async (req, reply) => {
    const access = await s.apps.resolve(req.user, (req.params as { app: string }).app);
    const list = (await s.releases.list(access.app.id)).map((r) => shape.release(access.app, r));
    return sendPage(req, reply, list, { version: (r) => Number(r.version), id: (r) => String(r.id) }, 'version');
  });

  api.get('/apps/:app/releases/:release', async (req) => {
    const { app, release } = req.params as { app: string; release: string };
    const access = await s.apps.resolve(req.user, app);
    return shape.release(access.app, await s.releases.get(access, release));
  });

  api.get('/apps/:app/releases/:release/config-vars', async (req) => {
    const { app, release } = req.params as { app: string; release: string };
    const access = await s.apps.resolve(req.user, app);
    return (await s.releases.get(access, release)).config;
  });

  api.post(
    '/apps/:app/releases',
    {
      schema: {
        params: appParams,
        body: {
          type: 'object',
          properties: { release: { type: ['string', 'integer'] }, slug: { type: 'string' }, description: { type: 'string' } },
        },
      },
    },
    async (req, reply) => {
      const access = await s.apps.resolve(req.user, (req.params as { app: string }).app);
      const body = req.body as { release?: string | number; slug?: string };
      if (body.release === undefined) {
        throw invalid(body.slug ? 'Releasing a slug directly is done by a build (git push); pass "release" to roll back.' : 'Missing body.release: the release id or version to roll back to.');
      }
      const release = await s.releases.rollback(req.user, access, body.release);
      s.logs.append(access.app.id, { source: 'app', dyno: 'api', message: `${release.description} by user ${req.user.email}` });
      reply.code(201);
      const current = release.status === 'succeeded' ? release.version : access.app.current_version;
      return shape.release({ ...access.app, release_version: release.version, current_version: current }, release);
    },
  );
}
