import type { FastifyInstance } from 'fastify';
import { notFound } from '../../../domain/errors.js';
import type { DrainRecord } from '../../services/drains.js';
import { LOGPLEX_DYNO } from '../../../agent/log-limiter.js';
import { LogStreams } from '../../logs/streams.js';
import { TailWriter } from '../../logs/tail.js';
import { formatLogLine, matchesFilter, type LogFilter } from '../../services/logs.js';
import type { AppRecord } from '../../services/types.js';
import type { Services } from '../../services/index.js';
import { sendPage } from '../range.js';
import { appRef } from '../serialize.js';

const MAX_LINES = 1500;

/** Heroku's log-drain object; drains from add-ons do not exist here, so `addon` is always null. */
function drainShape(app: AppRecord, d: DrainRecord): Record<string, unknown> {
  return { id: d.id, url: d.url, token: d.token, created_at: d.created_at, updated_at: d.updated_at, addon: null, app: appRef(app) };
}

/**
 * `heroku logs [--tail]`: a log session returns a secret URL; fetching it streams the lines.
 * `heroku drains*`: an app's syslog drains.
 */
export function registerLogRoutes(api: FastifyInstance, s: Services): void {
  // The stream route is public (its URL is the secret): what one URL or one app can hold open is bounded.
  const streams = new LogStreams();
  api.post(
    '/apps/:app/log-sessions',
    {
      schema: {
        body: {
          type: ['object', 'null'],
          properties: {
            dyno: { type: ['string', 'null'] },
            dyno_name: { type: ['string', 'null'] },
            process_type: { type: ['string', 'null'] },
            type: { type: ['string', 'null'] },
            lines: { type: ['integer', 'null'], minimum: 0 },
            source: { type: ['string', 'null'] },
            tail: { type: ['boolean', 'null'] },
          },
        },
      },
    },
    async (req, reply) => {
      const access = await s.apps.resolve(req.user, (req.params as { app: string }).app);
      const b = (req.body ?? {}) as { dyno?: string | null; dyno_name?: string | null; process_type?: string | null; type?: string | null; lines?: number | null; source?: string | null; tail?: boolean | null };
      // The heroku CLI sends `-d web.1` and `-p web` both as `dyno`; a type matches all its dynos.
      const dyno = b.dyno || b.dyno_name || b.process_type || b.type || undefined;
      // `-s heroku` is how Heroku users ask for platform lines; Berth's platform source is `berth`.
      const source = b.source === 'heroku' ? 'berth' : b.source || undefined;
      const id = await s.logs.createSession({
        app_id: access.app.id,
        user_id: req.user.id,
        lines: Math.min(b.lines ?? 100, MAX_LINES),
        tail: b.tail ?? false,
        ...(source ? { source } : {}),
        ...(dyno ? { dyno } : {}),
      });
      const now = new Date().toISOString();
      reply.code(201);
      return { id, logplex_url: `${s.settings.apiUrl}/log-sessions/${id}/stream`, created_at: now, updated_at: now };
    },
  );

  api.get('/log-sessions/:id/stream', { config: { public: true } }, async (req, reply) => {
    const id = (req.params as { id: string }).id;
    const session = await s.logs.session(id);
    if (!session) throw notFound('log session');
    // The URL is a bearer secret, but it carries no more right than its maker still has.
    const stillAllowed = async (): Promise<boolean> => {
      try {
        await s.apps.resolve(await s.users.get(session.user_id), session.app_id);
        return true;
      } catch {
        return false;
      }
    };
    if (!(await stillAllowed())) throw notFound('log session');
    // A server that started since it last served this app first merges the lines others took meanwhile.
    await s.logs.catchUp(session.app_id);
    const filter: LogFilter = { ...(session.source ? { source: session.source } : {}), ...(session.dyno ? { dyno: session.dyno } : {}) };
    const sse = (req.headers.accept ?? '').includes('text/event-stream');
    const frame = (l: Parameters<typeof formatLogLine>[0]): string => (sse ? `data: ${formatLogLine(l)}\n\n` : `${formatLogLine(l)}\n`);
    const res = reply.raw;
    // A client that left during the awaits above has fired its 'close' already, which no listener
    // added now would hear: it would hold its stream slot (and a subscription) for good.
    if (res.destroyed || req.raw.destroyed || req.raw.socket?.destroyed === true) {
      reply.hijack();
      res.destroy();
      return;
    }
    // No await from here on: the slot is this request's until its response closes.
    const release = streams.claim(id, session.app_id, () => res.destroy());
    res.once('close', release);
    reply.hijack();
    res.writeHead(200, { 'Content-Type': sse ? 'text/event-stream' : 'text/plain; charset=utf-8', 'Cache-Control': 'no-cache', 'Request-Id': req.id });
    // A short reconnect delay: EventSource clients otherwise linger 3 s after a non-tail stream ends.
    if (sse) res.write('retry: 10\n\n');
    // A tail with nothing to show yet still answers now: a client waits for the headers.
    else res.flushHeaders();
    // A client slower than the app's log holds a bounded amount here; past it, lines are dropped
    // and an L11 line says so once it has caught up.
    const out = new TailWriter(res, { notice: (message) => frame({ time: new Date().toISOString(), source: 'berth', dyno: LOGPLEX_DYNO, message }) });
    // The initial batch and the subscription happen in one synchronous step: a tail gets every
    // later line exactly once, and none of the batch again.
    out.start(s.logs.recent(session.app_id, session.lines, filter).map(frame));
    if (!session.tail) {
      out.end();
      return;
    }
    const unsubscribe = s.logs.subscribe(session.app_id, (l) => {
      if (matchesFilter(l, filter)) out.push(frame(l));
    });
    // Comments keep idle proxies from closing a quiet tail; the same beat ends a tail whose maker
    // has lost access to the app (removed collaborator, deleted app).
    const keepAlive = setInterval(() => {
      void stillAllowed().then((ok) => {
        if (!ok) res.end();
        else if (sse) out.push(': keep-alive\n\n');
      });
    }, 10_000);
    req.raw.on('close', () => {
      clearInterval(keepAlive);
      unsubscribe();
    });
  });

  api.get('/apps/:app/log-drains', async (req, reply) => {
    const access = await s.apps.resolve(req.user, (req.params as { app: string }).app);
    const list = (await s.drains.list(access)).map((d) => drainShape(access.app, d));
    return sendPage(req, reply, list, { id: (d) => String(d.id), url: (d) => String(d.url) }, 'url');
  });

  api.get('/apps/:app/log-drains/:drain', async (req) => {
    const { app, drain } = req.params as { app: string; drain: string };
    const access = await s.apps.resolve(req.user, app);
    return drainShape(access.app, await s.drains.get(access, drain));
  });

  api.post('/apps/:app/log-drains', { schema: { body: { type: 'object', properties: { url: { type: 'string', minLength: 1, maxLength: 2048 } }, required: ['url'] } } }, async (req, reply) => {
    const access = await s.apps.resolve(req.user, (req.params as { app: string }).app);
    const d = await s.drains.add(access, (req.body as { url: string }).url, req.user);
    await s.drainForwarder.changed(access.app.id);
    reply.code(201);
    return drainShape(access.app, d);
  });

  api.delete('/apps/:app/log-drains/:drain', async (req) => {
    const { app, drain } = req.params as { app: string; drain: string };
    const access = await s.apps.resolve(req.user, app);
    const d = await s.drains.remove(access, drain);
    await s.drainForwarder.changed(access.app.id);
    return drainShape(access.app, d);
  });
}
