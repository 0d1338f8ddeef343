import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Builder } from '../../src/builder/builder.js';
import { buildTimeout } from '../../src/builder/build-timeout.js';
import { writeEnvDir } from '../../src/builder/compile.js';
import { SandboxSlugRunner } from '../../src/builder/release-phase.js';
import { put } from '../../src/domain/codec.js';
import { isBerthError } from '../../src/domain/errors.js';
import { keys } from '../../src/domain/keys.js';
import { createLogger } from '../../src/domain/log.js';
import { codecs } from '../../src/domain/records.js';
import { OverlayNetwork } from '../../src/network/index.js';
import { defaultSourceAddress } from '../../src/node/network.js';
import { openStore, type Store } from '../../src/store/index.js';
import { testNetwork } from '../support/network.js';
import { testSandbox } from '../support/sandbox.js';

/**
 * What a build may take of the node: its disk (one volume for app dir, /tmp and cache), its time
 * (BUILD_TIMEOUT clamped), the names it may turn into files (ENV_DIR), and slugs whose bytes are
 * not what their checksum says are never unpacked.
 */

const DISK = 256 * 1024 * 1024;
let dir: string;
let store: Store;
let builder: Builder;
let network: OverlayNetwork;
// Kernel names and a range of this worker's own (testNetwork): other suites run side by side.
const net = testNetwork();

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-build-limits-'));
  chmodSync(dir, 0o755);
  store = openStore('memory://');
  const log = createLogger('test', { level: 'silent' });
  mkdirSync(join(dir, 'data', 'network'), { recursive: true, mode: 0o711 });
  network = new OverlayNetwork({ store, log, machine: 'build-limits', dir: join(dir, 'data', 'network'), name: net.name, publicIp: (await defaultSourceAddress()) ?? '127.0.0.1', request: { network: net.overlay, backend: net.backend }, publicPorts: [], internalAddresses: [] });
  await network.start();
  builder = new Builder({ store, log, dataDir: join(dir, 'data'), sandbox: testSandbox(), network, timeoutMs: 120_000, buildpackDirs: [dir], diskBytes: DISK });
}, 60_000);
afterAll(async () => {
  await network?.stop();
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A buildpack in the operator's allowed dir whose compile step is `script` (bash, cwd /app). */
function buildpack(name: string, script: string): string {
  const bp = join(dir, `bp-${name}`);
  mkdirSync(join(bp, 'bin'), { recursive: true });
  writeFileSync(join(bp, 'bin', 'detect'), '#!/bin/bash\necho Limits\n');
  writeFileSync(join(bp, 'bin', 'compile'), `#!/bin/bash\ncd "$1"\n${script}\n`);
  writeFileSync(join(bp, 'bin', 'release'), '#!/bin/bash\necho "--- {}"\n');
  execFileSync('chmod', ['-R', 'a+rx', bp]);
  return bp;
}

async function build(appId: string, config: Record<string, string>) {
  await store.put(keys.app(appId), JSON.stringify({ id: appId, name: 'limits' }));
  const ws = await builder.workspace(appId);
  writeFileSync(join(ws.appDir, 'README'), 'x');
  execFileSync('chown', [`${ws.uid}:${ws.uid}`, join(ws.appDir, 'README')]);
  let output = '';
  try {
    const r = await builder.build({ id: appId, name: 'limits' }, ws, config, 'abc1234', (t) => (output += t));
    return { ...r, output, root: ws.root };
  } catch (err) {
    return { err, output, root: ws.root };
  } finally {
    await builder.releaseWorkspace(ws.root);
  }
}

function mountsUnder(path: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4] ?? '').filter((m) => m.startsWith(`${path}/`));
}

describe("a build's disk", () => {
  it('gets ENOSPC past its volume, in its app dir and in /tmp, and leaves nothing on the host', async () => {
    const work = join(dir, 'data', 'work');
    // 3 GiB asked for, into the app dir; then /tmp; each write's failure is printed.
    const bp = buildpack('disk', 'head -c 3221225472 /dev/zero > big 2>/dev/null; echo "app dir write: $? $(stat -c %s big)"\nrm -f big\nerr=$(head -c 3221225472 /dev/zero 2>&1 > /tmp/big); echo "tmp write: $err $(stat -c %s /tmp/big)"\nexit 1');
    const r = await build('00000000-0000-4000-8000-0000000001a1', { BUILDPACK_URL: bp });
    expect(isBerthError((r as { err: unknown }).err, 'build_failed'), r.output).toBe(true);
    const app = /app dir write: (\d+) (\d+)/.exec(r.output);
    expect(Number(app?.[1]), r.output).not.toBe(0);
    expect(Number(app?.[2])).toBeLessThanOrEqual(DISK);
    expect(r.output).toMatch(/tmp write: .*No space left on device/);
    expect(Number(/tmp write: .* (\d+)\n/.exec(r.output)?.[1])).toBeLessThanOrEqual(DISK);
    // The volume is unmounted and its image gone: nothing of the build stays on the host's disk
    // (the host's free space is no measure: other suites allocate theirs meanwhile).
    expect(mountsUnder(work)).toEqual([]);
    expect(readdirSync(work).filter((f) => f.endsWith('.img'))).toEqual([]);
  }, 60_000);

  it('unmounts and removes the workspaces a builder killed mid-build left, before its next build', async () => {
    const work = join(dir, 'data', 'work');
    const app = '00000000-0000-4000-8000-0000000001a5';
    await store.put(keys.app(app), JSON.stringify({ id: app, name: 'limits' }));
    // Never released: what a SIGKILL leaves behind.
    const left = await builder.workspace(app);
    expect(mountsUnder(work)).toEqual([left.root]);
    const next = new Builder({ store, log: createLogger('test', { level: 'silent' }), dataDir: join(dir, 'data'), sandbox: testSandbox(), network, diskBytes: DISK });
    const ws = await next.workspace(app);
    expect(mountsUnder(work)).toEqual([ws.root]);
    expect(existsSync(left.root)).toBe(false);
    expect(existsSync(`${left.root}.img`)).toBe(false);
    await next.releaseWorkspace(ws.root);
    expect(mountsUnder(work)).toEqual([]);
  }, 60_000);

  it('keeps the cache between builds, inside the same limit', async () => {
    const app = '00000000-0000-4000-8000-0000000001a2';
    const bp = buildpack('cache', 'echo "cache had: $(cat "$2/n" 2>/dev/null || echo none)"; echo one > "$2/n"');
    const first = await build(app, { BUILDPACK_URL: bp });
    expect(first.output).toMatch(/cache had: none/);
    const second = await build(app, { BUILDPACK_URL: bp });
    expect(second.output).toMatch(/cache had: one/);
  }, 60_000);
});

describe('BUILD_TIMEOUT', () => {
  it('is clamped to the operator maximum with a line saying so, and ignored with a line when not a number', () => {
    const lines: string[] = [];
    const out = (t: string): number => lines.push(t);
    expect(buildTimeout('999999', 15 * 60_000, 60 * 60_000, out)).toBe(60 * 60_000);
    expect(lines.join('')).toMatch(/BUILD_TIMEOUT=999999 is above this platform's maximum; the build is limited to 3600 s/);
    expect(buildTimeout('120', 15 * 60_000, 60 * 60_000, out)).toBe(120_000);
    expect(buildTimeout(undefined, 15 * 60_000, 10 * 60_000, out)).toBe(10 * 60_000);
    expect(buildTimeout('soon', 15 * 60_000, 60 * 60_000, out)).toBe(15 * 60_000);
    expect(lines.join('')).toMatch(/BUILD_TIMEOUT="soon" is not a positive number of seconds/);
  });

  it('says so in a real build', async () => {
    const bp = buildpack('quick', 'echo built');
    const r = await build('00000000-0000-4000-8000-0000000001a3', { BUILDPACK_URL: bp, BUILD_TIMEOUT: '999999' });
    expect(r.output).toMatch(/BUILD_TIMEOUT=999999 is above this platform's maximum; the build is limited to 3600 s/);
  }, 60_000);
});

describe("ENV_DIR's file names", () => {
  it('refuses a config var name that is not a plain variable name, with a line, and writes the rest', () => {
    const base = join(dir, 'envtest');
    const env = join(base, 'a', 'env');
    mkdirSync(env, { recursive: true });
    let out = '';
    writeEnvDir(env, { GOOD_1: 'yes', '../x': 'escaped', '../../y': 'escaped', 'A/B': 'x', '.hidden': 'x', '': 'x' }, (t) => (out += t));
    expect(readdirSync(env)).toEqual(['GOOD_1']);
    expect(existsSync(join(base, 'a', 'x'))).toBe(false);
    expect(existsSync(join(base, 'y'))).toBe(false);
    expect(out).toMatch(/Config var "\.\.\/x" is not a valid variable name; it is left out of the build's ENV_DIR/);
    expect(out.split('\n').filter(Boolean)).toHaveLength(5);
  });
});

describe('slug checksums', () => {
  it('refuses and deletes a stored slug whose bytes do not hash to its checksum, before the release phase unpacks it', async () => {
    const app = '00000000-0000-4000-8000-0000000001a4';
    await store.put(keys.app(app), JSON.stringify({ id: app, name: 'limits' }));
    const src = join(dir, 'slug-src');
    mkdirSync(src);
    writeFileSync(join(src, 'marker'), 'original');
    const slug = await builder.slugs.create(app, src, { processTypes: {}, commit: null, buildpack: null });
    const path = builder.slugs.blobPath(slug.checksum);
    // Checked once, then trusted while the file is unchanged.
    await expect(builder.slugs.verify(slug.checksum)).resolves.toBe(path);
    // Same size, other bytes: what a disk fault or a tampered file looks like.
    const bytes = readFileSync(path);
    bytes[bytes.length - 10] = (bytes[bytes.length - 10] ?? 0) ^ 0xff;
    writeFileSync(path, bytes);
    await put(store, keys.slug(slug.id), codecs.slug, slug);
    const runner = new SandboxSlugRunner(store, builder);
    let output = '';
    const ran = runner.run({ appId: app, slugId: slug.id, config: {}, command: 'cat /app/marker', dyno: 'release.1', output: (t) => (output += t) });
    await expect(ran).rejects.toSatisfy((e: unknown) => isBerthError(e, 'slug_checksum_mismatch'));
    expect(output).toBe('');
    expect(existsSync(path)).toBe(false);
  }, 60_000);
});
