/**
 * The store key layout, in one place. docs/keys.md is the human-readable twin of this file and says
 * who writes and who reads each key; change both together (test/domain/keys.test.ts checks that
 * every builder here is documented and every documented key has a builder, with the same record).
 *
 * Every builder returns a `Key<T>` (or `Prefix<T>`) typed to the record it holds; `KEY_RECORDS`
 * names that record's codec at run time (`untypedJson` for a prefix over records of several
 * kinds). Parameters say what they take: `appId` (the immutable id under /berth/apps/) or
 * `appName` (what routers and units are keyed by).
 */
import { untypedJson, type Key, type Prefix } from './codec.js';
import { codecs } from './records.js';
import type {
  AccessRecord,
  AppRecord,
  AppRouting,
  BootstrapMarker,
  BuildRecord,
  CertRecord,
  ClusterTokenRecord,
  ClusterSettingsRecord,
  MachineCredentialRecord,
  ServerRecord,
  SlugCopyRecord,
  CollaboratorRecord,
  DomainRecord,
  DrainRecord,
  FingerprintRecord,
  Formation,
  HealthChecks,
  IpRecord,
  LogSession,
  MaintenanceRecord,
  MachineRecord,
  MemoryLimits,
  NetworkConfigRecord,
  PlatformRecord,
  ReleaseRecord,
  Restarts,
  RouterReport,
  RunRecord,
  SlugRecord,
  SshKeyRecord,
  StatusRecord,
  SubnetRecord,
  TokenRecord,
  UidRecord,
  UidOwner,
  UnitSpec,
  UserRecord,
} from './records.js';

export const ROOT = '/berth';

const seg = (s: string): string => {
  if (s.length === 0 || s.includes('/')) throw new Error(`invalid key segment "${s}"`);
  return s;
};

export const keys = {
  /** Everything Berth keeps: what a loop watches when it reacts to several kinds of keys. */
  all: (): Prefix<unknown> => `${ROOT}/`,
  /** Written once by `berth up`: what this platform is (store format, creation time). */
  platform: (): Key<PlatformRecord> => `${ROOT}/platform`,
  /** Apps are keyed by their immutable id, so a rename rewrites two small keys, not a subtree. */
  app: (appId: string): Key<AppRecord> => `${ROOT}/apps/${seg(appId)}`,
  /**
   * Every key under /berth/apps/ (app records and their subtrees, records of several kinds): what
   * the drain forwarder watches, picking out drains and destroyed apps.
   */
  allAppKeys: (): Prefix<unknown> => `${ROOT}/apps/`,
  /** An app's subtree (config, releases, formation, …): `apps:destroy` deletes it in one op. */
  appKeys: (appId: string): Prefix<unknown> => `${ROOT}/apps/${seg(appId)}/`,
  appNames: (): Prefix<string> => `${ROOT}/app-names/`,
  appName: (appName: string): Key<string> => `${ROOT}/app-names/${seg(appName)}`,
  config: (appId: string): Key<Record<string, string>> => `${ROOT}/apps/${seg(appId)}/config`,
  /** Placement tags (`berth tags:set`) and per-type memory limits (`berth limits:set`). */
  appTags: (appId: string): Key<Record<string, string>> => `${ROOT}/apps/${seg(appId)}/tags`,
  appLimits: (appId: string): Key<MemoryLimits> => `${ROOT}/apps/${seg(appId)}/limits`,
  /** `{uid}`: the unprivileged uid the app's builds and dynos run as (`allocateUid`). */
  appUid: (appId: string): Key<UidRecord> => `${ROOT}/apps/${seg(appId)}/uid`,
  /** `{app_id}` holding a uid: unique by a create-only txn, deleted with the app. */
  uids: (): Prefix<UidOwner> => `${ROOT}/uids/`,
  uid: (uid: number): Key<UidOwner> => `${ROOT}/uids/${seg(String(uid))}`,
  collaborators: (appId: string): Prefix<CollaboratorRecord> => `${ROOT}/apps/${seg(appId)}/collaborators/`,
  collaborator: (appId: string, userId: string): Key<CollaboratorRecord> => `${ROOT}/apps/${seg(appId)}/collaborators/${seg(userId)}`,
  builds: (appId: string): Prefix<BuildRecord> => `${ROOT}/apps/${seg(appId)}/builds/`,
  build: (appId: string, build: string): Key<BuildRecord> => `${ROOT}/apps/${seg(appId)}/builds/${seg(build)}`,
  slugs: (): Prefix<SlugRecord> => `${ROOT}/slugs/`,
  slug: (slug: string): Key<SlugRecord> => `${ROOT}/slugs/${seg(slug)}`,
  /** Which app id owns a hostname (global uniqueness). */
  hostnames: (): Prefix<string> => `${ROOT}/domains/`,
  hostname: (host: string): Key<string> => `${ROOT}/domains/${seg(host)}`,
  users: (): Prefix<UserRecord> => `${ROOT}/users/`,
  user: (userId: string): Key<UserRecord> => `${ROOT}/users/${seg(userId)}`,
  email: (email: string): Key<string> => `${ROOT}/emails/${seg(email)}`,
  token: (sha256: string): Key<TokenRecord> => `${ROOT}/tokens/${seg(sha256)}`,
  sshKeys: (userId: string): Prefix<SshKeyRecord> => `${ROOT}/ssh-keys/${seg(userId)}/`,
  sshKey: (userId: string, id: string): Key<SshKeyRecord> => `${ROOT}/ssh-keys/${seg(userId)}/${seg(id)}`,
  fingerprint: (sha256: string): Key<FingerprintRecord> => `${ROOT}/fingerprints/${seg(sha256)}`,
  accessOf: (userId: string): Prefix<AccessRecord> => `${ROOT}/access/${seg(userId)}/`,
  access: (userId: string, appId: string): Key<AccessRecord> => `${ROOT}/access/${seg(userId)}/${seg(appId)}`,
  /** Platform settings: whether anyone may sign up, and the marker of the first admin. */
  registration: (): Key<string> => `${ROOT}/settings/registration`,
  bootstrapped: (): Key<BootstrapMarker> => `${ROOT}/settings/bootstrapped`,
  logSession: (id: string): Key<LogSession> => `${ROOT}/log-sessions/${seg(id)}`,
  releases: (appId: string): Prefix<ReleaseRecord> => `${ROOT}/apps/${seg(appId)}/releases/`,
  release: (appId: string, version: number): Key<ReleaseRecord> => `${ROOT}/apps/${seg(appId)}/releases/${String(version).padStart(10, '0')}`,
  /** Restart counters per type and dyno (`ps:restart`): a bump rolls the dynos over. */
  restarts: (appId: string): Key<Restarts> => `${ROOT}/apps/${seg(appId)}/restarts`,
  /** HTTP health checks set with `healthchecks:set`, per process type; they win over app.json's. */
  healthchecks: (appId: string): Key<HealthChecks> => `${ROOT}/apps/${seg(appId)}/healthchecks`,
  formation: (appId: string): Key<Formation> => `${ROOT}/apps/${seg(appId)}/formation`,
  domains: (appId: string): Prefix<DomainRecord> => `${ROOT}/apps/${seg(appId)}/domains/`,
  domain: (appId: string, host: string): Key<DomainRecord> => `${ROOT}/apps/${seg(appId)}/domains/${seg(host)}`,
  drains: (appId: string): Prefix<DrainRecord> => `${ROOT}/apps/${seg(appId)}/drains/`,
  drain: (appId: string, id: string): Key<DrainRecord> => `${ROOT}/apps/${seg(appId)}/drains/${seg(id)}`,
  machines: (): Prefix<MachineRecord> => `${ROOT}/machines/`,
  machine: (id: string): Key<MachineRecord> => `${ROOT}/machines/${seg(id)}`,
  allUnits: (): Prefix<UnitSpec> => `${ROOT}/units/`,
  unitsOn: (machine: string): Prefix<UnitSpec> => `${ROOT}/units/${seg(machine)}/`,
  unit: (machine: string, unit: string): Key<UnitSpec> => `${ROOT}/units/${seg(machine)}/${seg(unit)}`,
  statuses: (): Prefix<StatusRecord> => `${ROOT}/status/`,
  /** One app's formation dynos: unit names start with the app's name and a dot (names hold none). */
  appStatuses: (appName: string): Prefix<StatusRecord> => `${ROOT}/status/${seg(appName)}.`,
  status: (unit: string): Key<StatusRecord> => `${ROOT}/status/${seg(unit)}`,
  allServices: (): Prefix<string> => `${ROOT}/services/`,
  services: (appName: string): Prefix<string> => `${ROOT}/services/${seg(appName)}/`,
  service: (appName: string, unit: string): Key<string> => `${ROOT}/services/${seg(appName)}/${seg(unit)}`,
  routers: (): Prefix<RouterReport> => `${ROOT}/routers/`,
  router: (id: string): Key<RouterReport> => `${ROOT}/routers/${seg(id)}`,
  /** Certificates per app by id (Heroku's SNI endpoints); the router reads them all. */
  allCerts: (): Prefix<CertRecord> => `${ROOT}/certs/`,
  certs: (appId: string): Prefix<CertRecord> => `${ROOT}/certs/${seg(appId)}/`,
  cert: (appId: string, id: string): Key<CertRecord> => `${ROOT}/certs/${seg(appId)}/${seg(id)}`,
  routerSettings: (): Prefix<string> => `${ROOT}/router/`,
  routerSetting: (name: string): Key<string> => `${ROOT}/router/${seg(name)}`,
  /** Per-app routing (`redirect_https`), beside the other keys the router renders from. */
  allAppRouting: (): Prefix<AppRouting> => `${ROOT}/app-routing/`,
  appRouting: (appId: string): Key<AppRouting> => `${ROOT}/app-routing/${seg(appId)}`,
  /** Apps in maintenance mode (one small key each, beside the app record): the router watches them. */
  allMaintenance: (): Prefix<MaintenanceRecord> => `${ROOT}/maintenance/`,
  maintenance: (appId: string): Key<MaintenanceRecord> => `${ROOT}/maintenance/${seg(appId)}`,
  /** `{sha256}` of the cluster join token agents present (`berth agent --token`). */
  clusterToken: (): Key<ClusterTokenRecord> => `${ROOT}/cluster/token`,
  /** The cluster's own settings (etcd voters), written once by the first server. */
  clusterSettings: (): Key<ClusterSettingsRecord> => `${ROOT}/cluster/settings`,
  /** Each joined machine's credential (its hash and role). */
  machineCredentials: (): Prefix<MachineCredentialRecord> => `${ROOT}/cluster/machines/`,
  machineCredential: (machine: string): Key<MachineCredentialRecord> => `${ROOT}/cluster/machines/${seg(machine)}`,
  /** Live servers (control plane), under each server node's lease. */
  servers: (): Prefix<ServerRecord> => `${ROOT}/servers/`,
  server: (machine: string): Key<ServerRecord> => `${ROOT}/servers/${seg(machine)}`,
  /** Which machines hold a slug blob, by the blob's SHA-256. */
  allSlugCopies: (): Prefix<SlugCopyRecord> => `${ROOT}/slug-copies/`,
  slugCopies: (sha256: string): Prefix<SlugCopyRecord> => `${ROOT}/slug-copies/${seg(sha256)}/`,
  slugCopy: (sha256: string, machine: string): Key<SlugCopyRecord> => `${ROOT}/slug-copies/${seg(sha256)}/${seg(machine)}`,
  /** One-off dynos (`berth run`), under the lease of the controller node running them. */
  allRuns: (): Prefix<RunRecord> => `${ROOT}/runs/`,
  runs: (appId: string): Prefix<RunRecord> => `${ROOT}/runs/${seg(appId)}/`,
  run: (appId: string, dyno: string): Key<RunRecord> => `${ROOT}/runs/${seg(appId)}/${seg(dyno)}`,
  /** Slots 0..run.max-1 of an app's concurrent one-off dynos, each created with its run, under the same lease. */
  runSlots: (appId: string): Prefix<string> => `${ROOT}/run-slots/${seg(appId)}/`,
  runSlot: (appId: string, slot: number): Key<string> => `${ROOT}/run-slots/${seg(appId)}/${seg(String(slot))}`,
  /** Election candidates for a role; the value is the candidate's name (Election writes it). */
  leader: (role: string): Prefix<string> => `${ROOT}/leader/${seg(role)}`,
  /** The overlay network (src/network/): its range and backend, set once by the first node. */
  network: (): Prefix<unknown> => `${ROOT}/network/`,
  networkConfig: (): Key<NetworkConfigRecord> => `${ROOT}/network/config`,
  /** Each machine's subnet, named `a.b.c.d-len`, under the subnet's own long lease. */
  subnets: (): Prefix<SubnetRecord> => `${ROOT}/network/subnets/`,
  subnet: (cidr: string): Key<SubnetRecord> => `${ROOT}/network/subnets/${seg(cidr.replace('/', '-'))}`,
  /** Overlay addresses in use, by dyno; every machine's policy follows them. */
  ips: (): Prefix<IpRecord> => `${ROOT}/network/ips/`,
  ip: (address: string): Key<IpRecord> => `${ROOT}/network/ips/${seg(address)}`,
} as const;

/**
 * The record each builder's key holds, at run time: what the docs test compares with the Value
 * column of docs/keys.md. A builder added without an entry here fails to compile.
 */
export const KEY_RECORDS: { [K in keyof typeof keys]: { readonly name: string } } = {
  all: untypedJson,
  platform: codecs.platform,
  app: codecs.app,
  allAppKeys: untypedJson,
  appKeys: untypedJson,
  appNames: codecs.appId,
  appName: codecs.appId,
  config: codecs.config,
  appTags: codecs.tags,
  appLimits: codecs.limits,
  appUid: codecs.uid,
  uids: codecs.uidOwner,
  uid: codecs.uidOwner,
  collaborators: codecs.collaborator,
  collaborator: codecs.collaborator,
  builds: codecs.build,
  build: codecs.build,
  slugs: codecs.slug,
  slug: codecs.slug,
  hostnames: codecs.appId,
  hostname: codecs.appId,
  users: codecs.user,
  user: codecs.user,
  email: codecs.userId,
  token: codecs.token,
  sshKeys: codecs.sshKey,
  sshKey: codecs.sshKey,
  fingerprint: codecs.fingerprint,
  accessOf: codecs.access,
  access: codecs.access,
  registration: codecs.registration,
  bootstrapped: codecs.bootstrapped,
  logSession: codecs.logSession,
  releases: codecs.release,
  release: codecs.release,
  restarts: codecs.restarts,
  healthchecks: codecs.healthchecks,
  formation: codecs.formation,
  domains: codecs.domain,
  domain: codecs.domain,
  drains: codecs.drain,
  drain: codecs.drain,
  machines: codecs.machine,
  machine: codecs.machine,
  allUnits: codecs.unit,
  unitsOn: codecs.unit,
  unit: codecs.unit,
  statuses: codecs.status,
  appStatuses: codecs.status,
  status: codecs.status,
  allServices: codecs.endpoint,
  services: codecs.endpoint,
  service: codecs.endpoint,
  routers: codecs.router,
  router: codecs.router,
  allCerts: codecs.cert,
  certs: codecs.cert,
  cert: codecs.cert,
  routerSettings: codecs.routerSetting,
  routerSetting: codecs.routerSetting,
  allAppRouting: codecs.appRouting,
  appRouting: codecs.appRouting,
  allMaintenance: codecs.maintenance,
  maintenance: codecs.maintenance,
  clusterToken: codecs.clusterToken,
  clusterSettings: codecs.clusterSettings,
  machineCredentials: codecs.machineCredential,
  machineCredential: codecs.machineCredential,
  servers: codecs.server,
  server: codecs.server,
  allSlugCopies: codecs.slugCopy,
  slugCopies: codecs.slugCopy,
  slugCopy: codecs.slugCopy,
  allRuns: codecs.run,
  runs: codecs.run,
  run: codecs.run,
  runSlots: codecs.runSlot,
  runSlot: codecs.runSlot,
  leader: codecs.candidate,
  network: untypedJson,
  networkConfig: codecs.networkConfig,
  subnets: codecs.subnet,
  subnet: codecs.subnet,
  ips: codecs.ip,
  ip: codecs.ip,
};
