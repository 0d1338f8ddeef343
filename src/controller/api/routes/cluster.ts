import type { FastifyInstance } from 'fastify';
import { invalid } from '../../../domain/errors.js';
import type { Services } from '../../services/index.js';
import { BODY_LIMIT, PAGE_BYTES, PAGE_LINES, batchSchema, pageQuerySchema, type WireBatch } from '../../logs/wire.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

const logBatch = {
  type: 'object',
  required: ['lines'],
  additionalProperties: false,
  properties: {
    lines: {
      type: 'array',
      maxItems: 5000,
      items: {
        type: 'object',
        required: ['app_id', 'source', 'dyno', 'message'],
        additionalProperties: false,
        properties: {
          app_id: { type: 'string', pattern: UUID.source },
          source: { type: 'string', pattern: '^[a-z]{1,16}$' },
          dyno: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,64}$' },
          message: { type: 'string', maxLength: 65536 },
          time: { type: 'string', maxLength: 40 },
        },
      },
    },
  },
} as const;

interface LogBatch {
  lines: { app_id: string; source: string; dyno: string; message: string; time?: string }[];
}

/**
 * What an agent on another machine needs from the controller, behind the cluster token: where the
 * store is (join), and a place to send its dynos' log lines. Slug blobs are the builder's
 * (`/internal/slugs/:id/blob`). Between servers: the log lines each fans out, and an app's newest
 * lines for a server catching up.
 */
export function registerClusterRoutes(api: FastifyInstance, s: Services): void {
  api.post('/internal/cluster/join', { config: { cluster: 'join' } }, async (req) => {
    const body = req.body as { name?: unknown; machine?: unknown } | undefined;
    const name = body?.name;
    const machine = body?.machine;
    if (typeof name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(name)) throw invalid('name must be 1-63 letters, digits, ".", "_" or "-".');
    if (typeof machine !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(machine)) throw invalid('machine must be the machine id: 1-128 letters, digits, ".", "_" or "-".');
    // A sqlite:// URL only reaches agents on this host; a multi-host cluster runs on etcd.
    if (!s.settings.storeUrl) throw invalid('This controller was started without a store URL to share.');
    // The token grants joining; what the agent does afterwards it does with a credential of its own.
    const credential = await s.cluster.issue(machine, name, 'agent');
    s.log.info({ machine, name }, 'agent joined');
    return { store_url: s.settings.storeUrl, api_url: s.settings.apiUrl, domain: s.settings.domain, credential };
  });

  api.post('/internal/logs', { config: { cluster: true }, schema: { body: logBatch } }, async (req, reply) => {
    for (const l of (req.body as LogBatch).lines) s.logs.append(l.app_id, { source: l.source, dyno: l.dyno, message: l.message, ...(l.time ? { time: l.time } : {}) });
    return reply.code(204).send();
  });

  // Servers only: an agent's lines enter through /internal/logs, where they get an origin.
  api.post('/internal/log-lines', { config: { cluster: 'server' }, bodyLimit: BODY_LIMIT, schema: { body: batchSchema } }, async (req) => {
    const batch = req.body as WireBatch;
    const stored = s.logs.receive(batch);
    if (stored < batch.lines.length) req.log.debug({ from: req.machine.name, lines: batch.lines.length, stored }, 'duplicate log lines skipped');
    return { stored };
  });

  api.get('/internal/log-lines', { config: { cluster: 'server' }, schema: { querystring: pageQuerySchema } }, async (req) => {
    const { app, before } = req.query as { app: string; before?: string };
    const lines = s.logs.page(app, PAGE_LINES, before);
    // Newest first until the page is full: a page of long lines is shorter, never larger.
    let bytes = 0;
    let from = lines.length;
    while (from > 0) {
      const size = Buffer.byteLength(JSON.stringify(lines[from - 1]));
      if (from < lines.length && bytes + size > PAGE_BYTES) break;
      bytes += size;
      from--;
    }
    const page = lines.slice(from);
    // Short of a full page by count alone means the app has no older lines here.
    return { lines: page, more: from > 0 || lines.length === PAGE_LINES };
  });
}
