/**
 * The store key layout, in one place. docs/keys.md is the human-readable twin of this file and says
 * who writes and who reads each key; change both together.
 */
export const ROOT = '/berth';

const seg = (s: string): string => {
  if (s.length === 0 || s.includes('/')) throw new Error(`invalid key segment "${s}"`);
  return s;
};

export const keys = {
  /** Written once by `berth up`: what this platform is (store format, creation time). */
  platform: () => `${ROOT}/platform`,
  /** Apps are keyed by their immutable id, so a rename rewrites two small keys, not a subtree. */
  app: (app: string) => `${ROOT}/apps/${seg(app)}`,
  appNames: () => `${ROOT}/app-names/`,
  appName: (name: string) => `${ROOT}/app-names/${seg(name)}`,
  config: (app: string) => `${ROOT}/apps/${seg(app)}/config`,
  /** Placement tags (`berth tags:set`) and per-type memory limits (`berth limits:set`). */
  appTags: (app: string) => `${ROOT}/apps/${seg(app)}/tags`,
  appLimits: (app: string) => `${ROOT}/apps/${seg(app)}/limits`,
  collaborators: (app: string) => `${ROOT}/apps/${seg(app)}/collaborators/`,
  collaborator: (app: string, user: string) => `${ROOT}/apps/${seg(app)}/collaborators/${seg(user)}`,
  builds: (app: string) => `${ROOT}/apps/${seg(app)}/builds/`,
  build: (app: string, build: string) => `${ROOT}/apps/${seg(app)}/builds/${seg(build)}`,
  slugs: () => `${ROOT}/slugs/`,
  slug: (slug: string) => `${ROOT}/slugs/${seg(slug)}`,
  hostname: (host: string) => `${ROOT}/domains/${seg(host)}`,
  users: () => `${ROOT}/users/`,
  user: (id: string) => `${ROOT}/users/${seg(id)}`,
  email: (email: string) => `${ROOT}/emails/${seg(email)}`,
  token: (sha256: string) => `${ROOT}/tokens/${seg(sha256)}`,
  sshKeys: (user: string) => `${ROOT}/ssh-keys/${seg(user)}/`,
  sshKey: (user: string, id: string) => `${ROOT}/ssh-keys/${seg(user)}/${seg(id)}`,
  fingerprint: (sha256: string) => `${ROOT}/fingerprints/${seg(sha256)}`,
  accessOf: (user: string) => `${ROOT}/access/${seg(user)}/`,
  access: (user: string, app: string) => `${ROOT}/access/${seg(user)}/${seg(app)}`,
  setting: (name: string) => `${ROOT}/settings/${seg(name)}`,
  logSession: (id: string) => `${ROOT}/log-sessions/${seg(id)}`,
  releases: (app: string) => `${ROOT}/apps/${seg(app)}/releases/`,
  release: (app: string, version: number) => `${ROOT}/apps/${seg(app)}/releases/${String(version).padStart(10, '0')}`,
  /** Restart counters per type and dyno (`ps:restart`): a bump rolls the dynos over. */
  restarts: (app: string) => `${ROOT}/apps/${seg(app)}/restarts`,
  formation: (app: string) => `${ROOT}/apps/${seg(app)}/formation`,
  domains: (app: string) => `${ROOT}/apps/${seg(app)}/domains/`,
  domain: (app: string, host: string) => `${ROOT}/apps/${seg(app)}/domains/${seg(host)}`,
  drains: (app: string) => `${ROOT}/apps/${seg(app)}/drains/`,
  drain: (app: string, id: string) => `${ROOT}/apps/${seg(app)}/drains/${seg(id)}`,
  machines: () => `${ROOT}/machines/`,
  machine: (id: string) => `${ROOT}/machines/${seg(id)}`,
  unitsOn: (machine: string) => `${ROOT}/units/${seg(machine)}/`,
  unit: (machine: string, unit: string) => `${ROOT}/units/${seg(machine)}/${seg(unit)}`,
  statuses: () => `${ROOT}/status/`,
  status: (unit: string) => `${ROOT}/status/${seg(unit)}`,
  allServices: () => `${ROOT}/services/`,
  services: (app: string) => `${ROOT}/services/${seg(app)}/`,
  service: (app: string, unit: string) => `${ROOT}/services/${seg(app)}/${seg(unit)}`,
  routers: () => `${ROOT}/routers/`,
  router: (id: string) => `${ROOT}/routers/${seg(id)}`,
  /** Certificates per app by id (Heroku's SNI endpoints); the router reads them all. */
  allCerts: () => `${ROOT}/certs/`,
  certs: (app: string) => `${ROOT}/certs/${seg(app)}/`,
  cert: (app: string, id: string) => `${ROOT}/certs/${seg(app)}/${seg(id)}`,
  routerSettings: () => `${ROOT}/router/`,
  routerSetting: (name: string) => `${ROOT}/router/${seg(name)}`,
  /** Per-app routing (`redirect_https`), beside the other keys the router renders from. */
  allAppRouting: () => `${ROOT}/app-routing/`,
  appRouting: (app: string) => `${ROOT}/app-routing/${seg(app)}`,
  /** `{sha256}` of the cluster join token agents present (`berth agent --token`). */
  clusterToken: () => `${ROOT}/cluster/token`,
  /** One-off dynos (`berth run`), under the lease of the controller node running them. */
  allRuns: () => `${ROOT}/runs/`,
  runs: (app: string) => `${ROOT}/runs/${seg(app)}/`,
  run: (app: string, dyno: string) => `${ROOT}/runs/${seg(app)}/${seg(dyno)}`,
  leader: (role: string) => `${ROOT}/leader/${seg(role)}`,
} as const;
