import type { FastifyInstance } from 'fastify';
import { conflict, notFound } from '../domain/errors.js';
import { keys } from '../domain/keys.js';
import type { Services } from '../controller/services.js';
import type { BuildRecord } from './builder.js';
import type { PushHandler } from './push.js';

/**
 * A build's output as it happens (`output_stream_url`, `berth builds:output`) and cancelling a
 * running build (`berth builds:cancel`).
 */
export function registerBuildRoutes(api: FastifyInstance, services: Services, pushes: PushHandler): void {
  const find = async (user: Parameters<Services['apps']['resolve']>[0], app: string, id: string): Promise<{ appId: string; build: BuildRecord }> => {
    const access = await services.apps.resolve(user, app);
    if (!/^[0-9a-f-]{36}$/.test(id)) throw notFound('build');
    const kv = await services.store.get(keys.build(access.app.id, id));
    if (!kv) throw notFound('build');
    return { appId: access.app.id, build: JSON.parse(kv.value) as BuildRecord };
  };

  api.get('/apps/:app/builds/:build/output', async (req, reply) => {
    const { app, build: id } = req.params as { app: string; build: string };
    const { build } = await find(req.user, app, id);
    const live = pushes.running.get(id);
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'Request-Id': req.id });
    if (!live) {
      res.end(build.output);
      return;
    }
    res.write(live.output);
    const follow = (text: string): void => void res.write(text);
    live.listeners.add(follow);
    req.raw.on('close', () => live.listeners.delete(follow));
    await live.finished;
    live.listeners.delete(follow);
    res.end();
  });

  api.post('/apps/:app/builds/:build/cancel', async (req, reply) => {
    const { app, build: id } = req.params as { app: string; build: string };
    const { build } = await find(req.user, app, id);
    const live = pushes.running.get(id);
    if (!live) throw conflict(`Build ${id} is ${build.status}, not running.`);
    live.abort.abort();
    reply.code(202);
    return { ...build, status: 'pending' };
  });
}
