import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { conflict, invalid, notFound } from '../../domain/errors.js';
import { get, getMany, list, put, putOp } from '../../domain/codec.js';
import { keys } from '../../domain/keys.js';
import { codecs } from '../../domain/records.js';
import type { Store } from '../../store/index.js';
import type { TokenRecord, UserRecord } from './types.js';

const EMAIL = /^[^@\s/]{1,64}@[^@\s/]{1,190}$/;

export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

export function newToken(): string {
  return `berth_${randomBytes(24).toString('hex')}`;
}

/** Tokens and users known without a read (`Lookups`); `undefined` means "read the store". */
export interface KnownUsers {
  tokenUser(sha256: string): string | undefined;
  user(id: string): UserRecord | undefined;
}

/**
 * Users and their API tokens. A token is shown once, when made; the store keeps only its SHA-256
 * (tokens are 192 random bits, so a fast hash is the right one: nothing to brute-force).
 */
export class Users {
  /** With `known` (the API's `Lookups`), a request's token and user come from memory, not two reads. */
  constructor(
    private readonly store: Store,
    private readonly known?: KnownUsers,
  ) {}

  /** Creates a user with a fresh token (or the one given, for bootstrap automation). */
  async create(email: string, options: { admin?: boolean; token?: string } = {}): Promise<{ user: UserRecord; token: string }> {
    const normalized = email.trim().toLowerCase();
    if (!EMAIL.test(normalized)) throw invalid(`"${email}" is not a valid email address.`);
    const token = options.token ?? newToken();
    if (token.length < 16) throw invalid('A token must be at least 16 characters long.');
    const now = new Date().toISOString();
    const user: UserRecord = { id: randomUUID(), email: normalized, admin: options.admin ?? false, created_at: now, updated_at: now };
    const tokenRecord: TokenRecord = { user_id: user.id, created_at: now };
    const r = await this.store.txn({
      compare: [
        { key: keys.email(normalized), target: 'create', op: '=', value: 0 },
        { key: keys.token(hashToken(token)), target: 'create', op: '=', value: 0 },
      ],
      success: [putOp(keys.user(user.id), codecs.user, user), putOp(keys.email(normalized), codecs.userId, user.id), putOp(keys.token(hashToken(token)), codecs.token, tokenRecord)],
    });
    if (!r.succeeded) throw conflict(`A user with email ${normalized} already exists.`);
    return { user, token };
  }

  /**
   * Creates the first admin exactly once per store, in one transaction with the marker, however
   * many nodes start at the same time and wherever one crashes. Returns undefined when the
   * platform already has one.
   */
  async bootstrapAdmin(email: string, token?: string): Promise<{ user: UserRecord; token: string } | undefined> {
    const marker = keys.bootstrapped();
    if (await this.store.get(marker)) return undefined;
    const normalized = email.trim().toLowerCase();
    if (!EMAIL.test(normalized)) throw invalid(`"${email}" is not a valid email address.`);
    const secret = token ?? newToken();
    if (secret.length < 16) throw invalid('A token must be at least 16 characters long.');
    const now = new Date().toISOString();
    const user: UserRecord = { id: randomUUID(), email: normalized, admin: true, created_at: now, updated_at: now };
    const r = await this.store.txn({
      compare: [
        { key: marker, target: 'create', op: '=', value: 0 },
        { key: keys.email(normalized), target: 'create', op: '=', value: 0 },
      ],
      success: [
        putOp(marker, codecs.bootstrapped, { user_id: user.id, at: now }),
        putOp(keys.user(user.id), codecs.user, user),
        putOp(keys.email(normalized), codecs.userId, user.id),
        putOp(keys.token(hashToken(secret)), codecs.token, { user_id: user.id, created_at: now }),
      ],
    });
    if (r.succeeded) return { user, token: secret };
    if (await this.store.get(marker)) return undefined;
    throw conflict(`A user with email ${normalized} already exists; choose another admin email.`);
  }

  /** What is not known in memory (a token made on another server a moment ago) is read. */
  async authenticate(token: string): Promise<UserRecord | undefined> {
    const hash = hashToken(token);
    const userId = this.known?.tokenUser(hash) ?? (await get(this.store, keys.token(hash), codecs.token))?.value.user_id;
    if (userId === undefined) return undefined;
    return this.known?.user(userId) ?? (await get(this.store, keys.user(userId), codecs.user))?.value;
  }

  async issueToken(userId: string): Promise<string> {
    const token = newToken();
    await put(this.store, keys.token(hashToken(token)), codecs.token, { user_id: userId, created_at: new Date().toISOString() });
    return token;
  }

  async get(id: string): Promise<UserRecord> {
    const u = await get(this.store, keys.user(id), codecs.user);
    if (!u) throw notFound('user');
    return u.value;
  }

  async byEmail(email: string): Promise<UserRecord> {
    const id = await get(this.store, keys.email(email.trim().toLowerCase()), codecs.userId);
    if (!id) throw notFound('user');
    return this.get(id.value);
  }

  async list(): Promise<UserRecord[]> {
    return (await list(this.store, keys.users(), codecs.user)).map((e) => e.value);
  }

  async getMany(ids: string[]): Promise<Map<string, UserRecord>> {
    const users = await getMany(this.store, ids.map((id) => keys.user(id)), codecs.user);
    return new Map(users.filter((u): u is UserRecord => u !== undefined).map((u) => [u.id, u]));
  }
}
