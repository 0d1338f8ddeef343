import { decodeAll, type Codec, type Prefix } from '../../domain/codec.js';
import type { Logger } from '../../domain/log.js';
import { ROOT, keys } from '../../domain/keys.js';
import { codecs } from '../../domain/records.js';
import { ControlLoop, type Loaded } from '../../loop/index.js';
import type { Store, WatchBatch } from '../../store/index.js';
import type { AppNameHints } from './apps.js';
import type { MachineCredentialRecord } from '../../domain/records.js';
import type { KnownMachines } from './cluster.js';
import type { TokenRecord, UserRecord } from './types.js';
import type { KnownUsers } from './users.js';

// keys.ts builds one token's key only; the prefix is the same path without the hash.
const TOKENS: Prefix<TokenRecord> = `${ROOT}/tokens/`;

export interface LookupsOptions {
  store: Store;
  log: Logger;
  /** A full re-read this often, repairing anything a missed event left (default 5 min). */
  repairMs?: number;
}

/**
 * One prefix kept in memory from its watch (the loop primitive's list-then-watch): the value under
 * each key, by the key's last segment. `known` is false while a full read is under way or has
 * failed, and then nothing is answered from memory.
 */
class Mirror<T> {
  private entries = new Map<string, T>();
  private ready = false;
  private readonly loop: ControlLoop;

  constructor(
    private readonly prefix: Prefix<T>,
    private readonly codec: Codec<T>,
    o: LookupsOptions,
  ) {
    this.loop = new ControlLoop({
      store: o.store,
      log: o.log,
      prefix,
      load: () => this.load(o.store),
      apply: (batch) => this.apply(batch),
      // Nothing to act on: the state is only consulted.
      pass: async () => undefined,
      repairMs: o.repairMs ?? 300_000,
    });
  }

  get(id: string): T | undefined {
    return this.ready ? this.entries.get(id) : undefined;
  }

  start(): Promise<void> {
    return this.loop.start();
  }

  /** Stops following; from then on nothing is answered from memory (it would only age). */
  async stop(): Promise<void> {
    this.ready = false;
    await this.loop.stop();
  }

  private async load(store: Store): Promise<Loaded> {
    // From here until the new state is in force the loop drops watch batches: answer nothing.
    this.ready = false;
    const r = await store.range(this.prefix, { prefix: true });
    const entries = new Map(decodeAll(this.codec, r.kvs).map((e) => [e.key.slice(this.prefix.length), e.value]));
    return {
      revision: r.revision,
      commit: () => {
        this.entries = entries;
        this.ready = true;
      },
    };
  }

  private apply(batch: WatchBatch): boolean {
    for (const e of batch.events) {
      const id = e.kv.key.slice(this.prefix.length);
      // A value that no longer decodes is forgotten: a lookup then reads the store and fails there.
      const value = e.type === 'put' ? decodeAll(this.codec, [e.kv])[0]?.value : undefined;
      if (value === undefined) this.entries.delete(id);
      else this.entries.set(id, value);
    }
    return false;
  }
}

/**
 * What the API looks up on every request before it reaches an app — whose token this is, who
 * that user is, which app id a name stands for — kept in memory from the store's watch, so a
 * request spends its store round trips on the app itself (on a three-member etcd every
 * linearizable read is a quorum round). Only small, slow-changing indexes live here.
 *
 * A lookup answers `undefined` for "not known here": the caller then reads the store, so a token,
 * user or app made on another server a moment ago works at once. What is known is as fresh as the
 * watch: a token or user deleted elsewhere stops working here once the delete arrives
 * (milliseconds). App names are only hints: `Apps.resolve` checks the name on the record it
 * reads anyway, so a stale one costs a second read, never a wrong answer.
 */
export class Lookups implements KnownUsers, AppNameHints, KnownMachines {
  private readonly tokens: Mirror<TokenRecord>;
  private readonly users: Mirror<UserRecord>;
  private readonly names: Mirror<string>;
  private readonly machines: Mirror<MachineCredentialRecord>;
  private started = false;

  constructor(o: LookupsOptions) {
    this.tokens = new Mirror(TOKENS, codecs.token, o);
    this.users = new Mirror(keys.users(), codecs.user, o);
    this.names = new Mirror(keys.appNames(), codecs.appId, o);
    // Every /internal/ call (log batches, slug copies) names its machine.
    this.machines = new Mirror(keys.machineCredentials(), codecs.machineCredential, o);
  }

  /** Reads the four indexes and follows them; until then every lookup reads the store. */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    await Promise.all([this.tokens.start(), this.users.start(), this.names.start(), this.machines.start()]);
  }

  async close(): Promise<void> {
    await Promise.all([this.tokens.stop(), this.users.stop(), this.names.stop(), this.machines.stop()]);
  }

  /** The user id a token hash belongs to, if known here. */
  tokenUser(sha256: string): string | undefined {
    return this.tokens.get(sha256)?.user_id;
  }

  user(id: string): UserRecord | undefined {
    return this.users.get(id);
  }

  /** A machine's credential record, if known here. */
  machineCredential(id: string): MachineCredentialRecord | undefined {
    return this.machines.get(id);
  }

  /** The app id a name pointed at when last seen here: a hint to check, never an answer. */
  appId(name: string): string | undefined {
    return this.names.get(name);
  }
}
