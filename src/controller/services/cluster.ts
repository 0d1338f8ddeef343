import { randomBytes, timingSafeEqual } from 'node:crypto';
import { tokenSecret } from '../../cluster/token.js';
import { get, put, putOp } from '../../domain/codec.js';
import { keys } from '../../domain/keys.js';
import { codecs, type MachineCredentialRecord } from '../../domain/records.js';
import type { Store } from '../../store/index.js';
import { hashToken, newToken } from './users.js';

/** Who an `/internal/` call comes from: a machine that joined, by the credential it was given. */
export interface MachineCaller {
  id: string;
  name: string;
  role: 'server' | 'agent';
}

function sameHash(hexA: string, hexB: string): boolean {
  const a = Buffer.from(hexA, 'hex');
  const b = Buffer.from(hexB, 'hex');
  return a.length === b.length && a.length > 0 && timingSafeEqual(a, b);
}

/** Machine credentials kept in memory (`Lookups`); undefined sends the caller to the store. */
export interface KnownMachines {
  machineCredential(id: string): MachineCredentialRecord | undefined;
}

const MACHINE_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/**
 * The cluster join token and the machine credentials it is traded for. Like API tokens, only
 * SHA-256s are in the store. The join token is one secret for the whole cluster (k3s's model) and
 * grants joining, nothing else: a machine that joins gets a credential of its own
 * (`<machine-id>.<secret>`), which is what its later `/internal/` calls carry and what can be
 * told apart by role (server or agent).
 */
export class ClusterTokens {
  constructor(
    private readonly store: Store,
    private readonly known?: KnownMachines,
  ) {}

  /** Makes the token if the cluster has none; returns it only to the caller that made it. */
  async create(given?: string): Promise<string | undefined> {
    const token = given ?? newToken();
    const r = await this.store.txn({
      compare: [{ key: keys.clusterToken(), target: 'create', op: '=', value: 0 }],
      success: [putOp(keys.clusterToken(), codecs.clusterToken, { sha256: hashToken(tokenSecret(token)), created_at: new Date().toISOString() })],
    });
    return r.succeeded ? token : undefined;
  }

  /** Replaces the join token's secret: the old one stops working at once; credentials already issued stay valid. */
  async rotate(given?: string): Promise<string> {
    const secret = given ?? newToken();
    await put(this.store, keys.clusterToken(), codecs.clusterToken, { sha256: hashToken(secret), created_at: new Date().toISOString() });
    return secret;
  }

  /** Whether a join token (`B10…::secret` or the bare secret) is the cluster's. */
  async verify(token: string | undefined): Promise<boolean> {
    if (!token) return false;
    const rec = await get(this.store, keys.clusterToken(), codecs.clusterToken);
    return rec !== undefined && sameHash(rec.value.sha256, hashToken(tokenSecret(token)));
  }

  /** Issues (or replaces) a machine's credential; returns it once. */
  async issue(machine: string, name: string, role: MachineCaller['role']): Promise<string> {
    if (!MACHINE_ID.test(machine)) throw new Error(`machine id "${machine}" is not a valid id`);
    const credential = `${machine}.${randomBytes(24).toString('hex')}`;
    await put(this.store, keys.machineCredential(machine), codecs.machineCredential, { sha256: hashToken(credential), role, name, created_at: new Date().toISOString() });
    return credential;
  }

  /** The machine a credential belongs to, or undefined: from memory, else one store read by the id it names. */
  async authenticate(credential: string | undefined): Promise<MachineCaller | undefined> {
    if (!credential) return undefined;
    const dot = credential.lastIndexOf('.');
    const id = credential.slice(0, dot);
    if (dot <= 0 || !MACHINE_ID.test(id)) return undefined;
    const hash = hashToken(credential);
    const cached = this.known?.machineCredential(id);
    // A credential issued elsewhere a moment ago is not in memory yet: the store decides then.
    const rec = cached && sameHash(cached.sha256, hash) ? cached : (await get(this.store, keys.machineCredential(id), codecs.machineCredential))?.value;
    if (!rec || !sameHash(rec.sha256, hash)) return undefined;
    return { id, name: rec.name, role: rec.role };
  }

  /** Forgets a machine's credential (`berth nodes:remove`). */
  async revoke(machine: string): Promise<void> {
    await this.store.delete(keys.machineCredential(machine));
  }
}
