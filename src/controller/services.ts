import type { Logger } from '../domain/log.js';
import type { Store } from '../store/index.js';
import { Apps } from './model/apps.js';
import { Collaborators } from './model/collaborators.js';
import { Domains } from './model/domains.js';
import { Formations } from './model/formation.js';
import { LogHub } from './model/logs.js';
import { Releases } from './model/releases.js';
import { SshKeys } from './model/ssh-keys.js';
import type { PlatformSettings } from './model/types.js';
import { Users } from './model/users.js';

/** Every domain service of the controller, built once per process from its dependencies. */
export interface Services {
  store: Store;
  log: Logger;
  settings: PlatformSettings;
  users: Users;
  apps: Apps;
  releases: Releases;
  formations: Formations;
  domains: Domains;
  collaborators: Collaborators;
  sshKeys: SshKeys;
  logs: LogHub;
}

export function createServices(store: Store, log: Logger, settings: PlatformSettings): Services {
  const users = new Users(store);
  const apps = new Apps(store);
  const logs = new LogHub(store);
  // Release-phase output of config changes and rollbacks goes to the app's log stream.
  const releases = new Releases(store, apps, (app, text) => {
    for (const line of text.split('\n').filter((l) => l.trim() !== '')) logs.append(app.id, { source: 'app', dyno: 'release.1', message: line });
  });
  return {
    store,
    log,
    settings,
    users,
    apps,
    releases,
    formations: new Formations(store, apps, releases),
    domains: new Domains(store, apps, settings.domain),
    collaborators: new Collaborators(store, apps, users),
    sshKeys: new SshKeys(store),
    logs,
  };
}
