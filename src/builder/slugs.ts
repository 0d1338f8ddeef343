import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import * as tar from 'tar';
import { list, put } from '../domain/codec.js';
import { invalid } from '../domain/errors.js';
import { codecs } from '../domain/records.js';
import { keys } from '../domain/keys.js';
import type { Store } from '../store/index.js';

import type { SlugRecord } from '../domain/records.js';

export type { SlugRecord };

/**
 * Slugs: the built app dir as a tar.gz, content-addressed by SHA-256 in `<data-dir>/slugs`. The
 * record (`/berth/slugs/<id>`) is what releases point at; identical builds share one blob.
 */
export class SlugStore {
  constructor(
    private readonly store: Store,
    readonly dir: string,
    private readonly maxBytes = 500 * 1024 * 1024,
  ) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  blobPath(checksum: string): string {
    return join(this.dir, `${checksum.replace(/^SHA256:/, '')}.tgz`);
  }

  async create(appId: string, appDir: string, meta: { processTypes: Record<string, string>; commit: string | null; buildpack: string | null }): Promise<SlugRecord> {
    const tmp = join(this.dir, `.${randomUUID()}.tmp`);
    const hash = createHash('sha256');
    let size = 0;
    const limit = this.maxBytes;
    const counter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        size += chunk.length;
        if (size > limit) {
          const shown = limit >= 1024 * 1024 ? `${Math.round(limit / 1024 / 1024)} MB` : `${Math.round(limit / 1024)} KB`;
          return done(invalid(`Slug is larger than the ${shown} limit; remove large files from the build (or commit fewer of them).`));
        }
        hash.update(chunk);
        done(null, chunk);
      },
    });
    try {
      // portable: no uid/gid/mtime noise, so the same tree gives the same checksum.
      await pipeline(tar.c({ gzip: { level: 6 }, cwd: appDir, portable: true, noMtime: true }, ['.']), counter, createWriteStream(tmp, { mode: 0o600 }));
    } catch (err) {
      rmSync(tmp, { force: true });
      throw err;
    }
    const checksum = `SHA256:${hash.digest('hex')}`;
    renameSync(tmp, this.blobPath(checksum));
    const now = new Date().toISOString();
    const slug: SlugRecord = {
      id: randomUUID(),
      app_id: appId,
      checksum,
      size,
      process_types: meta.processTypes,
      commit: meta.commit,
      commit_description: null,
      buildpack_provided_description: meta.buildpack,
      stack: { name: 'heroku-22' },
      created_at: now,
      updated_at: now,
    };
    await put(this.store, keys.slug(slug.id), codecs.slug, slug);
    return slug;
  }

  /**
   * Keeps the slugs of an app's newest `keep` releases (and any release still current) and deletes
   * the rest; a blob goes only when no slug record of any app points at it any more.
   */
  async gc(appId: string, referenced: Set<string>): Promise<number> {
    const all = (await list(this.store, keys.slugs(), codecs.slug)).map((e) => e.value);
    const doomed = all.filter((s) => s.app_id === appId && !referenced.has(s.id));
    for (const s of doomed) await this.store.delete(keys.slug(s.id));
    const live = new Set(all.filter((s) => !doomed.includes(s)).map((s) => s.checksum));
    for (const s of doomed) if (!live.has(s.checksum)) rmSync(this.blobPath(s.checksum), { force: true });
    return doomed.length;
  }

  size(checksum: string): number {
    return statSync(this.blobPath(checksum)).size;
  }

  open(checksum: string, start = 0): NodeJS.ReadableStream {
    return createReadStream(this.blobPath(checksum), { start });
  }
}
