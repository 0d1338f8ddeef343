import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tar from 'tar';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Builder } from '../../src/builder/builder.js';
import { createLogger } from '../../src/domain/log.js';
import { isBerthError } from '../../src/domain/errors.js';
import { keys } from '../../src/domain/keys.js';
import { OverlayNetwork } from '../../src/network/index.js';
import { defaultSourceAddress } from '../../src/node/network.js';
import { openStore, type Store } from '../../src/store/index.js';
import { testNetwork } from '../support/network.js';
import { testSandbox } from '../support/sandbox.js';
import { Toolchains } from '../../src/builder/toolchains/index.js';
import { TEST_TOOLCHAIN_DIR } from '../support/berth-process.js';

let dir: string;
let store: Store;
let builder: Builder;
let network: OverlayNetwork;
const net = testNetwork();

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-build-'));
  chmodSync(dir, 0o755);
  store = openStore('memory://');
  const log = createLogger('test', { level: 'silent' });
  // Builds run in egress-only namespaces of the real overlay, as on a node (its own names and range).
  mkdirSync(join(dir, 'data', 'network'), { recursive: true, mode: 0o711 });
  network = new OverlayNetwork({ store, log, machine: 'build-test', dir: join(dir, 'data', 'network'), name: net.name, publicIp: (await defaultSourceAddress()) ?? '127.0.0.1', request: { network: net.overlay, backend: net.backend }, publicPorts: [], internalAddresses: [] });
  await network.start();
  // The operator allows buildpacks from the test's own directory only.
  const toolchains = new Toolchains({ dir: TEST_TOOLCHAIN_DIR, log });
  // The operator's extra CA bundle sits where no build uid can read it (as under /root).
  mkdirSync(join(dir, 'private'), { mode: 0o700 });
  writeFileSync(join(dir, 'private', 'proxy-ca.pem'), '-----BEGIN CERTIFICATE----- operator proxy CA\n');
  builder = new Builder({ store, log, dataDir: join(dir, 'data'), sandbox: testSandbox(), network, timeoutMs: 120_000, buildpackDirs: [dir], toolchains, extraCaCerts: join(dir, 'private', 'proxy-ca.pem') });
});
afterAll(async () => {
  await network?.stop();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The build namespaces of this test's network that exist now. */
function buildNamespaces(): string[] {
  return execFileSync('ip', ['netns', 'list']).toString().split('\n').map((l) => l.split(' ')[0] ?? '').filter((n) => n.startsWith(`${net.name}-`));
}

/** A workspace of an app that exists in the store (its uid is allocated there). */
async function workspace(appId: string): ReturnType<Builder['workspace']> {
  await store.put(keys.app(appId), JSON.stringify({ id: appId, name: 'test' }));
  return builder.workspace(appId);
}

async function buildFiles(appId: string, files: Record<string, string>, config: Record<string, string> = {}) {
  const ws = await workspace(appId);
  for (const [name, body] of Object.entries(files)) {
    mkdirSync(join(ws.appDir, name, '..'), { recursive: true });
    writeFileSync(join(ws.appDir, name), body);
  }
  let output = '';
  try {
    const r = await builder.build({ id: appId, name: 'test' }, ws, config, 'abc1234', (t) => (output += t));
    const extracted = join(dir, `slug-${r.slug.id}`);
    mkdirSync(extracted);
    await tar.x({ file: builder.slugs.blobPath(r.slug.checksum), cwd: extracted });
    return { ...r, output, extracted };
  } catch (err) {
    return { err, output };
  } finally {
    builder.removeWorkspace(ws.root);
  }
}

describe('builds with the built-in buildpacks', () => {
  it('builds a Procfile-only app: process types from the Procfile', async () => {
    const r = await buildFiles('00000000-0000-4000-8000-00000000000a', { Procfile: 'web: python3 -m http.server $PORT\nworker: sleep infinity\n', 'README': 'hi' });
    expect(r.output).toContain('-----> Procfile app detected');
    expect('slug' in r && r.slug.process_types).toEqual({ web: 'python3 -m http.server $PORT', worker: 'sleep infinity' });
    expect('slug' in r && r.slug.checksum).toMatch(/^SHA256:[0-9a-f]{64}$/);
  });

  it('builds a static site with the built-in static server', async () => {
    const r = await buildFiles('00000000-0000-4000-8000-00000000000b', { 'index.html': '<h1>hi</h1>' });
    expect(r.output).toContain('-----> Static site detected');
    if (!('slug' in r)) throw r.err;
    expect(r.slug.process_types).toEqual({ web: 'node .berth/static-server.cjs' });
    expect(existsSync(join(r.extracted, '.berth/static-server.cjs'))).toBe(true);
  });

  it('builds a Node app with a lockfile: npm ci, build scripts, .profile.d', async () => {
    const pkg = {
      name: 'node-app',
      version: '1.0.0',
      engines: { node: '>=18' },
      scripts: { 'heroku-prebuild': 'echo prebuild > pre.txt', build: 'node -e "require(\'fs\').writeFileSync(\'built.txt\', process.env.GREETING)"', 'heroku-postbuild': 'echo post > post.txt', start: 'node server.js' },
    };
    const lock = { name: 'node-app', version: '1.0.0', lockfileVersion: 3, requires: true, packages: { '': { name: 'node-app', version: '1.0.0' } } };
    const r = await buildFiles('00000000-0000-4000-8000-00000000000c', { 'package.json': JSON.stringify(pkg), 'package-lock.json': JSON.stringify(lock), 'server.js': '' }, { GREETING: 'from config' });
    if (!('slug' in r)) throw Object.assign(new Error(r.output), { cause: r.err });
    // Heroku's steps, in order; with a lockfile, `npm ci`; `heroku-postbuild` runs instead of `build`.
    expect(r.output).toMatch(/-----> Node.js app detected[\s\S]*-----> Installing binaries[\s\S]*-----> Prebuild[\s\S]*-----> Installing dependencies\n {7}Installing node modules\n[\s\S]*-----> Build[\s\S]*heroku-postbuild/);
    expect(r.output).toMatch(/Detected both "build" and "heroku-postbuild" scripts/);
    expect(r.slug.process_types).toEqual({ web: 'npm start' });
    expect(existsSync(join(r.extracted, 'built.txt'))).toBe(false);
    expect(existsSync(join(r.extracted, 'pre.txt')) && existsSync(join(r.extracted, 'post.txt'))).toBe(true);
    // The app's own Node, vendored as Heroku does (>=18 is held to the LTS line).
    expect(execFileSync(join(r.extracted, '.heroku/node/bin/node'), ['--version']).toString()).toMatch(/^v24\./);
    expect(readFileSync(join(r.extracted, '.profile.d/nodejs.sh'), 'utf8')).toContain('node_modules/.bin');
  });

  it('fails clearly when engines.node cannot be found, and when nothing detects', async () => {
    const bad = await buildFiles('00000000-0000-4000-8000-00000000000d', { 'package.json': JSON.stringify({ name: 'x', engines: { node: '14.15.3' } }) });
    expect(String((bad as { err: Error }).err.message)).toMatch(/14\.15\.3/);
    expect(isBerthError((bad as { err: unknown }).err, 'node_version_not_found')).toBe(true);
    const none = await buildFiles('00000000-0000-4000-8000-00000000000e', { 'main.c': 'int main(){}' });
    expect(isBerthError((none as { err: unknown }).err, 'no_buildpack')).toBe(true);
  });

  it('keeps the build away from the data dir and from other apps\' workspaces', async () => {
    writeFileSync(join(dir, 'data', 'state.secret'), 'platform secret');
    const other = await workspace('00000000-0000-4000-8000-0000000000ff');
    writeFileSync(join(other.appDir, 'secret.txt'), 'other app source');
    execFileSync('chmod', ['-R', 'go-rwx', other.root]);
    const script = `cat ${join(dir, 'data', 'state.secret')} ${join(other.appDir, 'secret.txt')} ${join(dir, 'data', 'slugs')}/* 2>&1; ls /; exit 0`;
    builder.removeWorkspace(other.root);
    const spy = await buildFiles('00000000-0000-4000-8000-00000000002f', {
      'package.json': JSON.stringify({ name: 'spy', scripts: { build: `bash spy.sh > spy.out` } }),
      'package-lock.json': JSON.stringify({ name: 'spy', lockfileVersion: 3, requires: true, packages: { '': { name: 'spy' } } }),
      'spy.sh': script,
    });
    if (!('slug' in spy)) throw Object.assign(new Error(spy.output), { cause: spy.err });
    const seen = readFileSync(join(spy.extracted, 'spy.out'), 'utf8');
    expect(seen).not.toContain('platform secret');
    expect(seen).not.toContain('other app source');
    expect(seen).toMatch(/No such file or directory/);
  });
});

describe("a build's network", () => {
  it('runs in a namespace of its own with a resolver it can reach, removed once the build is done', async () => {
    const r = await buildFiles('00000000-0000-4000-8000-00000000006a', {
      'package.json': JSON.stringify({ name: 'netspy', scripts: { build: 'bash net.sh' } }),
      'package-lock.json': JSON.stringify({ name: 'netspy', lockfileVersion: 3, requires: true, packages: { '': { name: 'netspy' } } }),
      'net.sh': 'cut -d: -f1 /proc/net/dev | tail -n +3 | tr -d " " > net.out; cat /etc/resolv.conf > resolv.out; /usr/sbin/ip -o -4 addr show > addr.out 2>&1; exit 0',
    });
    if (!('slug' in r)) throw Object.assign(new Error(r.output), { cause: r.err });
    const links = readFileSync(join(r.extracted, 'net.out'), 'utf8').split('\n').filter(Boolean).sort();
    // Its loopback and its end of a veth, nothing else; an overlay address, none of the host's.
    expect(links).toEqual(['eth0', 'lo']);
    const [base = ''] = net.overlay.split('.0.0/');
    const addrs = readFileSync(join(r.extracted, 'addr.out'), 'utf8');
    expect(addrs).toContain(`inet ${base}.`);
    expect(addrs).not.toContain(`inet ${network.info().publicIp}/`);
    expect(readFileSync(join(r.extracted, 'resolv.out'), 'utf8')).toMatch(/Written by berth/);
    expect(buildNamespaces()).toEqual([]);
  });
});

describe('build limits', () => {
  it('stops a build past BUILD_TIMEOUT with a clear message', async () => {
    const started = Date.now();
    const r = await buildFiles('00000000-0000-4000-8000-00000000004a', {
      'package.json': JSON.stringify({ name: 't', scripts: { build: 'sleep 30' } }),
    }, { BUILD_TIMEOUT: '2' });
    expect(isBerthError((r as { err: unknown }).err, 'build_timed_out')).toBe(true);
    expect(String((r as { err: Error }).err.message)).toMatch(/time limit of 2 s \(set BUILD_TIMEOUT/);
    expect(Date.now() - started).toBeLessThan(15_000);
  });
});

describe('custom buildpacks', () => {
  function makeBuildpack(name: string, marker: string): string {
    const bp = join(dir, `bp-${name}`);
    mkdirSync(join(bp, 'bin'), { recursive: true });
    writeFileSync(join(bp, 'bin', 'detect'), '#!/bin/bash\necho Custom\n');
    writeFileSync(join(bp, 'bin', 'compile'), `#!/bin/bash\nset -e\necho "-----> ${name} buildpack"\necho "${marker}" >> "$1/markers.txt"\necho "env sees: $(cat "$3/GREETING")"\n`);
    writeFileSync(join(bp, 'bin', 'release'), `#!/bin/bash\necho "---"\necho "default_process_types:"\necho "  web: ./serve-${name}"\n`);
    execFileSync('chmod', ['-R', 'a+rx', bp]);
    return bp;
  }

  it("gives every build the operator's extra CA bundle as NODE_EXTRA_CA_CERTS, readable by the build's uid", async () => {
    const bp = join(dir, 'bp-ca');
    mkdirSync(join(bp, 'bin'), { recursive: true });
    writeFileSync(join(bp, 'bin', 'detect'), '#!/bin/bash\necho CA\n');
    writeFileSync(join(bp, 'bin', 'compile'), '#!/bin/bash\nset -e\necho "ca at $NODE_EXTRA_CA_CERTS: $(head -c 50 "$NODE_EXTRA_CA_CERTS")"\n');
    writeFileSync(join(bp, 'bin', 'release'), '#!/bin/bash\necho "--- {}"\n');
    execFileSync('chmod', ['-R', 'a+rx', bp]);
    const r = await buildFiles('00000000-0000-4000-8000-00000000003e', { 'main.txt': 'x' }, { BUILDPACK_URL: bp });
    if (!('slug' in r)) throw Object.assign(new Error(r.output), { cause: r.err });
    expect(r.output).toContain('ca at /berth/extra-ca.pem: -----BEGIN CERTIFICATE----- operator proxy CA');
  });

  it('uses BUILDPACK_URL from a git URL', async () => {
    const bp = makeBuildpack('gitpack', 'from git');
    for (const args of [['init', '-q', '-b', 'main'], ['add', '.'], ['-c', 'user.email=a@b', '-c', 'user.name=a', 'commit', '-qm', 'bp']]) execFileSync('git', args, { cwd: bp });
    const r = await buildFiles('00000000-0000-4000-8000-00000000003a', { 'main.txt': 'x' }, { BUILDPACK_URL: `file://${bp}`, GREETING: 'hello' });
    if (!('slug' in r)) throw Object.assign(new Error(r.output), { cause: r.err });
    expect(r.output).toMatch(/Fetching buildpack file:\/\//);
    expect(r.output).toMatch(/gitpack buildpack[\s\S]*env sees: hello/);
    expect(readFileSync(join(r.extracted, 'markers.txt'), 'utf8')).toBe('from git\n');
    expect(r.slug.process_types).toEqual({ web: './serve-gitpack' });
  });

  it('runs app.json buildpacks in order, built-ins by heroku/<name>, the last one\'s defaults winning', async () => {
    const a = makeBuildpack('first', 'one');
    const lock = { name: 'multi', lockfileVersion: 3, requires: true, packages: { '': { name: 'multi' } } };
    const r = await buildFiles('00000000-0000-4000-8000-00000000003b', {
      'app.json': JSON.stringify({ buildpacks: [{ url: a }, { url: 'heroku/nodejs' }] }),
      'package.json': JSON.stringify({ name: 'multi', scripts: { start: 'node index.js' } }),
      'package-lock.json': JSON.stringify(lock),
    }, { GREETING: 'hi' });
    if (!('slug' in r)) throw Object.assign(new Error(r.output), { cause: r.err });
    expect(r.output).toMatch(/Using buildpacks: .*bp-first, nodejs/);
    expect(r.output.indexOf('first buildpack')).toBeLessThan(r.output.indexOf('Node.js app detected'));
    expect(r.slug.process_types).toEqual({ web: 'npm start' });
  });

  it('fails clearly for a buildpack it cannot fetch, and refuses host paths the operator did not allow', async () => {
    const missing = await buildFiles('00000000-0000-4000-8000-00000000003c', { 'x.txt': 'x' }, { BUILDPACK_URL: `file://${dir}/nonexistent.git` });
    expect(isBerthError((missing as { err: unknown }).err, 'invalid_buildpack')).toBe(true);
    for (const url of ['/etc', `file://${join(dir, 'data', 'repos')}`, 'git://example.com/x.git', `${dir}/../etc`, 'ext::sh -c id']) {
      const r = await buildFiles('00000000-0000-4000-8000-00000000003d', { 'x.txt': 'x' }, { BUILDPACK_URL: url });
      expect(isBerthError((r as { err: unknown }).err, 'invalid_buildpack'), url).toBe(true);
    }
  });
});

describe('hostile source trees', () => {
  it('never lets a build steer root into reading a host file through Procfile or app.json', async () => {
    writeFileSync(join(dir, 'data', 'admin.token'), 'root-secret-token');
    const viaBuild = await buildFiles('00000000-0000-4000-8000-00000000005a', {
      'package.json': JSON.stringify({ name: 'evil', scripts: { build: 'ln -sf ../../../admin.token Procfile && ln -sf /etc/passwd app.json' } }),
    });
    expect(viaBuild.output + String((viaBuild as { err?: Error }).err?.message)).not.toContain('root-secret-token');
    expect(isBerthError((viaBuild as { err: unknown }).err, 'invalid_params')).toBe(true);
    expect(String((viaBuild as { err: Error }).err.message)).toMatch(/Procfile is a symbolic link/);
  });

  it('does not hang on a FIFO planted as Procfile', async () => {
    const started = Date.now();
    const r = await buildFiles('00000000-0000-4000-8000-00000000005b', { 'package.json': JSON.stringify({ name: 'fifo', scripts: { build: 'mkfifo Procfile' } }) });
    expect(String((r as { err: Error }).err.message)).toMatch(/Procfile must be a regular file/);
    expect(Date.now() - started).toBeLessThan(20_000);
  });
});

describe('slug store', () => {
  it('shares identical slugs by checksum and deletes a blob only when no record points at it', async () => {
    const src = join(dir, 'gc-src');
    mkdirSync(src);
    writeFileSync(join(src, 'a.txt'), 'same bytes');
    const appA = '00000000-0000-4000-8000-0000000000a1';
    const appB = '00000000-0000-4000-8000-0000000000b1';
    const meta = { processTypes: {}, commit: null, buildpack: null };
    const a1 = await builder.slugs.create(appA, src, meta);
    const a2 = await builder.slugs.create(appA, src, meta);
    const b1 = await builder.slugs.create(appB, src, meta);
    expect(new Set([a1.checksum, a2.checksum, b1.checksum]).size).toBe(1);
    expect(await builder.slugs.gc(appA, new Set([a2.id]))).toBe(1);
    expect(await store.get(`/berth/slugs/${a1.id}`)).toBeUndefined();
    expect(existsSync(builder.slugs.blobPath(a2.checksum))).toBe(true);
    // Another app still points at the blob: it stays when app A keeps nothing.
    await builder.slugs.gc(appA, new Set());
    expect(existsSync(builder.slugs.blobPath(b1.checksum))).toBe(true);
    await builder.slugs.gc(appB, new Set());
    expect(existsSync(builder.slugs.blobPath(b1.checksum))).toBe(false);
  });
});

describe('slug size limit', () => {
  it('refuses a slug over the limit with a clear error and leaves no blob behind', async () => {
    const { SlugStore } = await import('../../src/builder/slugs.js');
    const small = new SlugStore(store, join(dir, 'small-slugs'), 64 * 1024);
    const src = join(dir, 'big-src');
    mkdirSync(src);
    const { randomBytes } = await import('node:crypto');
    writeFileSync(join(src, 'noise.bin'), randomBytes(256 * 1024));
    const err = await small.create('00000000-0000-4000-8000-0000000000c1', src, { processTypes: {}, commit: null, buildpack: null }).catch((e: unknown) => e);
    expect(isBerthError(err, 'invalid_params')).toBe(true);
    expect(String((err as Error).message)).toMatch(/Slug is larger than the 64 KB limit/);
    const { readdirSync } = await import('node:fs');
    expect(readdirSync(join(dir, 'small-slugs'))).toEqual([]);
  });
});
