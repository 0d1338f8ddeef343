import { z } from 'zod';
import { jsonCodec, textCodec, type Codec } from './codec.js';
import { appSchema, formationSchema, releaseSchema, slugSchema } from './records/apps.js';
import type { AccessRecord, BootstrapMarker, BuildRecord, ClusterTokenRecord, CollaboratorRecord, DomainRecord, FingerprintRecord, MemoryLimits, PlatformRecord, Restarts, SshKeyRecord, TokenRecord, UidOwner, UidRecord, UserRecord } from './records/apps.js';
import { certSchema, clusterSettingsSchema, machineCredentialSchema, machineSchema, routerSchema, runSchema, serverSchema, slugCopySchema, statusSchema, unitSchema } from './records/cluster.js';
import type { AppRouting, DrainRecord, LogSession, MaintenanceRecord } from './records/cluster.js';
import { ipSchema, networkConfigSchema, subnetSchema } from './records/network.js';
import { healthChecksSchema } from './records/health.js';
import { int, num, stamp, str, strings } from './records/schema.js';

/**
 * Every record that crosses components through the store: one named type and one codec each.
 * Schemas check what readers rely on and keep unknown fields (`looseObject`), so a record written
 * by a newer node survives a read-modify-write by an older one. docs/keys.md names each record in
 * its Value column; test/domain/keys.test.ts holds the two together.
 */

export type * from './records/apps.js';
export type * from './records/cluster.js';
export type * from './records/network.js';
export type * from './records/health.js';

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
  maintenance: jsonCodec<MaintenanceRecord>('MaintenanceRecord', z.looseObject({ since: str })),
  clusterToken: jsonCodec<ClusterTokenRecord>('ClusterTokenRecord', z.looseObject({ sha256: z.string().regex(/^[0-9a-f]{64}$/), created_at: str })),
  run: jsonCodec('RunRecord', runSchema),
  /** The one-off dyno (`run.N`) holding a slot of its app's `run.max`. */
  runSlot: textCodec('RunSlot', (v) => /^run\.\d{1,9}$/.test(v)),
  server: jsonCodec('ServerRecord', serverSchema),
  clusterSettings: jsonCodec('ClusterSettingsRecord', clusterSettingsSchema),
  machineCredential: jsonCodec('MachineCredentialRecord', machineCredentialSchema),
  slugCopy: jsonCodec('SlugCopyRecord', slugCopySchema),
  /** An election candidate's name (a node id). */
  candidate: textCodec('Candidate'),
  networkConfig: jsonCodec('NetworkConfigRecord', networkConfigSchema),
  subnet: jsonCodec('SubnetRecord', subnetSchema),
  ip: jsonCodec('IpRecord', ipSchema),
  /** Process type → HTTP health checks, normalised (`normalizeHealthCheck`). */
  healthchecks: jsonCodec('HealthChecks', healthChecksSchema),
} as const satisfies Record<string, Codec<unknown>>;
