import { createHash } from 'node:crypto';
import { createReadStream, statSync } from 'node:fs';
import { pipeline, Transform, type Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { getMany, list } from '../domain/codec.js';
import { invalid, notFound } from '../domain/errors.js';
import { keys } from '../domain/keys.js';
import type { Logger } from '../domain/log.js';
import { codecs, type SlugRecord } from '../domain/records.js';
import type { Store } from '../store/index.js';
import type { GitAccess } from './ports.js';
import type { SlugReplicator } from './replication.js';
import { checksumHex, type SlugStore } from './slugs.js';

export interface SlugRouteDeps {
  store: Store;
  log: Logger;
  access: Pick<GitAccess, 'resolveApp'>;
  find: (slugId: string) => Promise<SlugRecord | undefined>;
  slugs: SlugStore;
  /** Fetches a blob this server lacks from one that holds it, and heals one found corrupt. */
  replicator: SlugReplicator;
}

/** The machine an `/internal/` call came from (the API's cluster authentication sets it). */
function caller(req: FastifyRequest): { id: string; role: string } | undefined {
  return (req as { machine?: { id: string; role: string } }).machine ?? undefined;
}

/**
 * A whole blob, hashed on its way out: a blob that fails its own checksum here is bad on this
 * disk, and is replaced (the client checks too, and refuses what it got).
 */
function sendWhole(reply: FastifyReply, path: string, hex: string, onCorrupt: () => void): FastifyReply {
  const hash = createHash('sha256');
  const check = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      done(null, chunk);
    },
    flush(done) {
      if (hash.digest('hex') !== hex) onCorrupt();
      done();
    },
  });
  const body: Readable = pipeline(createReadStream(path), check, () => undefined);
  return reply.header('Content-Length', statSync(path).size).send(body);
}

/**
 * Whether an agent machine runs, or is about to run, a unit of a release built from `slugId`: the
 * units assigned to it, their releases, their slugs (reads proportional to that machine's units).
 */
async function assignedTo(store: Store, machine: string, slugId: string): Promise<boolean> {
  const units = await list(store, keys.unitsOn(machine), codecs.unit);
  const releases = new Map(units.map((u) => [`${u.value.appId}/${u.value.release}`, keys.release(u.value.appId, u.value.release)]));
  return (await getMany(store, [...releases.values()], codecs.release)).some((r) => r?.slug_id === slugId);
}

/**
 * Slug blobs for users (`heroku slugs:download`-style clients, by app access) and for the agents
 * that run them (by assignment), with byte ranges so an interrupted download resumes where it
 * stopped. A server that lacks a blob fetches it from one that holds it before answering.
 */
export function registerSlugBlobRoutes(api: FastifyInstance, d: SlugRouteDeps): void {
  const local = async (record: SlugRecord): Promise<{ path: string; hex: string }> => {
    const hex = checksumHex(record.checksum);
    if (!hex) throw notFound('slug');
    return { path: d.slugs.has(hex) ? d.slugs.blobPath(hex) : await d.replicator.ensure(hex), hex };
  };
  const send = async (req: FastifyRequest, reply: FastifyReply, slug: string, may: (record: SlugRecord) => Promise<boolean>) => {
    if (!/^[0-9a-f-]{36}$/.test(slug)) throw notFound('slug');
    const record = await d.find(slug);
    if (!record || !(await may(record))) throw notFound('slug');
    const { path, hex } = await local(record);
    const size = statSync(path).size;
    reply.header('ETag', `"${record.checksum}"`).header('Accept-Ranges', 'bytes').header('Content-Type', 'application/gzip');
    const range = req.headers.range;
    if (!range) return sendWhole(reply, path, hex, () => void d.replicator.corrupt(hex));
    const m = /^bytes=(\d*)-(\d*)$/.exec(range);
    if (!m || (m[1] === '' && m[2] === '')) throw invalid(`Range must be bytes=START-[END], got "${range}".`);
    // bytes=-N is the last N bytes.
    let start = m[1] === '' ? Math.max(0, size - Number(m[2])) : Number(m[1]);
    const end = m[1] !== '' && m[2] !== '' ? Math.min(Number(m[2]), size - 1) : size - 1;
    if (start >= size || start > end) {
      return reply.code(416).header('Content-Range', `bytes */${size}`).type('application/json').send({ id: 'range_not_satisfiable', message: `The slug has ${size} bytes.` });
    }
    start = Math.max(0, start);
    return reply
      .code(206)
      .header('Content-Range', `bytes ${start}-${end}/${size}`)
      .header('Content-Length', end - start + 1)
      .send(createReadStream(path, { start, end }));
  };

  api.get('/apps/:app/slugs/:slug/blob', async (req, reply) => {
    const { app, slug } = req.params as { app: string; slug: string };
    const appId = (await d.access.resolveApp(req.user, app)).id;
    return send(req, reply, slug, async (record) => record.app_id === appId);
  });
  // Machines fetch with their own credential. Servers may fetch any slug; an agent only one it
  // has been given to run, so a joined worker cannot read other tenants' code.
  api.get('/internal/slugs/:slug/blob', { config: { cluster: true } }, async (req, reply) => {
    const machine = caller(req);
    return send(req, reply, (req.params as { slug: string }).slug, async (record) => {
      if (machine?.role === 'server') return true;
      const ok = machine !== undefined && (await assignedTo(d.store, machine.id, record.id));
      if (!ok) d.log.warn({ machine: machine?.id, slug: record.id }, 'refused a slug to a machine it is not assigned to');
      return ok;
    });
  });
}

/**
 * Server to server: `POST /internal/slug-copies/<sha256>` asks this server to hold a copy (it
 * fetches one from a holder, checked, and answers once it is on disk and recorded);
 * `GET /internal/slug-copies/<sha256>/blob` is what it fetches from.
 */
export function registerSlugCopyRoutes(api: FastifyInstance, d: Pick<SlugRouteDeps, 'slugs' | 'replicator'>): void {
  const hexOf = (req: FastifyRequest): string => {
    const hex = (req.params as { sha256: string }).sha256;
    if (!/^[0-9a-f]{64}$/.test(hex)) throw notFound('slug copy');
    return hex;
  };
  api.post('/internal/slug-copies/:sha256', { config: { cluster: 'server' } }, async (req) => {
    const hex = hexOf(req);
    const given = (req.body as { revision?: unknown } | undefined)?.revision;
    const revision = typeof given === 'number' && Number.isSafeInteger(given) && given > 0 ? given : undefined;
    const path = await d.replicator.ensure(hex, revision);
    return { sha256: hex, size: statSync(path).size, machine: d.slugs.machine ?? null };
  });
  api.get('/internal/slug-copies/:sha256/blob', { config: { cluster: 'server' } }, async (req, reply) => {
    const hex = hexOf(req);
    if (!d.slugs.has(hex)) throw notFound('slug copy');
    reply.header('Content-Type', 'application/gzip');
    return sendWhole(reply, d.slugs.blobPath(hex), hex, () => void d.replicator.corrupt(hex));
  });
}
