import type { ClusterPeers, PeerServer } from '../../domain/peers.js';
import { errorMessage } from '../../domain/errors.js';
import type { Logger } from '../../domain/log.js';
import type { StoredLine } from '../services/log-store.js';
import { PAGE_BYTES, pageAnswer, type PageAnswer } from './wire.js';

export interface CatchUpOptions {
  /** Lines an app keeps: the catch-up asks for no more (default 1,500). */
  retain?: number;
  /** One peer's limit for the whole catch-up of an app (ms; default 3 s): `logs` waits for it. */
  timeoutMs?: number;
  /**
   * A catch-up this soon after start is merged but not counted as done: peers learn of a server
   * by re-reading the server list, so until then lines entering elsewhere may not be sent here
   * (ms; default 6 s, the fan-out's refresh plus a margin).
   */
  settleMs?: number;
  now?: () => number;
}

export interface CatchUpDeps {
  peers: ClusterPeers;
  /** The live peers, the least failing first. */
  servers(): Promise<PeerServer[]>;
  /** Stores lines got from a peer (skipping ids kept already). */
  merge(appId: string, lines: StoredLine[]): void;
  log: Logger;
}

/**
 * A server that starts, or comes back, lacks the lines other servers took meanwhile. Before it
 * first serves an app's log it asks one live peer for that app's newest lines and merges them:
 * per app on first use, not every app at start (a thousand apps would be a thousand requests
 * nobody may read). Concurrent readers of one app share one catch-up.
 */
export class LogCatchUp {
  private readonly synced = new Set<string>();
  private readonly running = new Map<string, Promise<void>>();
  private readonly retain: number;
  private readonly timeoutMs: number;
  private readonly readyAt: number;
  private readonly now: () => number;
  private readonly abort = new AbortController();

  constructor(
    private readonly deps: CatchUpDeps,
    options: CatchUpOptions = {},
  ) {
    this.retain = options.retain ?? 1500;
    this.timeoutMs = options.timeoutMs ?? 3000;
    this.now = options.now ?? Date.now;
    this.readyAt = this.now() + (options.settleMs ?? 6000);
  }

  /** Resolves once the app's lines from a peer are merged, or no peer could give them (never rejects). */
  ensure(appId: string): Promise<void> {
    if (this.synced.has(appId) || this.abort.signal.aborted) return Promise.resolve();
    let run = this.running.get(appId);
    if (!run) {
      run = this.run(appId).finally(() => this.running.delete(appId));
      this.running.set(appId, run);
    }
    return run;
  }

  /** An app gone: forgets that it was synced, so the set does not keep destroyed apps. */
  forget(appId: string): void {
    this.synced.delete(appId);
  }

  close(): void {
    this.abort.abort();
  }

  private async run(appId: string): Promise<void> {
    const started = this.now();
    let servers: PeerServer[];
    try {
      servers = await this.deps.servers();
    } catch (err) {
      this.deps.log.warn({ app: appId, err: errorMessage(err) }, 'could not list servers to catch up log lines');
      return;
    }
    for (const peer of servers) {
      try {
        const lines = await this.fetchLines(peer, appId);
        this.deps.merge(appId, lines);
        if (started >= this.readyAt) this.synced.add(appId);
        this.deps.log.debug({ app: appId, peer: peer.name, lines: lines.length }, 'caught up log lines');
        return;
      } catch (err) {
        if (this.abort.signal.aborted) return;
        this.deps.log.warn({ app: appId, peer: peer.name, err: errorMessage(err) }, 'could not catch up log lines from a server; trying another');
      }
    }
    // No peer answered (or there is none): nothing is marked, so the next read asks again.
  }

  /** The app's newest `retain` lines on `peer`, page by page, newest page first. */
  private async fetchLines(peer: PeerServer, appId: string): Promise<StoredLine[]> {
    const signal = AbortSignal.any([this.abort.signal, AbortSignal.timeout(this.timeoutMs)]);
    const pages: StoredLine[][] = [];
    let total = 0;
    let before: string | undefined;
    for (;;) {
      const url = `${peer.url}/internal/log-lines?app=${encodeURIComponent(appId)}${before ? `&before=${before}` : ''}`;
      const res = await fetch(url, { headers: this.deps.peers.headers(), signal });
      if (!res.ok) throw new Error(`${res.status} ${(await res.text().catch(() => '')).slice(0, 200)}`);
      const page = parse(await capped(res, PAGE_BYTES * 2), before);
      pages.push(page.lines);
      total += page.lines.length;
      if (!page.more || page.lines.length === 0 || total >= this.retain) break;
      before = page.lines[0]?.id;
    }
    return pages.reverse().flat().slice(-this.retain);
  }
}

/** A page as the peer sent it, held to what it claims: ids strictly ascending, all below `before`. */
function parse(text: string, before: string | undefined): PageAnswer {
  const page = pageAnswer.parse(JSON.parse(text));
  let last = '';
  for (const l of page.lines) {
    if (l.id <= last || (before !== undefined && l.id >= before)) throw new Error('the answer\'s lines are out of order');
    last = l.id;
  }
  return page;
}

/** The body as text, refusing one larger than `max` bytes rather than reading it all. */
async function capped(res: Response, max: number): Promise<string> {
  if (!res.body) return '';
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
    size += chunk.byteLength;
    if (size > max) throw new Error(`the answer is larger than ${max} bytes`);
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks).toString('utf8');
}
