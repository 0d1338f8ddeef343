/** Records the controller keeps in the store: defined once, with their codecs, in src/domain/records.ts. */
export type { AppRecord, CollaboratorRecord, DomainRecord, Formation, FormationEntry, ReleaseRecord, ReleaseStatus, SshKeyRecord, TokenRecord, UserRecord } from '../../domain/records.js';

/** What the platform was started with; the controller derives URLs from it. */
export interface PlatformSettings {
  /** Apps are served at <app>.<domain>. */
  domain: string;
  /** Base URL of the API (also serves git over HTTP). */
  apiUrl: string;
  /** The store URL handed to agents that join with the cluster token (`berth agent`). */
  storeUrl?: string;
}
