import type { AppRef, GitAccess } from '../../builder/ports.js';
import { get } from '../../domain/codec.js';
import { keys } from '../../domain/keys.js';
import { codecs } from '../../domain/records.js';
import type { Store } from '../../store/index.js';
import type { Apps } from './apps.js';
import type { UserRecord } from './types.js';
import type { Users } from './users.js';

/** The controller's answer to the git transports: which app a user may reach, whose SSH key is whose. */
export class GitAccessService implements GitAccess {
  constructor(
    private readonly store: Store,
    private readonly apps: Apps,
    private readonly users: Users,
  ) {}

  /** Through `Apps.resolve`, so a stranger gets the same not_found as for an app that does not exist. */
  async resolveApp(user: UserRecord, appIdOrName: string): Promise<AppRef> {
    const { app } = await this.apps.resolve(user, appIdOrName);
    return { id: app.id, name: app.name };
  }

  async keyOwner(sha256: string): Promise<{ user: UserRecord; publicKey: string } | undefined> {
    const ref = await get(this.store, keys.fingerprint(sha256), codecs.fingerprint);
    if (!ref) return undefined;
    const record = await get(this.store, keys.sshKey(ref.value.user_id, ref.value.key_id), codecs.sshKey);
    if (!record) return undefined;
    const user = await this.users.get(ref.value.user_id).catch(() => undefined);
    return user && { user, publicKey: record.value.public_key };
  }
}
