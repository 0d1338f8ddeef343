import type { FastifyInstance, FastifyRequest } from 'fastify';
import { conflict, notFound } from '../../../domain/errors.js';
import { get, list } from '../../../domain/codec.js';
import { keys } from '../../../domain/keys.js';
import { codecs, type BuildRecord } from '../../../domain/records.js';
import type { Services } from '../../services/index.js';
import { sendPage } from '../range.js';
import { boundedWriter, StreamCap } from '../../../builder/output.js';

/**
 * Builds (`builds`, `builds:info`), a build's output as it happens (`output_stream_url`,
 * `builds:output`) and cancelling a running build (`builds:cancel`). Builds are made by pushes
 * (`Deploys`); a running one is followed on the node building it.
 */
export function registerBuildRoutes(api: FastifyInstance, s: Services): void {
  const find = async (req: FastifyRequest): Promise<BuildRecord> => {
    const { app, build } = req.params as { app: string; build: string };
    const access = await s.apps.resolve(req.user, app);
    if (!/^[0-9a-f-]{36}$/.test(build)) throw notFound('build');
    const b = await get(s.store, keys.build(access.app.id, build), codecs.build);
    if (!b) throw notFound('build');
    return b.value;
  };

  api.get('/apps/:app/builds', async (req, reply) => {
    const access = await s.apps.resolve(req.user, (req.params as { app: string }).app);
    const builds = (await list(s.store, keys.builds(access.app.id), codecs.build)).map((e) => e.value);
    return sendPage(req, reply, builds, { id: (b) => String(b.id), created_at: (b) => String(b.created_at) }, 'created_at');
  });

  api.get('/apps/:app/builds/:build', async (req) => find(req));

  api.get('/apps/:app/builds/:build/output', async (req, reply) => {
    const build = await find(req);
    const live = s.deploys.running(build.id);
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'Request-Id': req.id });
    if (!live) {
      res.end(build.output);
      return;
    }
    // A follower that reads slowly is skipped ahead rather than queued for: the build's output is
    // the tenant's, and nothing it prints may pile up in this process.
    const stream = new StreamCap(boundedWriter(res).write);
    stream.write(live.output.text());
    const follow = (text: string): void => stream.write(text);
    live.listeners.add(follow);
    req.raw.on('close', () => live.listeners.delete(follow));
    await live.finished;
    live.listeners.delete(follow);
    stream.end();
    res.end();
  });

  api.post('/apps/:app/builds/:build/cancel', async (req, reply) => {
    const build = await find(req);
    const live = s.deploys.running(build.id);
    if (!live) throw conflict(`Build ${build.id} is ${build.status}, not running.`);
    live.abort.abort();
    reply.code(202);
    return { ...build, status: 'pending' };
  });
}
