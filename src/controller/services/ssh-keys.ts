import { createHash, randomUUID } from 'node:crypto';
import ssh2 from 'ssh2';
import { conflict, invalid, notFound } from '../../domain/errors.js';
import { deleteOp as del, list, putOp } from '../../domain/codec.js';
import { keys } from '../../domain/keys.js';
import { codecs } from '../../domain/records.js';
import type { Store } from '../../store/index.js';
import type { SshKeyRecord, UserRecord } from './types.js';

const ACCEPTED = new Set(['ssh-ed25519', 'ssh-rsa', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521']);
const MIN_RSA_BITS = 2048;

/** Bits in an RSA public key's modulus, read from the SSH wire blob (string type, mpint e, mpint n). */
function rsaBits(blob: Buffer): number {
  let off = 0;
  const next = (): Buffer => {
    const len = blob.readUInt32BE(off);
    const out = blob.subarray(off + 4, off + 4 + len);
    off += 4 + len;
    return out;
  };
  next();
  next();
  const n = next();
  let i = 0;
  while (i < n.length && n[i] === 0) i++;
  const first = n[i] ?? 0;
  return (n.length - i - 1) * 8 + (first === 0 ? 0 : Math.floor(Math.log2(first)) + 1);
}

export interface ParsedKey {
  type: string;
  comment: string;
  /** OpenSSH's SHA256 fingerprint, as `ssh-keygen -l` prints it. */
  fingerprint: string;
  /** Hex SHA-256 of the key blob: the store index. */
  digest: string;
  publicKey: string;
}

export function parsePublicKey(text: string): ParsedKey {
  const trimmed = text.trim();
  const parsed = ssh2.utils.parseKey(trimmed);
  if (parsed instanceof Error || Array.isArray(parsed)) throw invalid(`Invalid SSH public key: ${parsed instanceof Error ? parsed.message : 'several keys given'}.`);
  if (!ACCEPTED.has(parsed.type)) throw invalid(`SSH key type ${parsed.type} is not accepted; use ed25519, ecdsa or rsa (≥ ${MIN_RSA_BITS} bits).`);
  if (parsed.isPrivateKey()) throw invalid('That is a private key; add the public key (the .pub file).');
  const blob = parsed.getPublicSSH();
  if (parsed.type === 'ssh-rsa') {
    const bits = rsaBits(blob);
    if (bits < MIN_RSA_BITS) throw invalid(`RSA key is ${bits} bits; at least ${MIN_RSA_BITS} are required.`);
  }
  const sha = createHash('sha256').update(blob).digest();
  return {
    type: parsed.type,
    comment: parsed.comment || trimmed.split(/\s+/)[2] || '',
    fingerprint: `SHA256:${sha.toString('base64').replace(/=+$/, '')}`,
    digest: sha.toString('hex'),
    publicKey: `${parsed.type} ${blob.toString('base64')}${parsed.comment ? ` ${parsed.comment}` : ''}`,
  };
}

/** A user's SSH keys; a key belongs to one user platform-wide, since git over SSH identifies by key. */
export class SshKeys {
  constructor(private readonly store: Store) {}

  async list(user: UserRecord): Promise<SshKeyRecord[]> {
    return (await list(this.store, keys.sshKeys(user.id), codecs.sshKey)).map((e) => e.value);
  }

  async add(user: UserRecord, publicKey: string): Promise<SshKeyRecord> {
    const k = parsePublicKey(publicKey);
    const now = new Date().toISOString();
    const record: SshKeyRecord = { id: randomUUID(), fingerprint: k.fingerprint, public_key: k.publicKey, comment: k.comment, created_at: now, updated_at: now };
    const r = await this.store.txn({
      compare: [{ key: keys.fingerprint(k.digest), target: 'create', op: '=', value: 0 }],
      success: [putOp(keys.sshKey(user.id, record.id), codecs.sshKey, record), putOp(keys.fingerprint(k.digest), codecs.fingerprint, { user_id: user.id, key_id: record.id })],
    });
    if (!r.succeeded) throw conflict(`The key ${k.fingerprint} is already registered.`);
    return record;
  }

  async remove(user: UserRecord, idOrFingerprintOrComment: string): Promise<SshKeyRecord> {
    const all = await this.list(user);
    const k = all.find((x) => x.id === idOrFingerprintOrComment || x.fingerprint === idOrFingerprintOrComment || x.comment === idOrFingerprintOrComment);
    if (!k) throw notFound('key');
    const digest = parsePublicKey(k.public_key).digest;
    await this.store.txn({ compare: [], success: [del(keys.sshKey(user.id, k.id)), del(keys.fingerprint(digest))] });
    return k;
  }
}
