import type { FastifyInstance } from 'fastify';
import { certNameCovers, certsForHosts } from '../../../domain/certs.js';
import { invalid } from '../../../domain/errors.js';
import type { AppAccess } from '../../services/apps.js';
import type { DomainRecord } from '../../services/types.js';
import type { Services } from '../../services/index.js';
import { sendPage } from '../range.js';
import * as shape from '../serialize.js';

/** Domains (their certificates: certs.ts), collaborators (`access*`) and the account's SSH keys (`keys*`). */
export function registerAccessRoutes(api: FastifyInstance, s: Services): void {
  /** Each hostname with the certificate the router serves it with (the same rule as the router's). */
  const withCerts = async (access: AppAccess, domains: DomainRecord[]): Promise<Record<string, unknown>[]> => {
    const serving = certsForHosts(domains.map((d) => d.hostname), await s.certs.list(access));
    return domains.map((d) => shape.domain(access.app, d, s.settings, serving.get(d.hostname)));
  };

  api.get('/apps/:app/domains', async (req, reply) => {
    const access = await s.apps.resolve(req.user, (req.params as { app: string }).app);
    const list = await withCerts(access, await s.domains.list(access));
    return sendPage(req, reply, list, { hostname: (d) => String(d.hostname), id: (d) => String(d.id) }, 'hostname');
  });

  api.get('/apps/:app/domains/:domain', async (req) => {
    const { app, domain } = req.params as { app: string; domain: string };
    const access = await s.apps.resolve(req.user, app);
    const [one] = await withCerts(access, [await s.domains.get(access, domain)]);
    return one;
  });

  // `heroku certs:add` associates the domains it asked about. Berth picks the certificate for a
  // hostname itself (exact name, then newest): the association is checked, and the answer says
  // which certificate serves the hostname.
  api.patch('/apps/:app/domains/:domain', { schema: { body: { type: 'object', properties: { sni_endpoint: { type: ['string', 'null'], maxLength: 200 } }, required: ['sni_endpoint'] } } }, async (req) => {
    const { app, domain } = req.params as { app: string; domain: string };
    const access = await s.apps.resolve(req.user, app);
    const record = await s.domains.get(access, domain);
    const wanted = (req.body as { sni_endpoint: string | null }).sni_endpoint;
    if (wanted !== null) {
      const cert = await s.certs.get(access, wanted);
      if (!cert.ssl_cert.cert_domains.some((n) => certNameCovers(n, record.hostname))) throw invalid(`Certificate ${cert.name} does not cover ${record.hostname} (it covers ${cert.ssl_cert.cert_domains.join(', ')}).`);
    }
    const [one] = await withCerts(access, [record]);
    return one;
  });

  api.post(
    '/apps/:app/domains',
    { schema: { body: { type: 'object', properties: { hostname: { type: 'string', minLength: 1, maxLength: 253 }, sni_endpoint: {} }, required: ['hostname'] } } },
    async (req, reply) => {
      const access = await s.apps.resolve(req.user, (req.params as { app: string }).app);
      const d = await s.domains.add(access, (req.body as { hostname: string }).hostname);
      reply.code(201);
      return shape.domain(access.app, d, s.settings);
    },
  );

  api.delete('/apps/:app/domains/:domain', async (req) => {
    const { app, domain } = req.params as { app: string; domain: string };
    const access = await s.apps.resolve(req.user, app);
    return shape.domain(access.app, await s.domains.remove(access, domain), s.settings);
  });

  api.get('/apps/:app/collaborators', async (req, reply) => {
    const access = await s.apps.resolve(req.user, (req.params as { app: string }).app);
    const list = (await s.collaborators.list(access)).map((c) => shape.collaborator(access.app, c.collaborator, c.user, c.role));
    return sendPage(req, reply, list, { email: (c) => String((c.user as { email: string }).email), id: (c) => String(c.id) }, 'email');
  });

  api.post(
    '/apps/:app/collaborators',
    { schema: { body: { type: 'object', properties: { user: { type: 'string', minLength: 3 }, silent: { type: 'boolean' } }, required: ['user'] } } },
    async (req, reply) => {
      const access = await s.apps.resolve(req.user, (req.params as { app: string }).app);
      const { collaborator, user } = await s.collaborators.add(access, (req.body as { user: string }).user);
      reply.code(201);
      return shape.collaborator(access.app, collaborator, user, 'collaborator');
    },
  );

  api.delete('/apps/:app/collaborators/:collaborator', async (req) => {
    const { app, collaborator } = req.params as { app: string; collaborator: string };
    const access = await s.apps.resolve(req.user, app);
    const removed = await s.collaborators.remove(req.user, access, collaborator);
    return shape.collaborator(access.app, removed.collaborator, removed.user, 'collaborator');
  });

  api.get('/account/keys', async (req, reply) => {
    const list = (await s.sshKeys.list(req.user)).map((k) => shape.sshKey(req.user, k));
    return sendPage(req, reply, list, { id: (k) => String(k.id), fingerprint: (k) => String(k.fingerprint) }, 'id');
  });

  api.post(
    '/account/keys',
    { schema: { body: { type: 'object', properties: { public_key: { type: 'string', minLength: 1, maxLength: 16384 } }, required: ['public_key'] } } },
    async (req, reply) => {
      const k = await s.sshKeys.add(req.user, (req.body as { public_key: string }).public_key);
      reply.code(201);
      return shape.sshKey(req.user, k);
    },
  );

  api.delete('/account/keys/:key', async (req) => {
    const k = await s.sshKeys.remove(req.user, (req.params as { key: string }).key);
    return shape.sshKey(req.user, k);
  });
}
