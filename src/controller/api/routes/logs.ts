import type { FastifyInstance } from 'fastify';
import { notFound } from '../../../domain/errors.js';
import { formatLogLine, type LogLine } from '../../model/logs.js';
import type { Services } from '../../services.js';

const MAX_LINES = 1500;

/** `heroku logs [--tail]`: a log session returns a secret URL; fetching it streams the lines. */
export function registerLogRoutes(api: FastifyInstance, s: Services): void {
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
            lines: { type: ['integer', 'null'], minimum: 0 },
            source: { type: ['string', 'null'] },
            tail: { type: ['boolean', 'null'] },
          },
        },
      },
    },
    async (req, reply) => {
      const access = await s.apps.resolve(req.user, (req.params as { app: string }).app);
      const b = (req.body ?? {}) as { dyno?: string | null; dyno_name?: string | null; process_type?: string | null; lines?: number | null; source?: string | null; tail?: boolean | null };
      const dyno = b.dyno ?? b.dyno_name ?? b.process_type ?? undefined;
      const id = await s.logs.createSession({
        app_id: access.app.id,
        user_id: req.user.id,
        lines: Math.min(b.lines ?? 100, MAX_LINES),
        tail: b.tail ?? false,
        ...(b.source ? { source: b.source } : {}),
        ...(dyno ? { dyno } : {}),
      });
      const now = new Date().toISOString();
      reply.code(201);
      return { id, logplex_url: `${s.settings.apiUrl}/log-sessions/${id}/stream`, created_at: now, updated_at: now };
    },
  );

  api.get('/log-sessions/:id/stream', { config: { public: true } }, async (req, reply) => {
    const session = await s.logs.session((req.params as { id: string }).id);
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
    const matches = (l: LogLine): boolean =>
      (!session.source || l.source === session.source) && (!session.dyno || l.dyno === session.dyno || l.dyno.startsWith(`${session.dyno}.`));
    const sse = (req.headers.accept ?? '').includes('text/event-stream');
    const frame = (l: LogLine): string => (sse ? `data: ${formatLogLine(l)}\n\n` : `${formatLogLine(l)}\n`);
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'Content-Type': sse ? 'text/event-stream' : 'text/plain; charset=utf-8', 'Cache-Control': 'no-cache', 'Request-Id': req.id });
    // A short reconnect delay: EventSource clients otherwise linger 3 s after a non-tail stream ends.
    if (sse) res.write('retry: 10\n\n');
    for (const l of s.logs.recent(session.app_id, session.lines, matches)) res.write(frame(l));
    if (!session.tail) {
      res.end();
      return;
    }
    const unsubscribe = s.logs.subscribe(session.app_id, (l) => {
      if (matches(l)) res.write(frame(l));
    });
    // Comments keep idle proxies from closing a quiet tail; the same beat ends a tail whose maker
    // has lost access to the app (removed collaborator, deleted app).
    const keepAlive = setInterval(() => {
      void stillAllowed().then((ok) => {
        if (ok) res.write(sse ? ': keep-alive\n\n' : '');
        else res.end();
      });
    }, 10_000);
    req.raw.on('close', () => {
      clearInterval(keepAlive);
      unsubscribe();
    });
  });
}
