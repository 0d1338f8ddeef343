/** Records the controller keeps in the store (JSON values; see docs/keys.md). */

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

export interface FormationEntry {
  id: string;
  type: string;
  quantity: number;
  size: string;
  created_at: string;
  updated_at: string;
}

export type Formation = Record<string, FormationEntry>;

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

export interface SshKeyRecord {
  id: string;
  fingerprint: string;
  public_key: string;
  comment: string;
  created_at: string;
  updated_at: string;
}

/** What the platform was started with; the controller derives URLs from it. */
export interface PlatformSettings {
  /** Apps are served at <app>.<domain>. */
  domain: string;
  /** Base URL of the API (also serves git over HTTP). */
  apiUrl: string;
  /** The store URL handed to agents that join with the cluster token (`berth agent`). */
  storeUrl?: string;
}
