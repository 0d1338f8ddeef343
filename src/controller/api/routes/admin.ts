import type { FastifyInstance, FastifyRequest } from 'fastify';
import { put, tryDecode } from '../../../domain/codec.js';
import { forbidden } from '../../../domain/errors.js';
import { keys } from '../../../domain/keys.js';
import { codecs } from '../../../domain/records.js';
import type { Services } from '../../services/index.js';
import * as shape from '../serialize.js';

function requireAdmin(req: FastifyRequest): void {
  if (!req.user.admin) throw forbidden('This action needs an admin account.');
}

const emailBody = { type: 'object', properties: { email: { type: 'string', minLength: 3, maxLength: 254 }, admin: { type: 'boolean' } }, required: ['email'] } as const;

/** Berth's own endpoints (not Heroku's): users and platform settings, for `berth users:*`. */
export function registerAdminRoutes(api: FastifyInstance, s: Services): void {
  // Anything but a well-formed 'open' is closed.
  const registrationOpen = async (): Promise<boolean> => tryDecode(codecs.registration, await s.store.get(keys.registration())) === 'open';

  api.get('/berth/users', async (req) => {
    requireAdmin(req);
    return (await s.users.list()).map(shape.account);
  });

  api.post('/berth/users', { schema: { body: emailBody } }, async (req, reply) => {
    requireAdmin(req);
    const body = req.body as { email: string; admin?: boolean };
    const { user, token } = await s.users.create(body.email, { admin: body.admin ?? false });
    reply.code(201);
    return { ...shape.account(user), token };
  });

  api.get('/berth/settings', async (req) => {
    requireAdmin(req);
    return { open_registration: await registrationOpen() };
  });

  api.patch(
    '/berth/settings',
    { schema: { body: { type: 'object', properties: { open_registration: { type: 'boolean' } }, additionalProperties: false } } },
    async (req) => {
      requireAdmin(req);
      const body = req.body as { open_registration?: boolean };
      if (body.open_registration !== undefined) await put(s.store, keys.registration(), codecs.registration, body.open_registration ? 'open' : 'closed');
      return { open_registration: await registrationOpen() };
    },
  );

  // Self-service sign-up, only while an admin has opened registration.
  api.post('/berth/signup', { config: { public: true }, schema: { body: emailBody } }, async (req, reply) => {
    if (!(await registrationOpen())) throw forbidden('Registration is closed; ask an admin for an account.');
    const { user, token } = await s.users.create((req.body as { email: string }).email);
    reply.code(201);
    return { ...shape.account(user), token };
  });
}
