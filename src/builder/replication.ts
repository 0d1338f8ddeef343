import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { decodeAll, list, tryDecode, type Entry } from '../domain/codec.js';
import { BerthError, errorMessage } from '../domain/errors.js';
import { keys } from '../domain/keys.js';
import type { Logger } from '../domain/log.js';
import type { ClusterPeers, PeerServer } from '../domain/peers.js';
import { codecs, type SlugCopyRecord } from '../domain/records.js';
import { ControlLoop } from '../loop/index.js';
import type { Store, WatchBatch } from '../store/index.js';
import { checksumHex, type SlugRecord, type SlugStore } from './slugs.js';
import { spreadSlug } from './spread.js';

export interface SlugReplicatorOptions {
  store: Store;
  log: Logger;
  /** This server's blobs (its machine id names its copy records). */
  slugs: SlugStore;
  /** The other live servers; absent on a node alone, which holds the only copy there can be. */
  peers?: ClusterPeers;
  /** Background fetches at once (default 2): a returning server must not saturate the holders. */
  parallel?: number;
  /** How long a build waits for the first peer's verified copy (default 60 s). */
  copyTimeoutMs?: number;
  /** A download that receives nothing for this long is dropped and tried elsewhere (default 30 s). */
  idleTimeoutMs?: number;
  /** A full re-read of the slug records this often (default 10 min). */
  repairMs?: number;
  /**
   * A slug younger than this is never collected (default 10 min): a push on another server may have
   * built it and be about to write the release that points at it.
   */
  collectGraceMs?: number;
}

interface Known {
  hex: string;
  app: string;
  created: number;
}

interface Holder extends PeerServer {
  size: number;
}

/** What a full read found out of step between the records, the disk and this machine's copy records. */
interface Repairs {
  /** Live blobs held here with no copy record of ours: written. */
  record: string[];
  /** Copy records of ours with no blob on disk: deleted (a live one is fetched again). */
  unrecord: string[];
  /** Blobs no slug record points at any more (collected while we were away): removed. */
  orphans: string[];
}

const shuffle = <T>(xs: T[]): T[] => {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [xs[i], xs[j]] = [xs[j] as T, xs[i] as T];
  }
  return xs;
};

/**
 * Keeps every live slug blob on every server, and none that is dead. Follows `/berth/slugs/` with
 * the control-loop primitive: a new slug record whose blob is not here is fetched from a live
 * server that holds it (its copy record says so), checked against its SHA-256 and size, at most
 * `parallel` at a time, retried with backoff; a checksum that no record points at any more loses
 * its blob and copy record here. Work per change is per slug; only a full read (start, watch gap,
 * repair) looks at everything, and reconciles the disk with the records then.
 *
 * It also answers for the build (`spread`: a peer's verified copy before the release exists), for
 * callers that need a blob now (`ensure`), and collects an app's old slug records from its index.
 */
export class SlugReplicator {
  private loop: ControlLoop | undefined;
  private slugs = new Map<string, Known>();
  private refs = new Map<string, number>();
  /** Each live checksum's size, as its builder recorded it: the size a copy must have. */
  private sizes = new Map<string, number>();
  private byApp = new Map<string, Set<string>>();
  /** Live checksums that may be missing here; the pass drops those present. */
  private wanted = new Set<string>();
  /** Checksums whose last record went: their blob here goes once nothing holds it back. */
  private readonly doomed = new Set<string>();
  private repairs: Repairs | undefined;
  private readonly backoff = new Map<string, { failures: number; at: number }>();
  private readonly inflight = new Map<string, Promise<string>>();
  private background = 0;
  private readonly aborts = new Set<AbortController>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private loaded = false;
  private stopped = false;

  constructor(private readonly o: SlugReplicatorOptions) {}

  private get log(): Logger {
    return this.o.log;
  }

  async start(): Promise<void> {
    const { store } = this.o;
    const prefix = keys.slugs();
    this.loop = new ControlLoop({
      store,
      log: this.log,
      prefix,
      load: async () => {
        const r = await store.range(prefix, { prefix: true });
        const records = decodeAll(codecs.slug, r.kvs, (key) => this.log.warn({ key }, 'ignoring a malformed slug record'));
        const mine = await this.ownCopies();
        const local = this.o.slugs.local();
        return {
          revision: r.revision,
          commit: () => {
            this.slugs = new Map();
            this.refs = new Map();
            this.sizes = new Map();
            this.byApp = new Map();
            for (const e of records) this.add(e.key.slice(prefix.length), e.value);
            this.wanted = new Set(this.refs.keys());
            this.doomed.clear();
            this.repairs = {
              record: [...local].filter((hex) => this.refs.has(hex) && !mine.has(hex)),
              unrecord: [...mine].filter((hex) => !local.has(hex)),
              // A blob put here for a record the read did not see (a build, a peer's copy
              // request) is pinned until the watch brings that record: `remove` leaves it. A
              // read with no slug record at all while blobs are here looks like the wrong store,
              // not like everything collected: nothing is removed on its word.
              orphans: records.length === 0 ? [] : [...local].filter((hex) => !this.refs.has(hex)),
            };
            if (records.length === 0 && local.size > 0) this.log.warn({ blobs: local.size, store: store.description }, 'the store holds no slug records but this server holds slug blobs; keeping them');
            this.o.slugs.settle(r.revision);
            this.loaded = true;
          },
        };
      },
      apply: (batch) => this.apply(prefix, batch),
      pass: () => this.pass(),
      debounceMs: 20,
      maxWaitMs: 500,
      repairMs: this.o.repairMs ?? 10 * 60_000,
    });
    await this.loop.start();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    await this.loop?.stop();
    for (const a of this.aborts) a.abort(new Error('the replicator is stopping'));
    await Promise.allSettled([...this.inflight.values()]);
  }

  /** This machine's copy records, by checksum (a full read: start and repair only). */
  private async ownCopies(): Promise<Set<string>> {
    const machine = this.o.slugs.machine;
    if (!machine) return new Set();
    const r = await this.o.store.range(keys.allSlugCopies(), { prefix: true });
    const out = new Set<string>();
    for (const kv of r.kvs) {
      const [hex, owner] = kv.key.slice(keys.allSlugCopies().length).split('/');
      if (owner === machine && hex && checksumHex(hex)) out.add(hex);
    }
    return out;
  }

  private add(id: string, slug: SlugRecord): void {
    const hex = checksumHex(slug.checksum);
    if (!hex) {
      this.log.warn({ slug: id }, 'ignoring a slug record without a usable checksum');
      return;
    }
    const created = Date.parse(slug.created_at);
    this.slugs.set(id, { hex, app: slug.app_id, created: Number.isFinite(created) ? created : 0 });
    this.refs.set(hex, (this.refs.get(hex) ?? 0) + 1);
    if (Number.isSafeInteger(slug.size) && slug.size > 0) this.sizes.set(hex, slug.size);
    let ids = this.byApp.get(slug.app_id);
    if (!ids) this.byApp.set(slug.app_id, (ids = new Set()));
    ids.add(id);
  }

  private drop(id: string): void {
    const known = this.slugs.get(id);
    if (!known) return;
    this.slugs.delete(id);
    const ids = this.byApp.get(known.app);
    ids?.delete(id);
    if (ids?.size === 0) this.byApp.delete(known.app);
    const n = (this.refs.get(known.hex) ?? 1) - 1;
    if (n > 0) this.refs.set(known.hex, n);
    else {
      this.refs.delete(known.hex);
      this.sizes.delete(known.hex);
      this.wanted.delete(known.hex);
      this.doomed.add(known.hex);
    }
  }

  private apply(prefix: string, batch: WatchBatch): boolean {
    for (const e of batch.events) {
      const id = e.kv.key.slice(prefix.length);
      const slug = e.type === 'put' ? tryDecode(codecs.slug, e.kv) : undefined;
      const before = this.slugs.get(id);
      // Slug records are immutable; a rewrite with another checksum is a delete and an add.
      if (slug && before && checksumHex(slug.checksum) === before.hex) continue;
      this.drop(id);
      if (!slug) {
        if (e.type === 'put') this.log.warn({ key: e.kv.key }, 'ignoring a malformed slug record');
        continue;
      }
      this.add(id, slug);
      const hex = checksumHex(slug.checksum);
      if (hex) {
        this.doomed.delete(hex);
        this.wanted.add(hex);
      }
    }
    // Pins wait for exactly this: the records that make their blobs live are now in memory.
    this.o.slugs.settle(batch.revision);
    return true;
  }

  private async pass(): Promise<void> {
    if (this.stopped) return;
    const { slugs } = this.o;
    const repairs = this.repairs;
    this.repairs = undefined;
    if (repairs) await this.repair(repairs);
    for (const hex of [...this.doomed]) {
      if (this.refs.has(hex)) this.doomed.delete(hex);
      // A fetch still writing it: its end asks for another pass.
      else if (this.inflight.has(hex)) continue;
      else {
        try {
          // False while pinned: a record for it is on its way, and will take it off this list.
          if (await slugs.remove(hex)) {
            this.doomed.delete(hex);
            this.log.info({ checksum: hex }, 'slug blob removed: no slug record points at it');
          }
        } catch (err) {
          this.log.warn({ checksum: hex, err: errorMessage(err) }, 'could not remove a slug blob; retrying on the next pass');
        }
      }
    }
    const now = Date.now();
    for (const hex of [...this.wanted]) {
      if (!this.refs.has(hex) || slugs.has(hex)) {
        this.wanted.delete(hex);
        this.backoff.delete(hex);
        continue;
      }
      // Alone, there is nobody to fetch from: a missing blob stays missing (and is said so when asked for).
      if (!this.o.peers || this.inflight.has(hex) || (this.backoff.get(hex)?.at ?? 0) > now) continue;
      if (this.background >= (this.o.parallel ?? 2)) break;
      this.fetchInBackground(hex);
    }
  }

  private async repair(r: Repairs): Promise<void> {
    const { slugs } = this.o;
    const each = async (what: string, hexes: string[], fn: (hex: string) => Promise<unknown>): Promise<void> => {
      for (const hex of hexes) await fn(hex).catch((err: unknown) => this.log.warn({ checksum: hex, err: errorMessage(err) }, `repair: could not ${what}`));
    };
    await each('record a copy', r.record, async (hex) => {
      if (slugs.has(hex)) await slugs.record(hex, slugs.size(hex));
    });
    await each('delete a copy record', r.unrecord, async (hex) => {
      if (!slugs.has(hex)) await slugs.unrecord(hex);
    });
    await each('remove a dead blob', r.orphans, async (hex) => {
      if (!this.refs.has(hex) && !this.inflight.has(hex) && (await slugs.remove(hex))) this.log.info({ checksum: hex }, 'slug blob removed: collected while this server was away');
    });
  }

  private fetchInBackground(hex: string): void {
    this.background++;
    this.fetch(hex)
      .then(
        () => this.backoff.delete(hex),
        (err: unknown) => {
          const b = this.backoff.get(hex) ?? { failures: 0, at: 0 };
          b.failures++;
          const delay = Math.min(60_000, 1000 * 2 ** (b.failures - 1));
          b.at = Date.now() + delay;
          this.backoff.set(hex, b);
          // Loud once, then quiet: a slug whose only holder is down is retried for as long as it lives.
          this.log[b.failures === 1 || b.failures % 10 === 0 ? 'warn' : 'debug']({ checksum: hex, failures: b.failures, retryInMs: delay, err: errorMessage(err) }, 'slug fetch failed');
          this.later(delay);
        },
      )
      .finally(() => {
        this.background--;
        this.loop?.request();
      });
  }

  private later(ms: number): void {
    if (this.stopped) return;
    const t = setTimeout(() => {
      this.timers.delete(t);
      this.loop?.request();
    }, ms);
    this.timers.add(t);
  }

  /**
   * The blob of `hex` on this machine, fetched from a holder if it is not here. `pinRevision`
   * (a peer's build) keeps it from being collected until this server has seen that revision.
   */
  async ensure(hex: string, pinRevision?: number): Promise<string> {
    const { slugs } = this.o;
    if (pinRevision !== undefined) slugs.pin(hex, pinRevision);
    if (slugs.has(hex)) return slugs.blobPath(hex);
    return this.fetch(hex);
  }

  /** One download per checksum at a time: background fetches and callers that need it now share it. */
  private fetch(hex: string): Promise<string> {
    let p = this.inflight.get(hex);
    if (!p) {
      p = this.download(hex).finally(() => {
        this.inflight.delete(hex);
        this.loop?.request();
      });
      this.inflight.set(hex, p);
    }
    return p;
  }

  /** Live servers that hold `hex`, in random order (so a returning server spreads its load), with the size they recorded. */
  private async holders(hex: string): Promise<Holder[]> {
    if (!this.o.peers) return [];
    const [copies, servers] = await Promise.all([list(this.o.store, keys.slugCopies(hex), codecs.slugCopy), this.o.peers.servers()]);
    const sizes = new Map(copies.filter((c: Entry<SlugCopyRecord>) => c.key === keys.slugCopy(hex, c.value.machine)).map((c) => [c.value.machine, c.value.size]));
    return shuffle(servers.filter((s) => sizes.has(s.id)).map((s) => ({ ...s, size: sizes.get(s.id) as number })));
  }

  private async download(hex: string): Promise<string> {
    if (this.stopped) throw new BerthError('slug_unavailable', 'the replicator is stopping');
    const holders = await this.holders(hex);
    if (holders.length === 0) throw new BerthError('slug_unavailable', `No live server holds slug blob SHA256:${hex}.`, { retryable: true });
    // The builder's record is the authority on the size; a holder's record only if we have none.
    const size = this.sizes.get(hex);
    const errors: string[] = [];
    for (const h of holders) {
      try {
        const path = await this.copyFrom(h, hex, size ?? h.size);
        this.log.info({ checksum: hex, from: h.name }, 'slug blob copied');
        return path;
      } catch (err) {
        errors.push(`${h.name}: ${errorMessage(err)}`);
        this.log.warn({ checksum: hex, from: h.name, err: errorMessage(err) }, 'slug copy refused; trying another holder');
      }
    }
    throw new BerthError('slug_unavailable', `Could not copy slug blob SHA256:${hex} from any holder (${errors.join('; ')}).`, { retryable: true });
  }

  private async copyFrom(h: Holder, hex: string, size: number): Promise<string> {
    const abort = new AbortController();
    this.aborts.add(abort);
    const idleMs = this.o.idleTimeoutMs ?? 30_000;
    const idle = setTimeout(() => abort.abort(new Error(`no data for ${Math.round(idleMs / 1000)} s`)), idleMs);
    try {
      const res = await fetch(`${h.url}/internal/slug-copies/${hex}/blob`, { headers: this.o.peers?.headers() ?? {}, signal: abort.signal });
      if (!res.ok || !res.body) {
        await res.body?.cancel();
        throw new Error(`HTTP ${res.status}`);
      }
      const body = Readable.fromWeb(res.body as WebReadableStream<Uint8Array>);
      return await this.o.slugs.receive(hex, size, body, () => idle.refresh());
    } finally {
      clearTimeout(idle);
      this.aborts.delete(abort);
    }
  }

  /**
   * A blob found corrupt here (it failed its checksum while we served it): removed with its copy
   * record, and fetched again from a good holder if it is live.
   */
  async corrupt(hex: string): Promise<void> {
    this.log.error({ checksum: hex }, 'a slug blob on this server failed its checksum; replacing it');
    await this.o.slugs.remove(hex, true);
    if (this.refs.has(hex) || !this.loaded) this.wanted.add(hex);
    this.loop?.request();
  }

  /**
   * Before a build returns (and so before its release exists): another live server holds a
   * verified copy of the slug (see `spreadSlug`). Resolves to that server's name, or undefined
   * when this server is alone.
   */
  spread(slug: SlugRecord, output?: (text: string) => void): Promise<string | undefined> {
    const { store, log, peers, copyTimeoutMs } = this.o;
    return spreadSlug({ store, log, ...(peers ? { peers } : {}), ...(copyTimeoutMs !== undefined ? { timeoutMs: copyTimeoutMs } : {}) }, slug, output);
  }

  /** Whether the index holds this slug record (it has seen it through its read or its watch). */
  knows(slugId: string): boolean {
    return this.slugs.has(slugId);
  }

  /** Whether the index is in use: `collect` reads it instead of every slug record. */
  get running(): boolean {
    return this.loaded && !this.stopped;
  }

  /**
   * Deletes the app's slug records not in `keep` and older than the grace, from the index (no
   * read of other apps' slugs). Blobs go on every server as each sees the records go.
   */
  async collect(appId: string, keep: Set<string>): Promise<number> {
    const cutoff = Date.now() - (this.o.collectGraceMs ?? 10 * 60_000);
    const doomed = [...(this.byApp.get(appId) ?? [])].filter((id) => !keep.has(id) && (this.slugs.get(id)?.created ?? Number.POSITIVE_INFINITY) < cutoff);
    for (let i = 0; i < doomed.length; i += 100) {
      await this.o.store.txn({ compare: [], success: doomed.slice(i, i + 100).map((id) => ({ type: 'delete' as const, key: keys.slug(id) })) });
    }
    return doomed.length;
  }
}
