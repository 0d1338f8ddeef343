import { z } from 'zod';
import { int, num, stamp, str, strings } from './schema.js';
import { healthChecksSchema, type HealthChecks } from './health.js';

/** Records of apps, their releases and builds, and of users and their credentials. */

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
export const appSchema: z.ZodType<AppRecord> = z
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
  /**
   * Set once this old release's config copy was dropped (`config` is then empty): it is past the
   * retention count and its slug is gone, so it can never run again and cannot be rolled back to.
   */
  config_pruned?: boolean;
  created_at: string;
  updated_at: string;
}
export const releaseSchema: z.ZodType<ReleaseRecord> = z.looseObject({
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
  config_pruned: z.boolean().optional(),
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
export const formationSchema: z.ZodType<Formation> = z.record(str, z.looseObject({ id: str, type: str, quantity: int, size: str, ...stamp }));

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
  /** app.json's `healthchecks` in the built source (normalised by the builder). */
  healthchecks?: HealthChecks;
  created_at: string;
  updated_at: string;
}
export const slugSchema: z.ZodType<SlugRecord> = z.looseObject({
  id: str,
  app_id: str,
  checksum: z.string().regex(/^SHA256:[0-9a-f]{64}$/),
  size: num,
  process_types: strings,
  commit: str.nullable(),
  commit_description: str.nullable(),
  buildpack_provided_description: str.nullable(),
  stack: z.looseObject({ name: str }),
  // A malformed value must not make the slug unreadable: it reads as no checks.
  healthchecks: healthChecksSchema.optional().catch(undefined),
  ...stamp,
});
