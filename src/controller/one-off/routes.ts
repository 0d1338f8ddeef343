import { readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { notFound } from '../../domain/errors.js';
import { appRef } from '../api/serialize.js';
import { getRun, requestStop, type RunRecord } from '../services/runs.js';
import type { AppRecord } from '../services/types.js';
import type { Services } from '../services/index.js';
import { DEFAULT_TTL, type OneOffRunner, type Sink } from './runner.js';

/**
 * Only run.N names: formation dynos' own routes (restart, stop) can sit beside these, since the
 * router prefers a matching regex parameter to a plain one.
 */
const RUN = ':dyno(^run\\.\\d{1,9}$)';
// An attached client that reads slower than its dyno writes is cut off (and its dyno stopped)
// rather than buffered without bound.
const MAX_BUFFERED = 8 * 1024 * 1024;

const scalar = { type: ['string', 'number', 'boolean', 'null'] };
const createBody = {
  type: 'object',
  properties: {
    command: { type: 'string', minLength: 1, maxLength: 32 * 1024 },
    attach: { type: ['boolean', 'null'] },
    env: { type: ['object', 'null'], additionalProperties: scalar, maxProperties: 500 },
    size: { type: ['string', 'null'] },
    type: { type: ['string', 'null'] },
    time_to_live: { type: ['integer', 'null'], minimum: 1, maximum: 86_400 },
    force_no_tty: { type: ['boolean', 'null'] },
  },
  required: ['command'],
};

interface CreateBody {
  command: string;
  attach?: boolean | null;
  env?: Record<string, string | number | boolean | null> | null;
  size?: string | null;
  time_to_live?: number | null;
  force_no_tty?: boolean | null;
}

export function dynoShape(app: AppRecord, r: RunRecord, attachUrl: string | null = null): Record<string, unknown> {
  return {
    id: `${app.id}:${r.name}`,
    name: r.name,
    type: r.type,
    state: r.state,
    command: r.command,
    size: r.size,
    attach_url: attachUrl,
    app: appRef(app),
    release: r.release,
    created_at: r.created_at,
    updated_at: r.updated_at,
  };
}

export interface RendezvousInfo {
  /** `rendezvous://host:port/` that `heroku run` attaches to; the run's secret follows. */
  url: string;
  certPath: string;
}

/**
 * Heroku's one-off dyno API: `POST /apps/:app/dynos` creates run.N. An attached run starts when
 * its client attaches: `heroku run` through the rendezvous `attach_url`, Berth's CLI through
 * `GET|POST .../dynos/run.N/attach`, which streams NDJSON: `{state: "up", name}`, then
 * `{stream: "stdout"|"stderr", data}` as the dyno writes, then `{exit: status}` (or `{error}`).
 * Closing that stream stops the dyno.
 */
export function registerOneOffRoutes(api: FastifyInstance, s: Services, runner: OneOffRunner, rendezvous: () => RendezvousInfo | undefined): void {
  api.post('/apps/:app/dynos', { schema: { body: createBody } }, async (req, reply) => {
    const access = await s.apps.resolve(req.user, (req.params as { app: string }).app);
    const b = req.body as CreateBody;
    const env: Record<string, string> = {};
    // The heroku CLI sends COLUMNS and LINES as numbers, and TERM only when it has one.
    for (const [k, v] of Object.entries(b.env ?? {})) if (v !== null) env[k] = String(v);
    const attach = b.attach ?? false;
    const { record, secret } = await runner.create(access, req.user, {
      command: b.command,
      attach,
      env,
      ...(b.size ? { size: b.size } : {}),
      timeToLive: b.time_to_live ?? DEFAULT_TTL,
      tty: b.force_no_tty !== true,
    });
    const rv = rendezvous();
    reply.code(201);
    return dynoShape(access.app, record, attach && rv ? `${rv.url}${secret}` : null);
  });

  api.get(`/apps/:app/dynos/${RUN}`, async (req) => {
    const { app, dyno } = req.params as { app: string; dyno: string };
    const access = await s.apps.resolve(req.user, app);
    return dynoShape(access.app, await getRun(s.store, access.app.id, dyno));
  });

  // Heroku's "restart" of a one-off dyno ends it, as stopping does.
  const stop = async (req: { user: Parameters<Services['apps']['resolve']>[0]; params: unknown }): Promise<Record<string, never>> => {
    const { app, dyno } = req.params as { app: string; dyno: string };
    const access = await s.apps.resolve(req.user, app);
    await requestStop(s.store, access.app.id, dyno);
    s.logs.append(access.app.id, { source: 'app', dyno: 'api', message: `Stop ${dyno} by user ${req.user.email}` });
    return {};
  };
  api.delete(`/apps/:app/dynos/${RUN}`, async (req, reply) => reply.code(202).send(await stop(req)));
  api.post(`/apps/:app/dynos/${RUN}/actions/stop`, async (req, reply) => reply.code(202).send(await stop(req)));

  // GET attaches without input; POST streams the request body (application/octet-stream) to
  // the dyno's stdin while the response streams its output, the way `berth run` forwards a
  // terminal or a pipe. Ending the body is end of input.
  const attach = async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const { app, dyno } = req.params as { app: string; dyno: string };
    const access = await s.apps.resolve(req.user, app);
    const res = reply.raw;
    const send = (event: Record<string, unknown>): void => {
      if (res.writableEnded || res.destroyed) return;
      res.write(`${JSON.stringify(event)}\n`);
      if (res.writableLength > MAX_BUFFERED) res.destroy();
    };
    const sink: Sink = {
      started: (name) => send({ state: 'up', name }),
      output: (stream, data) => send({ stream, data }),
      exited: (code) => {
        send({ exit: code });
        res.end();
      },
      failed: (message) => {
        send({ error: message });
        res.end();
      },
    };
    // Throws (not found, already attached) before anything is sent, so errors keep Heroku's shape.
    const attached = runner.attachByName(access.app.id, dyno, req.user, sink);
    reply.hijack();
    res.writeHead(200, { 'Content-Type': 'application/x-ndjson', 'Cache-Control': 'no-cache', 'Request-Id': req.id });
    res.on('close', () => {
      if (!res.writableEnded) attached.detach();
    });
    const body = req.body;
    // Nothing to read (GET, or a POST without a stream): the command reads EOF, not a hang.
    if (!(body instanceof Readable)) return attached.end();
    // Bytes as sent: a piped dump or tarball is not text.
    body.on('data', (chunk: Buffer) => {
      if (!attached.write(chunk)) {
        body.pause();
        void attached.drained().then(() => body.resume());
      }
    });
    body.on('end', () => attached.end());
    body.on('error', () => undefined);
  };
  void api.register(async (scope) => {
    // Only here: elsewhere an octet-stream body stays refused (415) instead of reaching a handler.
    scope.addContentTypeParser('application/octet-stream', (_req, payload, done) => done(null, payload));
    scope.get(`/apps/:app/dynos/${RUN}/attach`, attach);
    scope.post(`/apps/:app/dynos/${RUN}/attach`, attach);
  });

  // The certificate `heroku run` must trust (NODE_EXTRA_CA_CERTS) to reach the rendezvous port.
  api.get('/berth/rendezvous/cert.pem', async (_req, reply) => {
    const rv = rendezvous();
    if (!rv) throw notFound('rendezvous certificate');
    return reply.type('application/x-pem-file').send(readFileSync(rv.certPath, 'utf8'));
  });
}
