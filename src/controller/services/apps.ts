import { randomUUID } from 'node:crypto';
import { conflict, forbidden, invalid, notFound } from '../../domain/errors.js';
import { decode, deleteOp as del, get, getMany, list, putOp, tryDecode, type Entry, type Key } from '../../domain/codec.js';
import { keys } from '../../domain/keys.js';
import { codecs } from '../../domain/records.js';
import type { Store, TxnOp } from '../../store/index.js';
import { APP_NAME, generateAppName } from './names.js';
import type { AppRecord, ReleaseRecord, UserRecord } from './types.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export type Role = 'owner' | 'collaborator' | 'admin';

/** An app as seen by one user: the record, its revision (for CAS) and the user's role on it. */
export interface AppAccess {
  app: AppRecord;
  mod: number;
  role: Role;
}

export function releaseKey(app: string, version: number): Key<ReleaseRecord> {
  return keys.release(app, version);
}

/** Which app id a name pointed at when last seen (`Lookups`): a hint, checked on the record read. */
export interface AppNameHints {
  appId(name: string): string | undefined;
}

/**
 * Apps and who may see them. Every read goes through `resolve`, which answers "not found" for an
 * app the user cannot see, so the API never reveals that someone else's app exists.
 */
export class Apps {
  /** With `names` (the API's `Lookups`), a name seen before costs no read of the name index. */
  constructor(
    private readonly store: Store,
    private readonly names?: AppNameHints,
  ) {}

  async create(user: UserRecord, name?: string): Promise<AppRecord> {
    const explicit = name !== undefined && name !== null;
    for (let attempt = 0; attempt < 5; attempt++) {
      const appName = explicit ? name : generateAppName();
      if (!APP_NAME.test(appName)) {
        throw invalid(`Name must start with a letter, end with a letter or digit and can only contain lowercase letters, digits, and dashes (3 to 30 characters): "${appName}".`);
      }
      const now = new Date().toISOString();
      const app: AppRecord = {
        id: randomUUID(),
        name: appName,
        owner_id: user.id,
        created_at: now,
        updated_at: now,
        release_version: 1,
        current_version: 1,
        released_at: now,
        maintenance: false,
      };
      const initial: ReleaseRecord = {
        id: randomUUID(),
        version: 1,
        slug_id: null,
        config: {},
        process_types: {},
        description: 'Initial release',
        user_id: user.id,
        user_email: user.email,
        status: 'succeeded',
        created_at: now,
        updated_at: now,
      };
      const r = await this.store.txn({
        compare: [{ key: keys.appName(appName), target: 'create', op: '=', value: 0 }],
        success: [
          putOp(keys.appName(appName), codecs.appId, app.id),
          putOp(keys.app(app.id), codecs.app, app),
          putOp(keys.config(app.id), codecs.config, {}),
          putOp(keys.formation(app.id), codecs.formation, {}),
          putOp(keys.release(app.id, 1), codecs.release, initial),
          putOp(keys.access(user.id, app.id), codecs.access, { role: 'owner' }),
        ],
      });
      if (r.succeeded) return app;
      if (explicit) throw conflict(`Name ${appName} is already taken.`);
    }
    throw conflict('Could not find a free app name; give one explicitly.');
  }

  /**
   * Finds an app by name or id, as `user` may see it; anything else is not_found. One round trip
   * when the name is known here (`AppNameHints`), two when it is not.
   */
  async resolve(user: UserRecord, nameOrId: string): Promise<AppAccess> {
    if (UUID.test(nameOrId)) return this.access(user, await this.read(user, nameOrId));
    if (!APP_NAME.test(nameOrId)) throw notFound('app');
    // A hint is checked against the record read anyway: a name given up by a rename or a destroy
    // is no longer on it, and then the index is read after all.
    const hint = this.names?.appId(nameOrId);
    if (hint !== undefined) {
      const found = await this.read(user, hint);
      if (found?.app.name === nameOrId) return this.access(user, found);
    }
    const name = await get(this.store, keys.appName(nameOrId), codecs.appId);
    if (!name) throw notFound('app');
    return this.access(user, await this.read(user, name.value));
  }

  /** The app record and whether `user` collaborates on it, in one round trip (a txn of two reads). */
  private async read(user: UserRecord, id: string): Promise<{ app: AppRecord; mod: number; collaborator: boolean } | undefined> {
    const appId = id.toLowerCase();
    const r = await this.store.txn({ compare: [], success: [{ type: 'range', key: keys.app(appId) }, { type: 'range', key: keys.access(user.id, appId) }] });
    const [app, access] = r.results;
    const kv = app?.type === 'range' ? app.kvs[0] : undefined;
    if (!kv) return undefined;
    return { app: decode(codecs.app, kv), mod: kv.modRevision, collaborator: access?.type === 'range' && access.kvs.length > 0 };
  }

  private access(user: UserRecord, found: { app: AppRecord; mod: number; collaborator: boolean } | undefined): AppAccess {
    if (!found) throw notFound('app');
    // An admin keeps admin powers on apps they also collaborate on.
    const role: Role | undefined = found.app.owner_id === user.id ? 'owner' : user.admin ? 'admin' : found.collaborator ? 'collaborator' : undefined;
    if (!role) throw notFound('app');
    return { app: found.app, mod: found.mod, role };
  }

  /**
   * Puts the app in or out of maintenance mode. The flag lives on the record (what the API shows)
   * and, while on, as /berth/maintenance/<app>, written in the same txn: the router watches that
   * small prefix rather than every app record, and serves the maintenance page without a reload.
   */
  async setMaintenance(access: AppAccess, on: boolean): Promise<AppRecord> {
    const now = new Date().toISOString();
    const marker = on ? putOp(keys.maintenance(access.app.id), codecs.maintenance, { since: now }) : del(keys.maintenance(access.app.id));
    if (access.app.maintenance === on) {
      // Written again all the same: a flag set before the router knew the key (or a marker lost
      // to a hand edit) is repaired by the command a user would try first.
      if (on === Boolean(await this.store.get(keys.maintenance(access.app.id)))) return access.app;
      await this.store.txn({ compare: [{ key: keys.app(access.app.id), target: 'mod', op: '=', value: access.mod }], success: [marker] });
      return access.app;
    }
    const app: AppRecord = { ...access.app, maintenance: on, updated_at: now };
    const r = await this.store.txn({ compare: [{ key: keys.app(app.id), target: 'mod', op: '=', value: access.mod }], success: [putOp(keys.app(app.id), codecs.app, app), marker] });
    if (!r.succeeded) throw conflict('The app changed meanwhile; try again.');
    return app;
  }

  /** The apps a user can see (all of them for an admin), by name. */
  async list(user: UserRecord): Promise<AppRecord[]> {
    let ids: string[];
    if (user.admin) {
      ids = (await list(this.store, keys.appNames(), codecs.appId)).map((e) => e.value);
    } else {
      const prefix = keys.accessOf(user.id);
      ids = (await this.store.range(prefix, { prefix: true })).kvs.map((kv) => kv.key.slice(prefix.length));
    }
    const apps = await getMany(this.store, ids.map((id) => keys.app(id)), codecs.app);
    return apps.filter((a): a is AppRecord => a !== undefined).sort((a, b) => a.name.localeCompare(b.name));
  }

  async rename(access: AppAccess, newName: string): Promise<AppRecord> {
    requireOwner(access, 'rename');
    if (!APP_NAME.test(newName)) throw invalid(`Name must start with a letter and can only contain lowercase letters, digits, and dashes (3 to 30 characters): "${newName}".`);
    if (newName === access.app.name) return access.app;
    const app: AppRecord = { ...access.app, name: newName, updated_at: new Date().toISOString() };
    const r = await this.store.txn({
      compare: [
        { key: keys.appName(newName), target: 'create', op: '=', value: 0 },
        { key: keys.app(app.id), target: 'mod', op: '=', value: access.mod },
      ],
      success: [del(keys.appName(access.app.name)), putOp(keys.appName(newName), codecs.appId, app.id), putOp(keys.app(app.id), codecs.app, app)],
    });
    if (!r.succeeded) {
      if (await this.store.get(keys.appName(newName))) throw conflict(`Name ${newName} is already taken.`);
      throw conflict('The app changed while renaming it; try again.');
    }
    return app;
  }

  /** Deletes the app and every key that points at it, in one transaction. */
  async destroy(access: AppAccess): Promise<void> {
    requireOwner(access, 'delete');
    const id = access.app.id;
    // Decoded strictly: a record that cannot be read would leave its pointer behind.
    const collaborators = (await this.store.range(keys.collaborators(id), { prefix: true })).kvs.map((kv) => decode(codecs.collaborator, kv));
    const domains = (await this.store.range(keys.domains(id), { prefix: true })).kvs.map((kv) => decode(codecs.domain, kv));
    // The app's uid (`allocateUid`) is freed with it; /berth/apps/<id>/uid goes with the subtree.
    // A uid record that cannot be read must not make the app impossible to delete: the record goes
    // with the subtree, and the uid it named stays taken (one uid of 60,000 lost, nothing shared).
    const uidKv = await this.store.get(keys.appUid(id));
    const uidValue = tryDecode(codecs.uid, uidKv);
    const uid = uidKv ? { mod: uidKv.modRevision, value: uidValue } : undefined;
    const ops: TxnOp[] = [
      del(keys.app(id)),
      del(keys.appKeys(id), true),
      del(keys.appName(access.app.name)),
      del(keys.access(access.app.owner_id, id)),
      ...collaborators.map((c) => del(keys.access(c.user_id, id))),
      ...domains.map((d) => del(keys.hostname(d.hostname))),
      // Outside the app's subtree because the router reads them by prefix.
      del(keys.certs(id), true),
      del(keys.appRouting(id)),
      del(keys.maintenance(id)),
      ...(uid?.value ? [del(keys.uid(uid.value.uid))] : []),
    ];
    // Every change under an app also rewrites its record, so this compare catches a collaborator or
    // domain added since they were listed above. A uid is allocated without touching the record:
    // its own compare catches one allocated since it was read.
    const r = await this.store.txn({
      compare: [
        { key: keys.app(id), target: 'mod', op: '=', value: access.mod },
        { key: keys.appUid(id), target: 'mod', op: '=', value: uid?.mod ?? 0 },
      ],
      success: ops,
    });
    if (!r.succeeded) throw conflict('The app changed while deleting it; try again.');
  }

  /** Rewrites the record (updated_at) together with `ops`, if the app is unchanged since `access`. */
  async touch(access: AppAccess, ops: TxnOp[], extraCompare: Parameters<Store['txn']>[0]['compare'] = []): Promise<Pick<Entry<AppRecord>, 'value' | 'mod'> | undefined> {
    const app: AppRecord = { ...access.app, updated_at: new Date().toISOString() };
    const r = await this.store.txn({
      compare: [{ key: keys.app(app.id), target: 'mod', op: '=', value: access.mod }, ...extraCompare],
      success: [putOp(keys.app(app.id), codecs.app, app), ...ops],
    });
    return r.succeeded ? { value: app, mod: r.revision } : undefined;
  }
}

export function requireOwner(access: AppAccess, action: string): void {
  if (access.role === 'collaborator') throw forbidden(`Only the app owner can ${action} ${access.app.name}.`);
}
