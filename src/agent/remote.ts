import { createHash, randomUUID } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { get } from '../domain/codec.js';
import { errorMessage } from '../domain/errors.js';
import { codecs } from '../domain/records.js';
import { keys } from '../domain/keys.js';
import type { Logger } from '../domain/log.js';
import type { Store } from '../store/index.js';

/** Slugs kept per machine: the most recently used. A dyno started from one removed since reads it
 * through its open file; a later start downloads it again. */
const CACHE_KEEP = 30;

export function pruneCache(dir: string, keep: number): void {
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.tgz'))
    .map((f) => ({ f, at: statSync(join(dir, f)).mtimeMs }))
    .sort((a, b) => b.at - a.at);
  for (const { f } of files.slice(keep)) rmSync(join(dir, f), { force: true });
}

/** Well under the API's 1 MiB body limit, JSON overhead included. */
const BATCH_BYTES = 256 * 1024;

export interface JoinAnswer {
  store_url: string;
  /** This machine's own credential for later calls (the join token grants joining only). */
  credential: string;
  api_url: string;
  domain: string;
}

/**
 * An agent's line to the controller when it runs in a process of its own (`berth agent`): it joins
 * with the cluster token, fetches slugs into a per-machine cache, and sends its dynos' log lines.
 * The embedded agent of `berth up` needs none of this: it shares the builder's slug dir and LogHub.
 */
export class ControllerLink {
  private readonly base: string;
  private readonly fetching = new Map<string, Promise<string>>();
  private queue: { app_id: string; source: string; dyno: string; message: string; time: string }[] = [];
  private dropped = 0;
  private flushing: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    controller: string,
    private readonly token: string,
    private readonly log: Logger,
  ) {
    this.base = controller.replace(/\/+$/, '');
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return { authorization: `Bearer ${this.credential ?? this.token}`, ...extra };
  }

  private credential: string | undefined;

  async join(name: string, machine: string): Promise<JoinAnswer> {
    let res: Response;
    try {
      res = await fetch(`${this.base}/internal/cluster/join`, { method: 'POST', headers: this.headers({ 'content-type': 'application/json' }), body: JSON.stringify({ name, machine }) });
    } catch (err) {
      throw new Error(`cannot reach the controller at ${this.base}: ${errorMessage(err)}`);
    }
    const body = (await res.json().catch(() => ({}))) as Partial<JoinAnswer> & { message?: string };
    if (!res.ok || !body.store_url || !body.credential) throw new Error(`the controller at ${this.base} refused to let this agent join: ${body.message ?? res.status}`);
    this.credential = body.credential;
    return body as JoinAnswer;
  }

  /**
   * The host path of a slug, downloaded once per machine and checked against the checksum the
   * builder recorded: a truncated or tampered download is never run.
   */
  slugPath(store: Store, cacheDir: string): (slugId: string) => Promise<string> {
    mkdirSync(cacheDir, { recursive: true, mode: 0o700 });
    return (slugId) => {
      let p = this.fetching.get(slugId);
      if (!p) {
        p = this.download(store, cacheDir, slugId).finally(() => this.fetching.delete(slugId));
        this.fetching.set(slugId, p);
      }
      return p;
    };
  }

  private async download(store: Store, cacheDir: string, slugId: string): Promise<string> {
    const slug = await get(store, keys.slug(slugId), codecs.slug);
    if (!slug) throw new Error(`slug ${slugId} is missing`);
    const checksum = slug.value.checksum;
    const hex = checksum.replace(/^SHA256:/, '');
    if (!/^[0-9a-f]{64}$/.test(hex)) throw new Error(`slug ${slugId} has no usable checksum`);
    const file = join(cacheDir, `${hex}.tgz`);
    if (existsSync(file)) {
      // Recently used slugs are the ones the cache keeps.
      const now = new Date();
      utimesSync(file, now, now);
      return file;
    }
    const res = await fetch(`${this.base}/internal/slugs/${slugId}/blob`, { headers: this.headers() });
    if (!res.ok || !res.body) throw new Error(`slug ${slugId} download failed: HTTP ${res.status}`);
    const part = join(cacheDir, `.${hex}.${randomUUID()}.part`);
    const hash = createHash('sha256');
    const tee = new Transform({ transform: (chunk: Buffer, _enc, done) => (hash.update(chunk), done(null, chunk)) });
    try {
      await pipeline(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>), tee, createWriteStream(part, { mode: 0o600 }));
      const got = hash.digest('hex');
      if (got !== hex) throw new Error(`slug ${slugId} failed its checksum (got SHA256:${got}, want ${checksum})`);
      renameSync(part, file);
    } finally {
      rmSync(part, { force: true });
    }
    this.log.info({ slug: slugId, checksum }, 'slug cached');
    pruneCache(cacheDir, CACHE_KEEP);
    return file;
  }

  /** Queues a line for the controller; sent in batches so a chatty dyno is not a request per line. */
  appLog(appId: string, source: string, dyno: string, message: string): void {
    this.queue.push({ app_id: appId, source, dyno, message, time: new Date().toISOString() });
    // Bounded while the controller is away: the oldest lines go first, and are counted.
    if (this.queue.length > 20_000) this.dropped += this.queue.splice(0, this.queue.length - 20_000).length;
    this.timer ??= setTimeout(() => void this.flush(), 200);
  }

  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.flushing ??= this.send().finally(() => (this.flushing = undefined));
    return this.flushing;
  }

  private async send(): Promise<void> {
    while (this.queue.length > 0) {
      // Under the API's 1 MiB body limit whatever the lines hold; taken off the queue while in
      // flight, so trimming the queue meanwhile cannot drop the wrong lines.
      let bytes = 0;
      let n = 0;
      while (n < this.queue.length && n < 2000 && bytes < BATCH_BYTES) bytes += Buffer.byteLength(this.queue[n++]?.message ?? '') + 200;
      const batch = this.queue.splice(0, n);
      let status = 0;
      try {
        const res = await fetch(`${this.base}/internal/logs`, { method: 'POST', headers: this.headers({ 'content-type': 'application/json' }), body: JSON.stringify({ lines: batch }) });
        status = res.status;
        if (res.ok) continue;
      } catch (err) {
        this.log.warn({ err: errorMessage(err), queued: this.queue.length + batch.length }, 'sending log lines failed; retrying');
      }
      // A batch the controller refuses as such (not the token, not a pause) would be refused
      // forever: drop it, counted, rather than stall this machine's logs behind it.
      if (status >= 400 && status < 500 && status !== 401 && status !== 429) {
        this.dropped += batch.length;
        continue;
      }
      this.queue.unshift(...batch);
      this.timer ??= setTimeout(() => void this.flush(), 2000);
      return;
    }
    if (this.dropped > 0) {
      this.log.warn({ dropped: this.dropped }, 'log lines dropped (controller unreachable too long, or it refused a batch)');
      this.dropped = 0;
    }
  }

  close(): Promise<void> {
    return this.flush();
  }
}
