import type { FastifyInstance } from 'fastify';
import type { CertRecord } from '../../../domain/certs.js';
import type { AppRecord } from '../../services/types.js';
import type { Services } from '../../services/index.js';
import { sendPage } from '../range.js';
import { appRef } from '../serialize.js';

/** Heroku's SNI endpoint shape; the private key never leaves the store. */
function sniEndpoint(app: AppRecord, c: CertRecord, domains: string[]): Record<string, unknown> {
  return {
    id: c.id,
    name: c.name,
    display_name: null,
    certificate_chain: c.certificate_chain,
    created_at: c.created_at,
    updated_at: c.updated_at,
    app: appRef(app),
    // Hostnames rather than domain ids: the heroku CLI shows them as they are.
    domains,
    ssl_cert: { ...c.ssl_cert, acm: false, id: c.id },
  };
}

const pem = { type: 'string', minLength: 1, maxLength: 65536 } as const;
const certBody = { type: 'object', properties: { certificate_chain: pem, private_key: { ...pem, maxLength: 16384 } }, required: ['certificate_chain', 'private_key'] } as const;
type CertBody = { certificate_chain: string; private_key: string };

/** `certs:*`: an app's TLS certificates, served by the router for the hostnames they cover. */
export function registerCertRoutes(api: FastifyInstance, s: Services): void {
  api.get('/apps/:app/sni-endpoints', async (req, reply) => {
    const access = await s.apps.resolve(req.user, (req.params as { app: string }).app);
    const certs = await s.certs.list(access);
    const served = await s.certs.served(access, certs);
    const list = certs.map((c) => sniEndpoint(access.app, c, served.get(c.id) ?? []));
    return sendPage(req, reply, list, { name: (c) => String(c.name), id: (c) => String(c.id) }, 'name');
  });

  api.get('/apps/:app/sni-endpoints/:cert', async (req) => {
    const { app, cert } = req.params as { app: string; cert: string };
    const access = await s.apps.resolve(req.user, app);
    const c = await s.certs.get(access, cert);
    return sniEndpoint(access.app, c, (await s.certs.served(access)).get(c.id) ?? []);
  });

  api.post('/apps/:app/sni-endpoints', { schema: { body: certBody } }, async (req, reply) => {
    const access = await s.apps.resolve(req.user, (req.params as { app: string }).app);
    const body = req.body as CertBody;
    const c = await s.certs.add(access, body.certificate_chain, body.private_key);
    reply.code(201);
    return sniEndpoint(access.app, c, (await s.certs.served(access)).get(c.id) ?? []);
  });

  api.patch('/apps/:app/sni-endpoints/:cert', { schema: { body: certBody } }, async (req) => {
    const { app, cert } = req.params as { app: string; cert: string };
    const access = await s.apps.resolve(req.user, app);
    const body = req.body as CertBody;
    const c = await s.certs.update(access, cert, body.certificate_chain, body.private_key);
    return sniEndpoint(access.app, c, (await s.certs.served(access)).get(c.id) ?? []);
  });

  api.delete('/apps/:app/sni-endpoints/:cert', async (req) => {
    const { app, cert } = req.params as { app: string; cert: string };
    const access = await s.apps.resolve(req.user, app);
    return sniEndpoint(access.app, await s.certs.remove(access, cert), []);
  });
}
