import type { SlugBuilder, SlugRunner } from '../../builder/ports.js';
import type { Logger } from '../../domain/log.js';
import type { ClusterPeers } from '../../domain/peers.js';
import type { Store } from '../../store/index.js';
import { Apps } from './apps.js';
import { SniEndpoints } from './certs.js';
import { ClusterTokens } from './cluster.js';
import { Collaborators } from './collaborators.js';
import { Deploys } from './deploys.js';
import { Domains } from './domains.js';
import { Formations } from './formation.js';
import { GitAccessService } from './git-access.js';
import { LogDrains } from './drains.js';
import { DrainTargets } from '../drains/targets.js';
import { LogHub, SqliteLogStore, type LogClusterOptions } from './logs.js';
import { DrainForwarder } from '../drains/forwarder.js';
import { Releases } from './releases.js';
import { RouterSettings } from './router-settings.js';
import { SshKeys } from './ssh-keys.js';
import type { PlatformSettings } from './types.js';
import { Lookups } from './lookups.js';
import { Users } from './users.js';

/** Every domain service of the controller, built once per process from its dependencies. */
export interface Services {
  store: Store;
  log: Logger;
  settings: PlatformSettings;
  users: Users;
  apps: Apps;
  releases: Releases;
  formations: Formations;
  /** Pushes: build, release, release phase, first-deploy scale, postdeploy (the builder's `Deployer`). */
  deploys: Deploys;
  /** Who may reach which app over git, whose SSH key is whose (the builder's `GitAccess`). */
  gitAccess: GitAccessService;
  domains: Domains;
  collaborators: Collaborators;
  sshKeys: SshKeys;
  logs: LogHub;
  cluster: ClusterTokens;
  drains: LogDrains;
  certs: SniEndpoints;
  routerSettings: RouterSettings;
  /** Started by `startController`; idle (forwards nothing) until then. */
  drainForwarder: DrainForwarder;
  /** Started by `startController` (until then every lookup reads the store). */
  lookups: Lookups;
  /** Stops forwarding and closes the log database (before the store closes). */
  close(): Promise<void>;
}

export interface ServiceOptions {
  /** Where log lines are kept (`<data-dir>/logs.db` under `berth up`); default in memory. */
  logDb?: string;
  /** Lines kept per app (default 1,500, as Heroku). */
  logRetain?: number;
  /**
   * The builder's ports: source → slug for deploys, and a command in a slug for the release phase
   * and postdeploy. Without them (a controller that does not build) releases have no release phase
   * and pushes are refused.
   */
  builder?: { slugs: SlugBuilder; runner: SlugRunner };
  /** Slugs kept per app: those of its newest N releases (default 10). */
  retainSlugs?: number;
  /**
   * The other servers of a cluster: log lines entering here are sent to them, and an app's lines
   * are caught up from one before this server first serves them. Absent: one server.
   */
  peers?: ClusterPeers;
  /** Timings of that log fan-out and catch-up (tests shorten them). */
  logCluster?: Pick<LogClusterOptions, 'fanout' | 'catchUp'>;
}

export function createServices(store: Store, log: Logger, settings: PlatformSettings, options: ServiceOptions = {}): Services {
  // Tokens, users and app names from the watch: a request's auth and app lookup cost no reads.
  const lookups = new Lookups({ store, log: log.child({ component: 'lookups' }) });
  const users = new Users(store, lookups);
  const apps = new Apps(store, lookups);
  const logLog = log.child({ component: 'logs' });
  const logs = new LogHub(
    store,
    new SqliteLogStore({ path: options.logDb ?? ':memory:', ...(options.logRetain ? { retain: options.logRetain } : {}), log: logLog }),
    options.peers ? { cluster: { peers: options.peers, log: logLog, ...(options.logRetain ? { retain: options.logRetain } : {}), ...options.logCluster } } : {},
  );
  const domains = new Domains(store, apps, settings);
  // One view of the cluster's addresses for both checks: when a drain is added and at every connect.
  const drainTargets = new DrainTargets({ store, log: log.child({ component: 'drain-targets' }) });
  const drainForwarder = new DrainForwarder({ store, hub: logs, log: log.child({ component: 'drains' }), guard: drainTargets });
  // Release-phase output of config changes and rollbacks goes to the app's log stream.
  const releases = new Releases(store, apps, {
    ...(options.builder ? { runner: options.builder.runner } : {}),
    log: log.child({ component: 'releases' }),
    onPhaseOutput: (app, text) => {
      for (const line of text.split('\n').filter((l) => l.trim() !== '')) logs.append(app.id, { source: 'app', dyno: 'release.1', message: line });
    },
  });
  const formations = new Formations(store, apps, releases);
  const deploys = new Deploys({
    store,
    log: log.child({ component: 'deploys' }),
    settings,
    apps,
    releases,
    formations,
    logs,
    ...(options.builder ? { builder: options.builder } : {}),
    ...(options.retainSlugs ? { retainSlugs: options.retainSlugs } : {}),
  });
  return {
    store,
    log,
    settings,
    users,
    apps,
    releases,
    formations,
    deploys,
    gitAccess: new GitAccessService(store, apps, users),
    domains,
    collaborators: new Collaborators(store, apps, users),
    sshKeys: new SshKeys(store),
    logs,
    cluster: new ClusterTokens(store, lookups),
    drains: new LogDrains(store, apps, drainTargets),
    certs: new SniEndpoints(store, apps, domains),
    routerSettings: new RouterSettings(store, apps),
    drainForwarder,
    lookups,
    async close() {
      // Housekeeping a push started in the background (slug collection, pruning) ends before the
      // store closes; a stuck one is not worth a stop that never ends.
      await Promise.race([deploys.idle(), new Promise((r) => setTimeout(r, 10_000).unref())]);
      drainForwarder.close();
      await lookups.close();
      logs.close();
    },
  };
}
