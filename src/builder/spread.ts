import { BerthError, errorMessage } from '../domain/errors.js';
import { keys } from '../domain/keys.js';
import type { Logger } from '../domain/log.js';
import type { ClusterPeers, PeerServer } from '../domain/peers.js';
import type { SlugRecord } from '../domain/records.js';
import type { Store } from '../store/index.js';
import { checksumHex } from './slugs.js';

export interface SpreadOptions {
  store: Store;
  log: Logger;
  /** The other live servers; absent, a node is alone and there is nothing to wait for. */
  peers?: ClusterPeers;
  /** How long to wait for the first peer's verified copy (default 60 s). */
  timeoutMs?: number;
}

/**
 * Before a build returns (and so before its release exists): at least one other live server
 * holds a verified copy of the slug. Every live peer is asked at once; the first success is
 * enough and the rest finish in the background. Peers that fail are asked again (the list is
 * re-read, so a dead server whose record expires stops counting) until `timeoutMs`, then
 * the build fails with `slug_replication_failed`. Alone, a node has nothing to wait for.
 * Resolves to the name of the peer that holds the copy, or undefined when there is none.
 */
export async function spreadSlug(o: SpreadOptions, slug: SlugRecord, output?: (text: string) => void): Promise<string | undefined> {
  const { peers, store, log } = o;
  const hex = checksumHex(slug.checksum);
  if (!peers || !hex) return undefined;
  const timeoutMs = o.timeoutMs ?? 60_000;
  const deadline = Date.now() + timeoutMs;
  // Peers pin the blob until they have seen this revision: the record that makes it live.
  const revision = (await store.get(keys.slug(slug.id)))?.modRevision;
  const asking = new Set<string>();
  const retryAt = new Map<string, number>();
  const failures = new Map<string, string>();
  let copied: PeerServer | undefined;
  let wake: () => void = () => undefined;
  for (;;) {
    const servers = await peers.servers().catch((err: unknown) => {
      failures.set('store', errorMessage(err));
      return undefined;
    });
    if (servers?.length === 0) return undefined;
    for (const s of servers ?? []) {
      if (asking.has(s.id) || (retryAt.get(s.id) ?? 0) > Date.now()) continue;
      asking.add(s.id);
      void ask(peers, s, hex, revision, deadline)
        .then(
          () => {
            if (!copied) copied = s;
            else log.debug({ checksum: hex, peer: s.name }, 'slug copied to another peer in the background');
          },
          (err: unknown) => {
            failures.set(s.name, errorMessage(err));
            retryAt.set(s.id, Date.now() + 2000);
            log.warn({ checksum: hex, peer: s.name, err: errorMessage(err) }, 'a peer could not copy the slug');
          },
        )
        .finally(() => {
          asking.delete(s.id);
          wake();
        });
    }
    const left = deadline - Date.now();
    if (!copied && left > 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 1000));
        wake = () => (clearTimeout(t), resolve());
      });
    }
    if (copied) {
      output?.(`       Copied to ${copied.name}\n`);
      return copied.name;
    }
    if (Date.now() >= deadline) {
      const why = [...failures].map(([n, e]) => `${n}: ${e}`).join('; ') || 'no answer';
      throw new BerthError(
        'slug_replication_failed',
        `The slug could not be copied to another server within ${Math.round(timeoutMs / 1000)} s (${why}). No release was created: a release must not depend on one machine while others exist.`,
        { retryable: true },
      );
    }
  }
}

async function ask(peers: ClusterPeers, s: PeerServer, hex: string, revision: number | undefined, deadline: number): Promise<void> {
  const res = await fetch(`${s.url}/internal/slug-copies/${hex}`, {
    method: 'POST',
    headers: { ...peers.headers(), 'content-type': 'application/json' },
    body: JSON.stringify(revision !== undefined ? { revision } : {}),
    signal: AbortSignal.timeout(Math.max(1, deadline - Date.now())),
  });
  const body = (await res.json().catch(() => ({}))) as { sha256?: unknown; message?: unknown };
  if (!res.ok) throw new Error(typeof body.message === 'string' ? body.message.slice(0, 300) : `HTTP ${res.status}`);
  if (body.sha256 !== hex) throw new Error('it answered for another blob');
}
