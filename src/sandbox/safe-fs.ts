import { spawn } from 'node:child_process';
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { invalid } from '../domain/errors.js';

/**
 * Reads a file a tenant controls (their Procfile, app.json) as root without letting them choose
 * what root reads: no symlink is followed (a link to admin.token is refused, not read), a FIFO or
 * device does not block the process (O_NONBLOCK, then only regular files), and size is capped.
 * Returns undefined when the file does not exist.
 */
export function readTenantFile(dir: string, name: string, maxBytes = 1024 * 1024): string | undefined {
  if (name.includes('/')) throw new Error('readTenantFile takes a name in dir, not a path');
  let fd: number;
  try {
    fd = openSync(join(dir, name), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ELOOP') throw invalid(`${name} is a symbolic link; it must be a regular file.`);
    throw err;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw invalid(`${name} must be a regular file.`);
    if (st.size > maxBytes) throw invalid(`${name} is larger than ${Math.round(maxBytes / 1024)} KB.`);
    const buf = Buffer.alloc(st.size);
    let off = 0;
    while (off < st.size) {
      const n = readSync(fd, buf, off, st.size - off, off);
      if (n === 0) break;
      off += n;
    }
    return buf.subarray(0, off).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

/**
 * Unpacks a tarball (from `source`) into `dest` as the app's unprivileged uid with GNU tar: a
 * tenant's symlinks can then only lead where that uid may write anyway, never where root may.
 */
export function extractAs(uid: number, source: Readable, dest: string, gzip: boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', 'tar', '-x', ...(gzip ? ['-z'] : []), '--no-same-owner', '-C', dest, '-f', '-'], {
      stdio: ['pipe', 'ignore', 'pipe'],
      env: { PATH: '/usr/bin:/bin', LANG: 'C' },
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    source.on('error', (err) => {
      child.kill('SIGKILL');
      reject(err);
    });
    source.pipe(child.stdin);
    child.stdin.on('error', () => undefined);
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`unpacking failed: ${stderr.trim() || `tar exited with ${code}`}`))));
  });
}
