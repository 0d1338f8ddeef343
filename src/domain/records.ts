import { z } from 'zod';
import { jsonCodec, textCodec, type Codec } from './codec.js';

/**
 * Every record that crosses components through the store: one named type and one codec each.
 * Schemas check what readers rely on and keep unknown fields (`looseObject`), so a record written
 * by a newer node survives a read-modify-write by an older one. docs/keys.md names each record in
 * its Value column; test/domain/keys.test.ts holds the two together.
 */

const str = z.string();
const num = z.number();
const int = z.number().int();
const strings = z.record(z.string(), z.string());
const stamp = { created_at: str, updated_at: str };

// ─── apps, releases, formation ──────────────────────────────────────────────────────────────────

export interface AppRecord {
  id: string;
  name: string;
  owner_id: string;
  created_at: string;
  updated_at: string;
  /** Version of the newest release; every release bumps it in the same transaction. */
  release_version: number;
  /**
   * Version of the release that should run: the newest one that succeeded. A release whose
   * release phase is pending or failed does not replace it.
   */
  current_version: number;
  released_at: string | null;
  maintenance: boolean;
}
// Records from before `current_version` existed read as their newest release being current.
const appSchema: z.ZodType<AppRecord> = z
  .looseObject({ id: str, name: str, owner_id: str, ...stamp, release_version: int, current_version: int.optional(), released_at: str.nullable(), maintenance: z.boolean() })
  .transform((a) => ({ ...a, current_version: a.current_version ?? a.release_version }));

export type ReleaseStatus = 'pending' | 'succeeded' | 'failed';

export interface ReleaseRecord {
  id: string;
  version: number;
  /** Null until the first build produces a slug. */
  slug_id: string | null;
  /** A full copy of the config at this release (Deis #4979: rollback restores config too). */
  config: Record<string, string>;
  /** Process types the slug defines (from the Procfile), empty before the first build. */
  process_types: Record<string, string>;
  description: string;
  user_id: string;
  user_email: string;
  status: ReleaseStatus;
  /** Why a release failed (its release phase, or a rollout whose dynos never came up). */
  failure_reason?: string;
  created_at: string;
  updated_at: string;
}
const releaseSchema: z.ZodType<ReleaseRecord> = z.looseObject({
  id: str,
  version: int,
  slug_id: str.nullable(),
  config: strings,
  process_types: strings,
  description: str,
  user_id: str,
  user_email: str,
  status: z.enum(['pending', 'succeeded', 'failed']),
  failure_reason: str.optional(),
  ...stamp,
});

export interface FormationEntry {
  id: string;
  type: string;
  quantity: number;
  size: string;
  created_at: string;
  updated_at: string;
}
export type Formation = Record<string, FormationEntry>;
const formationSchema: z.ZodType<Formation> = z.record(str, z.looseObject({ id: str, type: str, quantity: int, size: str, ...stamp }));

/** `{web: 2, "web.1": 1}`: how often each type and each dyno was restarted (`ps:restart`). */
export type Restarts = Record<string, number>;
/** Memory per process type as the user typed it (`"512M"`) or in bytes. */
export type MemoryLimits = Record<string, string | number>;

export interface DomainRecord {
  id: string;
  hostname: string;
  kind: 'heroku' | 'custom';
  created_at: string;
  updated_at: string;
}

export interface CollaboratorRecord {
  id: string;
  user_id: string;
  created_at: string;
  updated_at: string;
}

export interface AccessRecord {
  role: 'owner' | 'collaborator';
}

// ─── users and credentials ──────────────────────────────────────────────────────────────────────

export interface UserRecord {
  id: string;
  email: string;
  admin: boolean;
  created_at: string;
  updated_at: string;
}

export interface TokenRecord {
  user_id: string;
  created_at: string;
}

export interface SshKeyRecord {
  id: string;
  fingerprint: string;
  public_key: string;
  comment: string;
  created_at: string;
  updated_at: string;
}

export interface FingerprintRecord {
  user_id: string;
  key_id: string;
}

export interface BootstrapMarker {
  user_id: string;
  at: string;
}

/** `{sha256}` of the cluster join token; the token itself never enters the store. */
export interface ClusterTokenRecord {
  sha256: string;
  created_at: string;
}

/** `/berth/apps/<app>/uid`: the unprivileged uid an app's builds and dynos run as. */
export interface UidRecord {
  uid: number;
}

/** `/berth/uids/<uid>`: which app holds a uid (unique by a create-only txn). */
export interface UidOwner {
  app_id: string;
}

export interface PlatformRecord {
  created_at: string;
}

// ─── builds and slugs ───────────────────────────────────────────────────────────────────────────

export interface BuildRecord {
  id: string;
  app: { id: string };
  status: 'pending' | 'succeeded' | 'failed';
  source_blob: { checksum: string | null; url: string | null; version: string | null };
  slug: { id: string } | null;
  release: { id: string } | null;
  buildpacks: { url: string; name: string }[];
  output: string;
  output_stream_url: string | null;
  stack: string;
  user: { id: string; email: string };
  created_at: string;
  updated_at: string;
}

export interface SlugRecord {
  id: string;
  app_id: string;
  /** `SHA256:<hex>` of the tar.gz; also its file name in the slug store. */
  checksum: string;
  size: number;
  process_types: Record<string, string>;
  commit: string | null;
  commit_description: string | null;
  buildpack_provided_description: string | null;
  stack: { name: string };
  created_at: string;
  updated_at: string;
}
const slugSchema: z.ZodType<SlugRecord> = z.looseObject({
  id: str,
  app_id: str,
  checksum: z.string().regex(/^SHA256:[0-9a-f]{64}$/),
  size: num,
  process_types: strings,
  commit: str.nullable(),
  commit_description: str.nullable(),
  buildpack_provided_description: str.nullable(),
  stack: z.looseObject({ name: str }),
  ...stamp,
});

// ─── machines, units, dynos, endpoints, routers ─────────────────────────────────────────────────

/** A machine as its agent registers it at /berth/machines/<id> (under the agent's lease). */
export interface MachineInfo {
  id: string;
  name: string;
  address: string;
  tags: Record<string, string>;
  capacity: { memoryBytes: number; cpus: number };
  /** Host ports the agent hands to web dynos. */
  ports: { from: number; to: number };
}
export type MachineRecord = MachineInfo & { agent_version: string; registered_at?: string };
const machineSchema: z.ZodType<MachineRecord> = z.looseObject({
  id: str,
  name: str,
  address: str,
  tags: strings,
  capacity: z.looseObject({ memoryBytes: num, cpus: num }),
  ports: z.looseObject({ from: int, to: int }),
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
  /** Restart generation (`ps:restart`): same release, new dynos. Absent means 0. */
  restart?: number;
  /** The app's placement tags when the unit was placed. */
  tags?: Record<string, string>;
}
const unitSchema: z.ZodType<UnitSpec> = z.looseObject({ name: str, appId: str, appName: str, type: str, index: int, release: int, memoryBytes: num, restart: int.optional(), tags: strings.optional() });

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
  created_at?: string;
  updated_at?: string;
}
const statusSchema: z.ZodType<StatusRecord> = z.looseObject({
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
const routerSchema: z.ZodType<RouterReport> = z.looseObject({ id: str, revision: int, http_port: int, https_port: int.nullable(), updated_at: str });

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
const runSchema: z.ZodType<RunRecord> = z.looseObject({
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
const certSchema: z.ZodType<CertRecord> = z.looseObject({
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

// ─── codecs ─────────────────────────────────────────────────────────────────────────────────────

/** Ids and names are single key segments; a value that is not one could not name a key. */
const segment = (v: string): boolean => v.length > 0 && v.length <= 256 && !v.includes('/');

export const codecs = {
  platform: jsonCodec<PlatformRecord>('PlatformRecord', z.looseObject({ created_at: str })),
  app: jsonCodec('AppRecord', appSchema),
  appId: textCodec('AppId', segment),
  config: jsonCodec<Record<string, string>>('ConfigVars', strings),
  uid: jsonCodec<UidRecord>('UidRecord', z.looseObject({ uid: int.positive() })),
  uidOwner: jsonCodec<UidOwner>('UidOwner', z.looseObject({ app_id: str })),
  tags: jsonCodec<Record<string, string>>('PlacementTags', strings),
  limits: jsonCodec<MemoryLimits>('MemoryLimits', z.record(str, z.union([str, num]))),
  restarts: jsonCodec<Restarts>('Restarts', z.record(str, int)),
  release: jsonCodec('ReleaseRecord', releaseSchema),
  formation: jsonCodec('Formation', formationSchema),
  domain: jsonCodec<DomainRecord>('DomainRecord', z.looseObject({ id: str, hostname: str, kind: z.enum(['heroku', 'custom']), ...stamp })),
  collaborator: jsonCodec<CollaboratorRecord>('CollaboratorRecord', z.looseObject({ id: str, user_id: str, ...stamp })),
  access: jsonCodec<AccessRecord>('AccessRecord', z.looseObject({ role: z.enum(['owner', 'collaborator']) })),
  drain: jsonCodec<DrainRecord>('DrainRecord', z.looseObject({ id: str, url: str, token: str, internal: z.boolean().optional(), ...stamp })),
  build: jsonCodec<BuildRecord>(
    'BuildRecord',
    z.looseObject({
      id: str,
      app: z.looseObject({ id: str }),
      status: z.enum(['pending', 'succeeded', 'failed']),
      source_blob: z.looseObject({ checksum: str.nullable(), url: str.nullable(), version: str.nullable() }),
      slug: z.looseObject({ id: str }).nullable(),
      release: z.looseObject({ id: str }).nullable(),
      buildpacks: z.array(z.looseObject({ url: str, name: str })),
      output: str,
      output_stream_url: str.nullable(),
      stack: str,
      user: z.looseObject({ id: str, email: str }),
      ...stamp,
    }),
  ),
  slug: jsonCodec('SlugRecord', slugSchema),
  user: jsonCodec<UserRecord>('UserRecord', z.looseObject({ id: str, email: str, admin: z.boolean(), ...stamp })),
  userId: textCodec('UserId', segment),
  token: jsonCodec<TokenRecord>('TokenRecord', z.looseObject({ user_id: str, created_at: str })),
  sshKey: jsonCodec<SshKeyRecord>('SshKeyRecord', z.looseObject({ id: str, fingerprint: str, public_key: str, comment: str, ...stamp })),
  fingerprint: jsonCodec<FingerprintRecord>('FingerprintRecord', z.looseObject({ user_id: str, key_id: str })),
  bootstrapped: jsonCodec<BootstrapMarker>('BootstrapMarker', z.looseObject({ user_id: str, at: str })),
  registration: textCodec('Registration', (v) => v === 'open' || v === 'closed'),
  logSession: jsonCodec<LogSession>('LogSession', z.looseObject({ app_id: str, user_id: str, lines: int, tail: z.boolean(), source: str.optional(), dyno: str.optional() })),
  machine: jsonCodec('MachineRecord', machineSchema),
  unit: jsonCodec('UnitSpec', unitSchema),
  status: jsonCodec('StatusRecord', statusSchema),
  /** `host:port` of a healthy web dyno. */
  endpoint: textCodec('Endpoint', (v) => /^[A-Za-z0-9.:[\]-]+:\d{1,5}$/.test(v)),
  router: jsonCodec('RouterReport', routerSchema),
  cert: jsonCodec('CertRecord', certSchema),
  /** nginx syntax, checked again where it is rendered. */
  routerSetting: textCodec('RouterSetting'),
  appRouting: jsonCodec<AppRouting>('AppRouting', z.looseObject({ redirect_https: z.boolean() })),
  clusterToken: jsonCodec<ClusterTokenRecord>('ClusterTokenRecord', z.looseObject({ sha256: z.string().regex(/^[0-9a-f]{64}$/), created_at: str })),
  run: jsonCodec('RunRecord', runSchema),
  /** An election candidate's name (a node id). */
  candidate: textCodec('Candidate'),
} as const satisfies Record<string, Codec<unknown>>;
