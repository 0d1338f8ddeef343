import type { FastifyInstance } from 'fastify';
import { notFound } from '../../../domain/errors.js';
import { get } from '../../../domain/codec.js';
import { keys } from '../../../domain/keys.js';
import { codecs } from '../../../domain/records.js';
import type { Services } from '../../services/index.js';

/** A slug's record (`slugs:info`), with where its blob is (served by the builder, `slug-routes.ts`). */
export function registerSlugRoutes(api: FastifyInstance, s: Services): void {
  api.get('/apps/:app/slugs/:slug', async (req) => {
    const { app, slug } = req.params as { app: string; slug: string };
    const access = await s.apps.resolve(req.user, app);
    if (!/^[0-9a-f-]{36}$/.test(slug)) throw notFound('slug');
    const rec = await get(s.store, keys.slug(slug), codecs.slug);
    if (!rec || rec.value.app_id !== access.app.id) throw notFound('slug');
    return { ...rec.value, blob: { method: 'get', url: `${s.settings.apiUrl}/apps/${access.app.name}/slugs/${slug}/blob` } };
  });
}
