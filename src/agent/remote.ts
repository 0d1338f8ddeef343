import { errorMessage } from '../domain/errors.js';
import { codecs, type ReleaseRecord } from '../domain/records.js';
import type { Logger } from '../domain/log.js';
import type { Store } from '../store/index.js';
import { LOGPLEX_DYNO, logBucket, LogRateLimiter, type LogRateOptions } from './log-limiter.js';
import { ServerList, SlugSource } from './slug-source.js';

export { pruneCache } from './slug-source.js';

/** Well under the API's 1 MiB body limit, JSON overhead included. */
const BATCH_BYTES = 256 * 1024;
/** Lines held while no server takes them: at most this many, and about this many bytes. */
const QUEUE_LINES = 20_000;
const QUEUE_BYTES = 16 * 1024 * 1024;

export interface JoinAnswer {
  store_url: string;
  /** This machine's own credential for later calls (the join token grants joining only). */
  credential: string;
  api_url: string;
  domain: string;
}

/** A server that does not answer a log batch within this long is passed over for the next. */
const POST_TIMEOUT_MS = 15_000;

/**
 * An agent's line to the servers when it runs in a process of its own (`berth agent`): it joins
 * with the cluster token through the URL it was given, then fetches slugs into a per-machine cache
 * and sends its dynos' log lines through any live server, moving to another when one fails. The
 * embedded agent of a server needs none of this: it shares the builder's slug store and LogHub.
 */
export class ControllerLink {
  private readonly base: string;
  /** The join URL first, then every live server once the store is known (`attach`). */
  readonly servers: ServerList;
  private queue: { app_id: string; source: string; dyno: string; message: string; time: string }[] = [];
  private queuedBytes = 0;
  private dropped = 0;
  /** An app's output (and its router lines) past its rate go no further than this machine (an L10 line says so). */
  private readonly limiters: Record<'output' | 'router', LogRateLimiter>;
  private flushing: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    controller: string,
    private readonly token: string,
    private readonly log: Logger,
    logRate: LogRateOptions = {},
  ) {
    const notice = (appId: string, message: string): void => this.enqueue(appId, 'berth', LOGPLEX_DYNO, message);
    this.limiters = { output: new LogRateLimiter(logRate, notice), router: new LogRateLimiter(logRate, notice) };
    this.base = controller.replace(/\/+$/, '');
    this.servers = new ServerList(this.base, log);
  }

  /** The store this machine joined: from now on any live server in it is reached, not only the join URL. */
  attach(store: Store): void {
    this.servers.attach(store);
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return { authorization: `Bearer ${this.credential ?? this.token}`, ...extra };
  }

  private credential: string | undefined;

  async join(name: string, machine: string): Promise<JoinAnswer> {
    // A secured cluster's token is only ever sent over TLS verified against its CA (--server):
    // this older join would hand it to whoever answers plain HTTP.
    if (/^B10[0-9a-f]{64}::/.test(this.token.trim())) throw new Error('this is a secured cluster\'s token: join with --server URL (the TLS join), not --controller');
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
   * The host path of a slug, downloaded once per machine from a live server that holds it and
   * checked against the checksum the builder recorded: a truncated or tampered download is never
   * run. Attaches the store (`attach`), so log batches fail over too.
   */
  slugPath(store: Store, cacheDir: string): (slugId: string) => Promise<string> {
    this.attach(store);
    const source = new SlugSource({ store, log: this.log, cacheDir, servers: this.servers, headers: () => this.headers() });
    return (slugId) => source.path(slugId);
  }

  /**
   * Queues a line for the controller; sent in batches so a chatty dyno is not a request per line.
   * Past the app's rate the line is dropped here, before it costs a byte on the wire; platform
   * lines other than the router's (the agent's own L10 among them) are not limited (`logBucket`).
   */
  appLog(appId: string, source: string, dyno: string, message: string): void {
    const bucket = logBucket(source, dyno);
    if (!bucket || this.limiters[bucket].admit(appId)) this.enqueue(appId, source, dyno, message);
  }

  private enqueue(appId: string, source: string, dyno: string, message: string): void {
    // Closed: its last flush has run, and nothing may arm a timer or send after it.
    if (this.closed) return;
    this.queue.push({ app_id: appId, source, dyno, message, time: new Date().toISOString() });
    this.queuedBytes += message.length;
    // Bounded while the controller is away: the oldest lines go first, and are counted.
    let n = 0;
    while (this.queue.length - n > 1 && (this.queue.length - n > QUEUE_LINES || this.queuedBytes > QUEUE_BYTES)) this.queuedBytes -= this.queue[n++]?.message.length ?? 0;
    if (n > 0) this.dropped += this.queue.splice(0, n).length;
    // Unref'd: a batch waiting to go never holds a stopping process open (close sends it).
    this.timer ??= setTimeout(() => void this.flush(), 200).unref();
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
      for (const l of batch) this.queuedBytes -= l.message.length;
      const outcome = await this.post(JSON.stringify({ lines: batch }));
      if (outcome === 'sent') continue;
      // A batch a server refuses as such (not the credential, not a pause) would be refused
      // forever: drop it, counted, rather than stall this machine's logs behind it.
      if (outcome === 'refused') {
        this.dropped += batch.length;
        continue;
      }
      this.log.warn({ err: outcome.error, queued: this.queue.length + batch.length }, 'no server took the log lines; retrying');
      this.queue.unshift(...batch);
      for (const l of batch) this.queuedBytes += l.message.length;
      // Once closed, the last attempt was the last: no timer keeps a stopped agent alive.
      if (!this.closed) this.timer ??= setTimeout(() => void this.flush(), 2000).unref();
      return;
    }
    if (this.dropped > 0) {
      this.log.warn({ dropped: this.dropped }, 'log lines dropped (controller unreachable too long, or it refused a batch)');
      this.dropped = 0;
    }
  }

  /** One batch to the first live server that takes it. */
  private async post(body: string): Promise<'sent' | 'refused' | { error: string }> {
    const errors: string[] = [];
    for (const { url } of await this.servers.list()) {
      try {
        const res = await fetch(`${url}/internal/logs`, { method: 'POST', headers: this.headers({ 'content-type': 'application/json' }), body, signal: AbortSignal.timeout(POST_TIMEOUT_MS) });
        // Read to the end (204 or a short error), so the pooled connection is reused.
        await res.arrayBuffer().catch(() => undefined);
        if (res.ok) {
          this.servers.worked(url);
          return 'sent';
        }
        if (res.status >= 400 && res.status < 500 && res.status !== 401 && res.status !== 429) return 'refused';
        errors.push(`${url}: HTTP ${res.status}`);
      } catch (err) {
        errors.push(`${url}: ${errorMessage(err)}`);
      }
      this.servers.failed(url);
    }
    return { error: errors.join('; ') };
  }

  private closed = false;
  /** Each app's uid, from the answers to `release` (an app's uid never changes). */
  private readonly uids = new Map<string, number>();

  /**
   * A release of one of this machine's units, from any live server (which checks the unit is
   * this machine's): what an agent of a secured cluster runs instead of reading the release,
   * which its certificate sees sealed. Undefined when no server has it.
   */
  async release(appId: string, version: number): Promise<ReleaseRecord | undefined> {
    const errors: string[] = [];
    for (const { url } of await this.servers.list()) {
      try {
        const res = await fetch(`${url}/internal/releases/${encodeURIComponent(appId)}/${version}`, { headers: this.headers(), signal: AbortSignal.timeout(POST_TIMEOUT_MS) });
        const body = (await res.json().catch(() => undefined)) as { release?: unknown; uid?: unknown } | undefined;
        if (res.status === 404) return undefined;
        if (res.ok && body) {
          const release = codecs.release.decode(JSON.stringify(body.release));
          if (typeof body.uid === 'number' && Number.isInteger(body.uid)) this.uids.set(appId, body.uid);
          this.servers.worked(url);
          return release;
        }
        errors.push(`${url}: HTTP ${res.status}`);
      } catch (err) {
        errors.push(`${url}: ${errorMessage(err)}`);
      }
      this.servers.failed(url);
    }
    throw new Error(`no server answered for release v${version}: ${errors.join('; ')}`);
  }

  /** The app's uid, as the server that answered `release` allocated it. */
  async uidOf(appId: string): Promise<number> {
    const uid = this.uids.get(appId);
    if (uid === undefined) throw new Error(`no uid known for app ${appId}: its release was not fetched`);
    return uid;
  }

  /** One last attempt to send what is queued; nothing is retried after it. */
  close(): Promise<void> {
    // Its pending L10 lines are queued first, to go with the last batch.
    this.limiters.output.close();
    this.limiters.router.close();
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    return this.flush();
  }
}
