import { createReadStream } from 'node:fs';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { invalid, notFound } from '../domain/errors.js';
import type { SlugRecord } from '../domain/records.js';
import type { GitAccess } from './ports.js';
import type { SlugStore } from './slugs.js';

/**
 * Slug blobs for agents (and `heroku slugs:download`-style clients): the tar.gz by app access, with
 * byte ranges so an interrupted download resumes where it stopped.
 */
export function registerSlugBlobRoutes(api: FastifyInstance, access: Pick<GitAccess, 'resolveApp'>, find: (slugId: string) => Promise<SlugRecord | undefined>, slugs: SlugStore): void {
  const send = async (req: FastifyRequest, reply: FastifyReply, slug: string, appId: string | undefined) => {
    if (!/^[0-9a-f-]{36}$/.test(slug)) throw notFound('slug');
    const record = await find(slug);
    if (!record || (appId !== undefined && record.app_id !== appId)) throw notFound('slug');
    const size = slugs.size(record.checksum);
    const etag = `"${record.checksum}"`;
    reply.header('ETag', etag).header('Accept-Ranges', 'bytes').header('Content-Type', 'application/gzip');
    const range = req.headers.range;
    if (!range) return reply.header('Content-Length', size).send(createReadStream(slugs.blobPath(record.checksum)));
    const m = /^bytes=(\d*)-(\d*)$/.exec(range);
    if (!m || (m[1] === '' && m[2] === '')) throw invalid(`Range must be bytes=START-[END], got "${range}".`);
    // bytes=-N is the last N bytes.
    let start = m[1] === '' ? Math.max(0, size - Number(m[2])) : Number(m[1]);
    const end = m[1] !== '' && m[2] !== '' ? Math.min(Number(m[2]), size - 1) : size - 1;
    if (start >= size || start > end) {
      return reply.code(416).header('Content-Range', `bytes */${size}`).type('application/json').send({ id: 'range_not_satisfiable', message: `The slug has ${size} bytes.` });
    }
    start = Math.max(0, start);
    return reply
      .code(206)
      .header('Content-Range', `bytes ${start}-${end}/${size}`)
      .header('Content-Length', end - start + 1)
      .send(createReadStream(slugs.blobPath(record.checksum), { start, end }));
  };

  api.get('/apps/:app/slugs/:slug/blob', async (req, reply) => {
    const { app, slug } = req.params as { app: string; slug: string };
    return send(req, reply, slug, (await access.resolveApp(req.user, app)).id);
  });
  // Agents on other machines fetch what they run with the cluster token; they hold no user token.
  api.get('/internal/slugs/:slug/blob', { config: { cluster: true } }, async (req, reply) => send(req, reply, (req.params as { slug: string }).slug, undefined));
}
