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
  apps: () => `${ROOT}/apps/`,
  app: (app: string) => `${ROOT}/apps/${seg(app)}`,
  releases: (app: string) => `${ROOT}/apps/${seg(app)}/releases/`,
  release: (app: string, version: number) => `${ROOT}/apps/${seg(app)}/releases/${String(version).padStart(10, '0')}`,
  formation: (app: string) => `${ROOT}/apps/${seg(app)}/formation`,
  domains: (app: string) => `${ROOT}/apps/${seg(app)}/domains/`,
  domain: (app: string, host: string) => `${ROOT}/apps/${seg(app)}/domains/${seg(host)}`,
  machines: () => `${ROOT}/machines/`,
  machine: (id: string) => `${ROOT}/machines/${seg(id)}`,
  unitsOn: (machine: string) => `${ROOT}/units/${seg(machine)}/`,
  unit: (machine: string, unit: string) => `${ROOT}/units/${seg(machine)}/${seg(unit)}`,
  status: (unit: string) => `${ROOT}/status/${seg(unit)}`,
  services: (app: string) => `${ROOT}/services/${seg(app)}/`,
  service: (app: string, unit: string) => `${ROOT}/services/${seg(app)}/${seg(unit)}`,
  routers: () => `${ROOT}/routers/`,
  router: (id: string) => `${ROOT}/routers/${seg(id)}`,
  cert: (host: string) => `${ROOT}/certs/${seg(host)}`,
  routerSetting: (name: string) => `${ROOT}/router/${seg(name)}`,
  leader: (role: string) => `${ROOT}/leader/${seg(role)}`,
} as const;
