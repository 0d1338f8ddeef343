import { z } from 'zod';
import { int, num, stamp, str, strings } from './schema.js';

/** Records of the cluster at work: machines, units, dynos, endpoints, routers, logs, certificates. */

// ─── machines, units, dynos, endpoints, routers ─────────────────────────────────────────────────

/** A machine as its agent registers it at /berth/machines/<id> (under the agent's lease). */
export interface MachineInfo {
  id: string;
  name: string;
  /** Its public IP: where overlay peers reach it (its subnet lease's public_ip). */
  address: string;
  tags: Record<string, string>;
  capacity: { memoryBytes: number; cpus: number };
}
export type MachineRecord = MachineInfo & {
  agent_version: string;
  registered_at?: string;
  /** Host ports for web dynos, from before dynos had overlay addresses: read, never written. */
  ports?: { from: number; to: number };
};
export const machineSchema: z.ZodType<MachineRecord> = z.looseObject({
  id: str,
  name: str,
  address: str,
  tags: strings,
  capacity: z.looseObject({ memoryBytes: num, cpus: num }),
  ports: z.looseObject({ from: int, to: int }).optional(),
  agent_version: str,
  registered_at: str.optional(),
});

/**
 * A unit: one dyno the scheduler wants somewhere, as written at /berth/units/<machine>/<key>.
 * Shared by the scheduler (which writes it) and agents (which run it).
 */
export interface UnitSpec {
  /** `<app-name>.<type>.<n>` */
  name: string;
  appId: string;
  appName: string;
  type: string;
  index: number;
  /** Release version the unit runs; two releases of one unit coexist during a rollout. */
  release: number;
  memoryBytes: number;
  /** Writable space (`limits:set TYPE.disk=`); absent means the runtime's default (1 GiB). */
  diskBytes?: number;
  /** Restart generation (`ps:restart`): same release, new dynos. Absent means 0. */
  restart?: number;
  /** The app's placement tags when the unit was placed. */
  tags?: Record<string, string>;
}
export const unitSchema: z.ZodType<UnitSpec> = z.looseObject({ name: str, appId: str, appName: str, type: str, index: int, release: int, memoryBytes: num, diskBytes: int.optional(), restart: int.optional(), tags: strings.optional() });

export type DynoState = 'pending' | 'starting' | 'up' | 'crashed';

/** What `/berth/status/<unit>` says about a formation dyno (see `dynoStatus` in units.ts). */
export interface StatusRecord {
  app_id: string;
  unit: string;
  /** `web.1` */
  name: string;
  type: string;
  state: DynoState;
  reason: string | null;
  restarts: number;
  command: string;
  /** The id is absent on a pending report, which the scheduler writes before any agent has it. */
  release: { id?: string; version: number };
  machine: string | null;
  port: number | null;
  /** The dyno's overlay address (what its endpoint names); absent from reports written before there was one. */
  address?: string | null;
  created_at?: string;
  updated_at?: string;
}
export const statusSchema: z.ZodType<StatusRecord> = z.looseObject({
  app_id: str,
  unit: str,
  name: str,
  type: str,
  state: z.enum(['pending', 'starting', 'up', 'crashed']),
  reason: str.nullable(),
  restarts: int,
  command: str,
  release: z.looseObject({ id: str.optional(), version: int }),
  machine: str.nullable(),
  port: int.nullable(),
  address: str.nullable().optional(),
  created_at: str.optional(),
  updated_at: str.optional(),
});

/** `/berth/routers/<id>`: the store revision a router has fully applied (under its lease). */
export interface RouterReport {
  id: string;
  revision: number;
  http_port: number;
  https_port: number | null;
  updated_at: string;
}
export const routerSchema: z.ZodType<RouterReport> = z.looseObject({ id: str, revision: int, http_port: int, https_port: int.nullable(), updated_at: str });

/** A one-off dyno (`berth run`), under the lease of the controller node running it. */
export interface RunRecord {
  app_id: string;
  name: string;
  type: 'run';
  /** starting: waiting for its client to attach; stopping: someone asked it to stop. */
  state: 'starting' | 'up' | 'stopping';
  command: string;
  size: string;
  release: { id: string; version: number };
  /** The controller node running it. */
  node: string;
  user_id: string;
  attach: boolean;
  created_at: string;
  updated_at: string;
}
export const runSchema: z.ZodType<RunRecord> = z.looseObject({
  app_id: str,
  name: str,
  type: z.literal('run'),
  state: z.enum(['starting', 'up', 'stopping']),
  command: str,
  size: str,
  release: z.looseObject({ id: str, version: int }),
  node: str,
  user_id: str,
  attach: z.boolean(),
  ...stamp,
});

// ─── logs, certificates, routing ────────────────────────────────────────────────────────────────

export interface LogSession {
  app_id: string;
  /** Who opened it: the stream re-checks that this user can still see the app. */
  user_id: string;
  lines: number;
  tail: boolean;
  source?: string;
  dyno?: string;
}

/** A log drain as stored under `/berth/apps/<app>/drains/<id>`. */
export interface DrainRecord {
  id: string;
  url: string;
  /** Sent as the syslog HOSTNAME of every frame, as Heroku does, so a receiver can tell drains apart. */
  token: string;
  /** Added by an admin to an internal address (loopback, link-local): only then may it go there. */
  internal?: boolean;
  created_at: string;
  updated_at: string;
}

export interface SslCertInfo {
  /** DNS names the certificate is valid for (its SANs, else its CN), lower case; may hold wildcards. */
  cert_domains: string[];
  starts_at: string;
  expires_at: string;
  issuer: string;
  subject: string;
  /** Signed, through the given chain, by a root CA Node trusts. */
  'ca_signed?': boolean;
  /** Signed by its own key. */
  'self_signed?': boolean;
}

export interface CertRecord {
  id: string;
  name: string;
  app_id: string;
  /** PEM, leaf first. */
  certificate_chain: string;
  /** PEM; never returned by the API. */
  private_key: string;
  ssl_cert: SslCertInfo;
  created_at: string;
  updated_at: string;
}
export const certSchema: z.ZodType<CertRecord> = z.looseObject({
  id: str,
  name: str,
  app_id: str,
  certificate_chain: str,
  private_key: str,
  ssl_cert: z.looseObject({ cert_domains: z.array(str), starts_at: str, expires_at: str, issuer: str, subject: str, 'ca_signed?': z.boolean(), 'self_signed?': z.boolean() }),
  ...stamp,
});

/** Per-app routing, stored as JSON at /berth/app-routing/<app>. */
export interface AppRouting {
  /** Plain HTTP requests to a hostname that has a certificate are redirected to HTTPS. */
  redirect_https: boolean;
}

/** An app in maintenance mode, stored at /berth/maintenance/<app> while it is on. */
export interface MaintenanceRecord {
  /** When it was turned on. */
  since: string;
}

// ─── servers, machine credentials, slug copies (issue 12) ───────────────────────────────────────

/**
 * A server (`berth up` with the control plane) as it registers at /berth/servers/<machine>, under
 * its node's lease: where peers and agents reach its API, and its place in etcd.
 */
export interface ServerRecord {
  id: string;
  name: string;
  /** The address other machines reach it at (`--advertise`). */
  address: string;
  /** Its API (and git over HTTP), as other machines reach it. */
  api_url: string;
  /** Its TLS join listener (`https://address:port`), whose certificate the cluster CA signs. */
  join_url: string;
  /** Its etcd member, or null for a server beyond the cluster's voters. */
  etcd: { name: string; client_url: string; peer_url: string } | null;
  started_at: string;
}
export const serverSchema: z.ZodType<ServerRecord> = z.looseObject({
  id: str,
  name: str,
  address: str,
  api_url: str,
  join_url: str,
  etcd: z.looseObject({ name: str, client_url: str, peer_url: str }).nullable(),
  started_at: str,
});

/**
 * A machine's own credential, issued when it joined (`/berth/cluster/machines/<machine>`): only
 * its SHA-256 is stored. It authenticates the machine's calls to `/internal/` routes; its role
 * says which.
 */
export interface MachineCredentialRecord {
  sha256: string;
  role: 'server' | 'agent';
  name: string;
  created_at: string;
}
export const machineCredentialSchema: z.ZodType<MachineCredentialRecord> = z.looseObject({
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  role: z.enum(['server', 'agent']),
  name: str,
  created_at: str,
});

/** `/berth/slug-copies/<sha256>/<machine>`: the machine holds this slug blob, checked against its SHA-256. */
export interface SlugCopyRecord {
  machine: string;
  size: number;
  at: string;
}
export const slugCopySchema: z.ZodType<SlugCopyRecord> = z.looseObject({ machine: str, size: int, at: str });

/** `/berth/cluster/settings`: what the first server was started with for the whole cluster. */
export interface ClusterSettingsRecord {
  /** etcd voters wanted: 3 (one machine may fail) or 5 (two). */
  etcd_voters: 3 | 5;
  created_at: string;
}
export const clusterSettingsSchema: z.ZodType<ClusterSettingsRecord> = z.looseObject({ etcd_voters: z.union([z.literal(3), z.literal(5)]), created_at: str });
