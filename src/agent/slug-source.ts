import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { get, list } from '../domain/codec.js';
import { errorMessage } from '../domain/errors.js';
import { keys } from '../domain/keys.js';
import type { Logger } from '../domain/log.js';
import { codecs } from '../domain/records.js';
import type { Store } from '../store/index.js';

/** Slugs kept per machine: the most recently used. A dyno started from one removed since reads it
 * through its open file; a later start downloads it again. */
export const CACHE_KEEP = 30;

export function pruneCache(dir: string, keep: number): void {
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.tgz'))
    .map((f) => ({ f, at: statSync(join(dir, f)).mtimeMs }))
    .sort((a, b) => b.at - a.at);
  for (const { f } of files.slice(keep)) rmSync(join(dir, f), { force: true });
}

/** What changes when a file's bytes may have: inode, size, mtime and ctime (which no one can set back). */
function identity(path: string): string | undefined {
  try {
    const st = statSync(path, { bigint: true });
    return `${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
  } catch {
    return undefined;
  }
}

export interface ServerEntry {
  /** Machine id, when a server record names this URL (the join URL may match none). */
  id?: string;
  url: string;
}

/** An http(s) base URL without a trailing slash, or undefined for anything else a record may hold. */
function baseUrl(raw: string): string | undefined {
  try {
    const u = new URL(raw);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.href.replace(/\/+$/, '') : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The servers a machine without a control plane of its own talks to: the one that last answered,
 * then the URL it joined through, then every other live server (`/berth/servers/`, read at most
 * every `refreshMs` and again after a failure). Before it has a store it knows only the join URL.
 */
export class ServerList {
  private readonly join: string;
  private current: string;
  private store: Store | undefined;
  private cached: { at: number; servers: ServerEntry[] } | undefined;

  constructor(
    joinUrl: string,
    private readonly log: Logger,
    private readonly refreshMs = 30_000,
  ) {
    this.join = joinUrl.replace(/\/+$/, '');
    this.current = this.join;
  }

  attach(store: Store): void {
    this.store ??= store;
  }

  async list(): Promise<ServerEntry[]> {
    const live = await this.live();
    const ids = new Map(live.map((s) => [s.url, s.id]));
    const out: ServerEntry[] = [];
    for (const url of [this.current, this.join, ...live.map((s) => s.url)]) {
      const id = ids.get(url);
      if (!out.some((e) => e.url === url)) out.push(id ? { id, url } : { url });
    }
    return out;
  }

  /** `url` answered: it is asked first from now on. */
  worked(url: string): void {
    this.current = url;
  }

  /** `url` did not answer: the list is read again before the next call. */
  failed(_url: string): void {
    this.cached = undefined;
  }

  private async live(): Promise<ServerEntry[]> {
    if (!this.store) return [];
    if (this.cached && Date.now() - this.cached.at < this.refreshMs) return this.cached.servers;
    try {
      const records = await list(this.store, keys.servers(), codecs.server);
      const servers: ServerEntry[] = [];
      for (const r of records) {
        const url = baseUrl(r.value.api_url);
        if (url) servers.push({ id: r.value.id, url });
      }
      this.cached = { at: Date.now(), servers };
      return servers;
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'could not read the live servers; using those known');
      return this.cached?.servers ?? [];
    }
  }
}

export interface SlugSourceOptions {
  store: Store;
  log: Logger;
  /** Where downloaded slugs are kept (per machine, the `CACHE_KEEP` most recently used). */
  cacheDir: string;
  servers: ServerList;
  /** This machine's credential, for the servers' `/internal/` routes. */
  headers: () => Record<string, string>;
  /** A download that receives nothing for this long is dropped and tried elsewhere (default 30 s). */
  idleTimeoutMs?: number;
}

/**
 * Slugs for a machine that holds no slug store (a `berth agent`): slug id → its record's
 * checksum → a file in the cache, downloaded from a live server — those recorded as holding it
 * first — through the agent route, which serves a machine only what it is assigned to run. Every
 * download is checked against the checksum and size the builder recorded: a truncated or tampered
 * one is never run, and the next server is tried. One download per slug at a time.
 */
export class SlugSource {
  private readonly fetching = new Map<string, Promise<string>>();
  /** Cached files whose bytes were hashed, with the file's identity then: unchanged ones are not read again. */
  private readonly verified = new Map<string, string>();

  constructor(private readonly o: SlugSourceOptions) {
    mkdirSync(o.cacheDir, { recursive: true, mode: 0o700 });
  }

  path(slugId: string): Promise<string> {
    let p = this.fetching.get(slugId);
    if (!p) {
      p = this.download(slugId).finally(() => this.fetching.delete(slugId));
      this.fetching.set(slugId, p);
    }
    return p;
  }

  private async download(slugId: string): Promise<string> {
    const { store, cacheDir, log } = this.o;
    const slug = await get(store, keys.slug(slugId), codecs.slug);
    if (!slug) throw new Error(`slug ${slugId} is missing`);
    const checksum = slug.value.checksum;
    const hex = checksum.replace(/^SHA256:/, '');
    if (!/^[0-9a-f]{64}$/.test(hex)) throw new Error(`slug ${slugId} has no usable checksum`);
    const file = join(cacheDir, `${hex}.tgz`);
    if (existsSync(file)) {
      // A cached file is unpacked as it is: one whose bytes are not the slug's (a disk fault, a
      // file changed behind the agent's back) is deleted and downloaded again, never unpacked.
      if (await this.intact(file, hex)) {
        // Recently used slugs are the ones the cache keeps; the touch is ours, so still checked.
        const now = new Date();
        utimesSync(file, now, now);
        const id = identity(file);
        if (id !== undefined) this.verified.set(file, id);
        return file;
      }
      log.error({ slug: slugId, checksum }, 'a cached slug failed its checksum; deleted, downloading it again');
      this.verified.delete(file);
      rmSync(file, { force: true });
    }
    const size = Number.isSafeInteger(slug.value.size) && slug.value.size > 0 ? slug.value.size : undefined;
    const errors: string[] = [];
    for (const server of await this.candidates(hex)) {
      try {
        await this.fetchFrom(server.url, slugId, hex, size, file);
        const id = identity(file);
        if (id !== undefined) this.verified.set(file, id);
        this.o.servers.worked(server.url);
        log.info({ slug: slugId, checksum, from: server.url }, 'slug cached');
        pruneCache(cacheDir, CACHE_KEEP);
        return file;
      } catch (err) {
        errors.push(`${server.url}: ${errorMessage(err)}`);
        this.o.servers.failed(server.url);
        log.warn({ slug: slugId, from: server.url, err: errorMessage(err) }, 'slug download failed; trying another server');
      }
    }
    throw new Error(`slug ${slugId} could not be downloaded from any server (${errors.join('; ') || 'none known'})`);
  }

  /** Whether `file` hashes to `hex`: read only when it changed since it last did. */
  private async intact(file: string, hex: string): Promise<boolean> {
    const before = identity(file);
    if (before !== undefined && this.verified.get(file) === before) return true;
    const hash = createHash('sha256');
    try {
      for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
    } catch {
      return false;
    }
    if (hash.digest('hex') !== hex) return false;
    if (before !== undefined && identity(file) === before) this.verified.set(file, before);
    return true;
  }

  /** Every known server, those whose copy record says they hold the blob first (the rest fetch it on demand). */
  private async candidates(hex: string): Promise<ServerEntry[]> {
    const servers = await this.o.servers.list();
    const holders = new Set((await list(this.o.store, keys.slugCopies(hex), codecs.slugCopy).catch(() => [])).map((c) => c.value.machine));
    return [...servers.filter((s) => s.id !== undefined && holders.has(s.id)), ...servers.filter((s) => s.id === undefined || !holders.has(s.id))];
  }

  private async fetchFrom(url: string, slugId: string, hex: string, size: number | undefined, file: string): Promise<void> {
    const idleMs = this.o.idleTimeoutMs ?? 30_000;
    const abort = new AbortController();
    const idle = setTimeout(() => abort.abort(new Error(`no data for ${Math.round(idleMs / 1000)} s`)), idleMs);
    const part = join(this.o.cacheDir, `.${hex}.${randomUUID()}.part`);
    try {
      const res = await fetch(`${url}/internal/slugs/${slugId}/blob`, { headers: this.o.headers(), signal: abort.signal });
      if (!res.ok || !res.body) {
        await res.body?.cancel();
        throw new Error(`HTTP ${res.status}`);
      }
      const hash = createHash('sha256');
      let got = 0;
      const tee = new Transform({
        transform(chunk: Buffer, _enc, done) {
          got += chunk.length;
          if (size !== undefined && got > size) return done(new Error(`more than the ${size} bytes recorded`));
          hash.update(chunk);
          idle.refresh();
          done(null, chunk);
        },
      });
      await pipeline(Readable.fromWeb(res.body as WebReadableStream<Uint8Array>), tee, createWriteStream(part, { mode: 0o600 }));
      const digest = hash.digest('hex');
      if (digest !== hex) throw new Error(`failed its checksum (got SHA256:${digest}, want SHA256:${hex})`);
      if (size !== undefined && got !== size) throw new Error(`${got} bytes, ${size} recorded`);
      renameSync(part, file);
    } finally {
      clearTimeout(idle);
      rmSync(part, { force: true });
    }
  }
}
