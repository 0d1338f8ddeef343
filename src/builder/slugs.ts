import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Transform, type Readable } from 'node:stream';
import * as tar from 'tar';
import { deleteOp, list, putOp } from '../domain/codec.js';
import { BerthError, invalid } from '../domain/errors.js';
import { codecs } from '../domain/records.js';
import { keys } from '../domain/keys.js';
import type { Store, TxnOp } from '../store/index.js';
import { readAppJsonHealthChecks } from './app-json.js';

import type { SlugRecord } from '../domain/records.js';

export type { SlugRecord };

const HEX = /^[0-9a-f]{64}$/;

/** The hex SHA-256 of a slug's `SHA256:<hex>` checksum (or of a bare hex), or undefined when it is neither. */
export function checksumHex(checksum: string): string | undefined {
  const hex = checksum.startsWith('SHA256:') ? checksum.slice('SHA256:'.length) : checksum;
  return HEX.test(hex) ? hex : undefined;
}

function mustHex(checksum: string): string {
  const hex = checksumHex(checksum);
  // A checksum comes from the store: never let one name a path outside the slug dir.
  if (!hex) throw new BerthError('slug_checksum_invalid', `"${checksum.slice(0, 80)}" is not a slug checksum (SHA256:<64 hex digits>).`);
  return hex;
}

function shownLimit(limit: number): string {
  return limit >= 1024 * 1024 ? `${Math.round(limit / 1024 / 1024)} MB` : `${Math.round(limit / 1024)} KB`;
}

/** Counts and hashes a stream as it passes, failing it once it runs past `limit` bytes. */
function meter(limit: number, tooBig: () => Error, onChunk?: () => void): { stream: Transform; size: () => number; digest: () => string } {
  const hash = createHash('sha256');
  let size = 0;
  const stream = new Transform({
    transform(chunk: Buffer, _enc, done) {
      size += chunk.length;
      if (size > limit) return done(tooBig());
      hash.update(chunk);
      onChunk?.();
      done(null, chunk);
    },
  });
  return { stream, size: () => size, digest: () => hash.digest('hex') };
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

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * Slugs: the built app dir as a tar.gz, content-addressed by SHA-256 in `<data-dir>/slugs`. The
 * record (`/berth/slugs/<id>`) is what releases point at; identical builds share one blob. Each
 * blob this machine holds is recorded at `/berth/slug-copies/<sha256>/<machine>` (no lease: the
 * blob outlives a restart), so other machines know where to fetch it.
 */
export class SlugStore {
  /**
   * Blobs that must not be collected yet, by hex, with the store revision that makes them live:
   * one just packed whose slug record the replicator has not seen, or one a peer asked us to copy
   * for a build whose record is on its way. Dropped once the replicator has seen that revision.
   */
  private readonly pins = new Map<string, number>();
  /** Blobs being put in place right now (a create between its rename and its record), with a count. */
  private readonly holds = new Map<string, number>();
  private seen = 0;
  /** Blobs whose bytes were hashed, by hex, with the file's identity then: unchanged files are not hashed again. */
  private readonly verified = new Map<string, string>();

  constructor(
    readonly store: Store,
    readonly dir: string,
    private readonly maxBytes = 500 * 1024 * 1024,
    /** This machine's id, for its copy records; without one (a lone node) none are written. */
    readonly machine?: string,
  ) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  blobPath(checksum: string): string {
    return join(this.dir, `${mustHex(checksum)}.tgz`);
  }

  has(checksum: string): boolean {
    return existsSync(this.blobPath(checksum));
  }

  async create(appId: string, appDir: string, meta: { processTypes: Record<string, string>; commit: string | null; buildpack: string | null }): Promise<SlugRecord> {
    const health = readAppJsonHealthChecks(appDir);
    const tmp = join(this.dir, `.${randomUUID()}.tmp`);
    const m = meter(this.maxBytes, () => invalid(`Slug is larger than the ${shownLimit(this.maxBytes)} limit; remove large files from the build (or commit fewer of them).`));
    try {
      // portable: no uid/gid/mtime noise, so the same tree gives the same checksum. Level 1: a Node
      // slug carries its own runtime (~120 MB of binary), which level 6 took 4.5 s to pack and level 1
      // packs in 1.7 s for a blob ~10% bigger; every push waits for this step.
      await pipeline(tar.c({ gzip: { level: 1 }, cwd: appDir, portable: true, noMtime: true }, ['.']), m.stream, createWriteStream(tmp, { mode: 0o600 }));
    } catch (err) {
      rmSync(tmp, { force: true });
      throw err;
    }
    const hex = m.digest();
    const size = m.size();
    // Pinned from before the blob is in place until the replicator has seen its record: an older
    // record of the same checksum deleted just now must not take this blob with it.
    this.holds.set(hex, (this.holds.get(hex) ?? 0) + 1);
    try {
      renameSync(tmp, join(this.dir, `${hex}.tgz`));
      this.hashed(hex);
      const now = new Date().toISOString();
      const slug: SlugRecord = {
        id: randomUUID(),
        app_id: appId,
        checksum: `SHA256:${hex}`,
        size,
        process_types: meta.processTypes,
        commit: meta.commit,
        commit_description: null,
        buildpack_provided_description: meta.buildpack,
        stack: { name: 'heroku-22' },
        // The checks of the app.json packed in this slug (checked, with notes, before the build).
        ...(health.checks ? { healthchecks: health.checks } : {}),
        created_at: now,
        updated_at: now,
      };
      const ops: TxnOp[] = [putOp(keys.slug(slug.id), codecs.slug, slug)];
      if (this.machine) ops.push(putOp(keys.slugCopy(hex, this.machine), codecs.slugCopy, { machine: this.machine, size, at: now }));
      const r = await this.store.txn({ compare: [], success: ops });
      this.pin(hex, r.revision);
      return slug;
    } finally {
      const n = (this.holds.get(hex) ?? 1) - 1;
      if (n > 0) this.holds.set(hex, n);
      else this.holds.delete(hex);
    }
  }

  /** Keeps `hex` until the replicator has seen `revision` (a slug record that makes it live). */
  pin(hex: string, revision: number): void {
    if (revision > this.seen && revision > (this.pins.get(hex) ?? 0)) this.pins.set(hex, revision);
  }

  pinned(hex: string): boolean {
    return this.holds.has(hex) || (this.pins.get(hex) ?? 0) > this.seen;
  }

  /** The replicator has applied everything up to `revision`: pins below it have done their job. */
  settle(revision: number): void {
    if (revision <= this.seen) return;
    this.seen = revision;
    for (const [hex, rev] of this.pins) if (rev <= revision) this.pins.delete(hex);
  }

  /**
   * Writes a blob received from another machine: streamed to a temp file while its size and
   * SHA-256 are checked, renamed into place only when both match, then recorded as held here.
   * A blob that fails either check is never kept.
   */
  async receive(hex: string, expectedSize: number | undefined, body: Readable, onProgress?: () => void): Promise<string> {
    mustHex(hex);
    const limit = expectedSize ?? this.maxBytes;
    const tmp = join(this.dir, `.${hex}.${randomUUID()}.tmp`);
    const m = meter(limit, () => new BerthError('slug_copy_corrupt', `the blob is larger than the ${limit} bytes expected`), onProgress);
    try {
      await pipeline(body, m.stream, createWriteStream(tmp, { mode: 0o600 }));
      const got = m.digest();
      if (got !== hex) throw new BerthError('slug_copy_corrupt', `the blob failed its checksum (got SHA256:${got})`);
      if (expectedSize !== undefined && m.size() !== expectedSize) throw new BerthError('slug_copy_corrupt', `the blob has ${m.size()} bytes, ${expectedSize} expected`);
      renameSync(tmp, join(this.dir, `${hex}.tgz`));
      this.hashed(hex);
    } finally {
      rmSync(tmp, { force: true });
    }
    await this.record(hex, m.size());
    return join(this.dir, `${hex}.tgz`);
  }

  /**
   * Checks that this machine's blob of `checksum` hashes to it before anyone unpacks it (a disk
   * fault, or a file changed behind Berth's back); one that does not is deleted with its copy
   * record, and `slug_checksum_mismatch` is thrown. A blob this process wrote or already checked,
   * unchanged since (same inode, size, mtime and ctime), is not read again.
   */
  async verify(checksum: string): Promise<string> {
    const hex = mustHex(checksum);
    const path = join(this.dir, `${hex}.tgz`);
    const before = identity(path);
    if (before !== undefined && this.verified.get(hex) === before) return path;
    const got = await sha256File(path).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') throw new BerthError('slug_missing', `slug blob SHA256:${hex} is not on this machine`);
      throw err;
    });
    if (got !== hex) {
      this.verified.delete(hex);
      await this.remove(hex, true);
      throw new BerthError('slug_checksum_mismatch', `slug blob SHA256:${hex} on this machine hashes to SHA256:${got}; it was deleted and will not be unpacked`);
    }
    if (before !== undefined && identity(path) === before) this.verified.set(hex, before);
    return path;
  }

  /** `hex`'s blob was just hashed while it was written. */
  private hashed(hex: string): void {
    const id = identity(join(this.dir, `${hex}.tgz`));
    if (id !== undefined) this.verified.set(hex, id);
  }

  /** Says in the store that this machine holds `hex`. */
  async record(hex: string, size: number): Promise<void> {
    if (!this.machine) return;
    await this.store.txn({ compare: [], success: [putOp(keys.slugCopy(hex, this.machine), codecs.slugCopy, { machine: this.machine, size, at: new Date().toISOString() })] });
  }

  /**
   * Deletes this machine's blob of `hex` and its copy record; false (nothing done) while the blob
   * is pinned. The record goes after the file, so no machine is pointed at a blob that is gone for
   * longer than the delete takes.
   */
  async remove(hex: string, force = false): Promise<boolean> {
    mustHex(hex);
    if (this.pinned(hex) && !force) return false;
    this.verified.delete(hex);
    rmSync(join(this.dir, `${hex}.tgz`), { force: true });
    await this.unrecord(hex);
    return true;
  }

  async unrecord(hex: string): Promise<void> {
    if (this.machine) await this.store.txn({ compare: [], success: [deleteOp(keys.slugCopy(hex, this.machine))] });
  }

  /** The blobs on disk, by hex; temp files a killed process left (older than an hour) are removed on the way. */
  local(): Set<string> {
    const out = new Set<string>();
    for (const f of readdirSync(this.dir)) {
      const m = /^([0-9a-f]{64})\.tgz$/.exec(f);
      if (m) out.add(m[1] as string);
      else if (f.endsWith('.tmp')) {
        try {
          if (statSync(join(this.dir, f)).mtimeMs < Date.now() - 3600_000) rmSync(join(this.dir, f), { force: true });
        } catch {
          // Renamed or removed meanwhile.
        }
      }
    }
    return out;
  }

  /**
   * Keeps the slugs of an app's newest `keep` releases (and any release still current) and deletes
   * the rest; a blob goes only when no slug record of any app points at it any more. This reads
   * every slug record: it is what a node without a running replicator does (the replicator keeps
   * an index and collects per app, and every server removes its own blobs).
   */
  async gc(appId: string, referenced: Set<string>): Promise<number> {
    const all = (await list(this.store, keys.slugs(), codecs.slug)).map((e) => e.value);
    const doomed = all.filter((s) => s.app_id === appId && !referenced.has(s.id));
    for (const s of doomed) await this.store.delete(keys.slug(s.id));
    const live = new Set(all.filter((s) => !doomed.includes(s)).map((s) => s.checksum));
    for (const s of doomed) {
      const hex = checksumHex(s.checksum);
      // Decided on a fresh read of every record, not on the replicator's view: pins do not apply.
      if (hex && !live.has(s.checksum)) await this.remove(hex, true);
    }
    return doomed.length;
  }

  size(checksum: string): number {
    return statSync(this.blobPath(checksum)).size;
  }

  open(checksum: string, start = 0): NodeJS.ReadableStream {
    return createReadStream(this.blobPath(checksum), { start });
  }
}
