import { createHash, randomUUID } from 'node:crypto';
import rateLimit from '@fastify/rate-limit';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { BerthError, ErrorCode, forbidden, unauthorized } from '../../domain/errors.js';
import type { Logger } from '../../domain/log.js';
import type { MachineCaller } from '../services/cluster.js';
import type { UserRecord } from '../services/types.js';
import type { Services } from '../services/index.js';
import { errorHandler, sendError } from './errors.js';
import { QuietRequestLog } from './request-log.js';
import { registerAccessRoutes } from './routes/access.js';
import { registerAdminRoutes } from './routes/admin.js';
import { registerAppRoutes } from './routes/apps.js';
import { registerCertRoutes } from './routes/certs.js';
import { registerClusterRoutes } from './routes/cluster.js';
import { registerInternalReleaseRoutes } from './routes/internal-releases.js';
import { registerBuildRoutes } from './routes/builds.js';
import { registerDynoRoutes } from './routes/dynos.js';
import { registerFormationRoutes } from './routes/formation.js';
import { registerHealthCheckRoutes } from './routes/healthchecks.js';
import { registerLogRoutes } from './routes/logs.js';
import { registerPlacementRoutes } from './routes/placement.js';
import { registerReleaseRoutes } from './routes/releases.js';
import { registerRouterRoutes } from './routes/router.js';
import { registerSlugRoutes } from './routes/slugs.js';

declare module 'fastify' {
  interface FastifyRequest {
    user: UserRecord;
    /** On `/internal/` routes: the machine whose credential the call carried. */
    machine: MachineCaller;
  }
  interface FastifyInstance {
    /** Resolves when no request handler is running (or after `timeoutMs`). */
    drain(timeoutMs: number): Promise<void>;
  }
  interface FastifyContextConfig {
    /** Routes reachable without a token: the health probe and log stream URLs (secret in the URL). */
    public?: boolean;
    /**
     * Routes for machines, authenticated by a machine credential (issued at join) instead of a
     * user's token: `true` for any machine, `'server'` for servers only, `'join'` for the join
     * token itself (joining is all it grants).
     */
    cluster?: true | 'server' | 'join';
  }
}

/** `Bearer <token>`, or HTTP basic with the token as the password (any user name), as Heroku takes. */
export function tokenFrom(request: FastifyRequest): string | undefined {
  const h = request.headers.authorization;
  if (!h) return undefined;
  const [scheme, value] = h.split(/\s+/, 2);
  if (!value) return undefined;
  if (scheme?.toLowerCase() === 'bearer') return value.trim();
  if (scheme?.toLowerCase() === 'basic') {
    const decoded = Buffer.from(value, 'base64').toString('utf8');
    const i = decoded.indexOf(':');
    return i >= 0 ? decoded.slice(i + 1) : undefined;
  }
  return undefined;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,200}$/;

/** Heroku's: 4,500 requests an hour per token. */
export const DEFAULT_RATE_LIMIT = 4500;

export interface ApiOptions {
  /**
   * Requests one token may make per hour (default Heroku's 4,500; 0: no limit). Counted in this
   * process's memory: each server of a cluster counts its own, and a restart forgets.
   */
  rateLimit?: number;
  /** TLS for the listener (PEM); plain HTTP without it. */
  https?: { cert: string; key: string };
}

/** The Heroku Platform API v3 subset, as a Fastify instance (tests drive it with `.inject()`). */
export function buildApi(services: Services, log: Logger, extraRoutes: ((api: FastifyInstance, services: Services) => void)[] = [], options: ApiOptions = {}): FastifyInstance {
  const app: FastifyInstance = Fastify({
    ...(options.https ? { https: { cert: options.https.cert, key: options.https.key } } : {}),
    loggerInstance: log as FastifyBaseLogger,
    logController: new QuietRequestLog(),
    bodyLimit: 1024 * 1024,
    requestIdHeader: false,
    // Hostnames run to 253 characters and emails to 254: both appear in paths.
    routerOptions: { maxParamLength: 512 },
    genReqId: (req) => {
      const given = req.headers['request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    },
    frameworkErrors: (err, request, reply) => {
      reply.header('Request-Id', request.id);
      sendError(reply, err.statusCode ?? 400, 'bad_request', err.message);
    },
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false, allowUnionTypes: true } },
  });
  app.decorateRequest('user', null as unknown as UserRecord);
  app.setErrorHandler(errorHandler);
  // Errors Fastify raises before routing (bad URL encoding, oversize params) get Heroku's shape too.
  app.setNotFoundHandler((request, reply) =>
    sendError(reply, 404, 'not_found', `The requested API endpoint ${request.method} ${request.url.split('?')[0]} was not found.`),
  );
  // Heroku clients send vendor JSON types; parse them as JSON. Fastify's own application/json
  // parser refuses an empty body, yet clients send `Content-Type: application/json` on a DELETE
  // without one (400 before any handler ran): an empty body is no body, whatever the type says.
  // Non-empty bodies still go through Fastify's parser, which refuses prototype poisoning.
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser(/^application\/(vnd\.heroku\+)?json/, { parseAs: 'string' }, (req, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text.trim() === '') return done(null, {});
    void parseJson(req, text, done);
  });
  // Handlers still running when the server closes (their client gone) must finish before the store
  // closes under them: `drain` waits for them.
  let inFlight = 0;
  const running = new WeakSet<FastifyRequest>();
  const idle: (() => void)[] = [];
  // An aborted request may still reach onResponse: count each one down once.
  const done = (request: FastifyRequest): void => {
    if (!running.delete(request)) return;
    inFlight--;
    if (inFlight === 0) for (const f of idle.splice(0)) f();
  };
  app.decorate('drain', (timeoutMs: number) =>
    inFlight === 0 ? Promise.resolve() : new Promise<void>((resolve) => {
      idle.push(resolve);
      setTimeout(resolve, timeoutMs).unref();
    }),
  );
  app.addHook('onRequest', async (request) => {
    running.add(request);
    inFlight++;
  });
  app.addHook('onResponse', async (request) => done(request));
  app.addHook('onRequestAbort', async (request) => done(request));
  // Per token, as Heroku limits; the header Heroku clients read is `RateLimit-Remaining` (the
  // draft spec's name), sent on every counted response.
  const max = options.rateLimit ?? DEFAULT_RATE_LIMIT;
  let limit: ((request: FastifyRequest, reply: FastifyReply) => Promise<void>) | undefined;
  if (max > 0) {
    void app.register(rateLimit, {
      global: false,
      max,
      timeWindow: '1 hour',
      enableDraftSpec: true,
      keyGenerator: (request) => createHash('sha256').update(tokenFrom(request) ?? '').digest('hex'),
      addHeaders: { 'ratelimit-limit': false, 'ratelimit-reset': false, 'ratelimit-remaining': true, 'retry-after': true },
      addHeadersOnExceeding: { 'ratelimit-limit': false, 'ratelimit-reset': false, 'ratelimit-remaining': true },
      errorResponseBuilder: () => new BerthError(ErrorCode.RateLimit, 'Your account reached the API rate limit. Please wait a few minutes before making new requests.'),
    });
    app.after(() => {
      const handler = app.rateLimit();
      limit = (request, reply) => handler.call(app, request, reply) as Promise<void>;
    });
  }
  app.addHook('onRequest', async (request, reply) => {
    reply.header('Request-Id', request.id);
    if (request.routeOptions.config.public) return;
    const token = tokenFrom(request);
    const cluster = request.routeOptions.config.cluster;
    if (cluster === 'join') {
      if (!(await services.cluster.verify(token))) throw unauthorized('Invalid cluster token.');
      return;
    }
    if (cluster) {
      const machine = await services.cluster.authenticate(token);
      if (!machine) throw unauthorized('Invalid machine credential.');
      if (cluster === 'server' && machine.role !== 'server') throw forbidden('Only servers may call this.');
      request.machine = machine;
      return;
    }
    const user = token ? await services.users.authenticate(token) : undefined;
    if (!user) throw unauthorized('Invalid credentials provided.');
    request.user = user;
    // Only a user's token is counted, after it proved valid: machines' calls, public routes and
    // bad tokens (refused above at no cost to anyone's budget) are not.
    if (limit) await limit(request, reply);
  });

  app.get('/health', { config: { public: true } }, async () => ({ status: 'ok' }));
  registerAppRoutes(app, services);
  registerReleaseRoutes(app, services);
  registerFormationRoutes(app, services);
  registerDynoRoutes(app, services);
  registerBuildRoutes(app, services);
  registerSlugRoutes(app, services);
  registerAccessRoutes(app, services);
  registerLogRoutes(app, services);
  registerAdminRoutes(app, services);
  registerPlacementRoutes(app, services);
  registerCertRoutes(app, services);
  registerRouterRoutes(app, services);
  registerHealthCheckRoutes(app, services);
  registerInternalReleaseRoutes(app, services);
  registerClusterRoutes(app, services);
  for (const routes of extraRoutes) routes(app, services);
  return app;
}
