import { randomUUID } from 'node:crypto';
import { conflict, invalid, notFound } from '../../domain/errors.js';
import { deleteOp as del, list, putOp } from '../../domain/codec.js';
import { keys } from '../../domain/keys.js';
import { codecs } from '../../domain/records.js';
import type { Store } from '../../store/index.js';
import { type AppAccess, type Apps, requireOwner } from './apps.js';
import type { CollaboratorRecord, UserRecord } from './types.js';
import type { Users } from './users.js';

/** Collaborators see and deploy an app; only its owner (or an admin) manages them. */
export class Collaborators {
  constructor(
    private readonly store: Store,
    private readonly apps: Apps,
    private readonly users: Users,
  ) {}

  async list(access: AppAccess): Promise<{ collaborator: CollaboratorRecord; user: UserRecord; role: 'owner' | 'collaborator' }[]> {
    const records = (await list(this.store, keys.collaborators(access.app.id), codecs.collaborator)).map((e) => e.value);
    const users = await this.users.getMany([access.app.owner_id, ...records.map((r) => r.user_id)]);
    const owner = users.get(access.app.owner_id);
    const out: { collaborator: CollaboratorRecord; user: UserRecord; role: 'owner' | 'collaborator' }[] = [];
    if (owner) {
      out.push({ collaborator: { id: owner.id, user_id: owner.id, created_at: access.app.created_at, updated_at: access.app.created_at }, user: owner, role: 'owner' });
    }
    for (const r of records) {
      const user = users.get(r.user_id);
      if (user) out.push({ collaborator: r, user, role: 'collaborator' });
    }
    return out;
  }

  async add(access: AppAccess, email: string): Promise<{ collaborator: CollaboratorRecord; user: UserRecord }> {
    requireOwner(access, 'add collaborators to');
    const user = await this.users.byEmail(email).catch(() => {
      throw notFound(`user with email ${email}`);
    });
    if (user.id === access.app.owner_id) throw invalid(`${user.email} owns ${access.app.name} already.`);
    const now = new Date().toISOString();
    const collaborator: CollaboratorRecord = { id: randomUUID(), user_id: user.id, created_at: now, updated_at: now };
    const ok = await this.apps.touch(
      access,
      [putOp(keys.collaborator(access.app.id, user.id), codecs.collaborator, collaborator), putOp(keys.access(user.id, access.app.id), codecs.access, { role: 'collaborator' })],
      [{ key: keys.collaborator(access.app.id, user.id), target: 'create', op: '=', value: 0 }],
    );
    if (!ok) {
      if (await this.store.get(keys.collaborator(access.app.id, user.id))) throw conflict(`${user.email} is already a collaborator on ${access.app.name}.`);
      throw conflict('The app changed while adding the collaborator; try again.');
    }
    return { collaborator, user };
  }

  async remove(caller: UserRecord, access: AppAccess, emailOrId: string): Promise<{ collaborator: CollaboratorRecord; user: UserRecord }> {
    const entry = (await this.list(access)).find((c) => c.role === 'collaborator' && (c.user.email === emailOrId.toLowerCase() || c.collaborator.id === emailOrId || c.user.id === emailOrId));
    if (!entry) throw notFound('collaborator');
    // A collaborator may always leave (heroku apps:leave); removing others is the owner's.
    if (entry.user.id !== caller.id) requireOwner(access, 'remove collaborators from');
    const ok = await this.apps.touch(access, [del(keys.collaborator(access.app.id, entry.user.id)), del(keys.access(entry.user.id, access.app.id))]);
    if (!ok) throw conflict('The app changed while removing the collaborator; try again.');
    return entry;
  }
}
