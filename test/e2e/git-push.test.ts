import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient } from '../support/api.js';
import { startBerth, type BerthProcess } from '../support/berth-process.js';

interface Run {
  code: number;
  out: string;
}

function git(cwd: string, ...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile('git', args, { cwd, timeout: 120_000, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: cwd, GIT_TERMINAL_PROMPT: '0' } }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }),
    );
  });
}

let berth: BerthProcess;
let dir: string;
const ADMIN = 'push-admin-token-0123456789abcdef';

const api = apiClient(() => berth.apiUrl, ADMIN).ok;

/** A git checkout of `files`, with a berth remote carrying `token` as the HTTP password. */
async function repo(name: string, app: string, token: string, files: Record<string, string>): Promise<string> {
  const path = join(dir, name);
  mkdirSync(path);
  for (const [file, body] of Object.entries(files)) {
    mkdirSync(join(path, file, '..'), { recursive: true });
    writeFileSync(join(path, file), body);
  }
  await git(path, 'init', '-q', '-b', 'main');
  await git(path, 'config', 'user.email', 'dev@example.com');
  await git(path, 'config', 'user.name', 'Dev');
  await git(path, 'add', '.');
  await git(path, 'commit', '-qm', 'initial');
  const url = new URL(`${berth.apiUrl}/${app}.git`);
  url.username = 'git';
  url.password = token;
  await git(path, 'remote', 'add', 'berth', url.toString());
  return path;
}

async function releases(app: string): Promise<{ version: number; description: string; slug: { id: string } | null }[]> {
  return api('GET', `/apps/${app}/releases`);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-push-'));
  chmodSync(dir, 0o755);
  berth = await startBerth(['--data-dir', join(dir, 'data')], { BERTH_BOOTSTRAP_TOKEN: ADMIN });
}, 60_000);
afterAll(async () => {
  await berth?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('git push over HTTP', () => {
  it('builds a Node app with a lockfile and a build step into a release', async () => {
    await api('POST', '/apps', { name: 'node-push' });
    await api('PATCH', '/apps/node-push/config-vars', { GREETING: 'hi' });
    const pkg = { name: 'node-push', version: '1.0.0', scripts: { build: 'node -e "require(\'fs\').writeFileSync(\'dist.txt\', process.env.GREETING)"', start: 'node server.js' } };
    const lock = { name: 'node-push', version: '1.0.0', lockfileVersion: 3, requires: true, packages: { '': { name: 'node-push', version: '1.0.0' } } };
    const path = await repo('node', 'node-push', ADMIN, { 'package.json': JSON.stringify(pkg), 'package-lock.json': JSON.stringify(lock), 'server.js': '', Procfile: 'web: npm start\nworker: node worker.js\n' });
    const push = await git(path, 'push', 'berth', 'main');
    expect(push.code, push.out).toBe(0);
    expect(push.out).toMatch(/remote: -----> Building on the Heroku-style stack/);
    expect(push.out).toMatch(/remote: -----> Node\.js app detected/);
    expect(push.out).toMatch(/remote: -----> Build\s[\s\S]*remote: {8}Running build/);
    expect(push.out).toMatch(/remote: {8}Released v3/);
    expect(push.out).toMatch(/remote: {8}http:\/\/node-push\.berth\.localhost\/ deployed to Berth/);
    const list = await releases('node-push');
    const last = list[list.length - 1];
    expect(last).toMatchObject({ version: 3, description: expect.stringMatching(/^Deploy [0-9a-f]{7}/) });
    const slug = await api<{ process_types: Record<string, string>; checksum: string; commit: string }>('GET', `/apps/node-push/slugs/${last?.slug?.id}`);
    expect(slug.process_types).toEqual({ web: 'npm start', worker: 'node worker.js' });
    expect(slug.checksum).toMatch(/^SHA256:/);
    const builds = await api<{ status: string; output: string }[]>('GET', '/apps/node-push/builds');
    expect(builds.map((b) => b.status)).toEqual(['succeeded']);
    // Now web and worker can be scaled: the release defines them.
    expect((await api<{ quantity: number }[]>('PATCH', '/apps/node-push/formation', { updates: [{ type: 'worker', quantity: 1 }] }))[0]?.quantity).toBe(1);
  });

  it('builds a static site and a Procfile-only app', async () => {
    await api('POST', '/apps', { name: 'static-push' });
    const site = await repo('static', 'static-push', ADMIN, { 'index.html': '<h1>hello</h1>' });
    const s = await git(site, 'push', 'berth', 'main');
    expect(s.code, s.out).toBe(0);
    expect(s.out).toMatch(/Static site detected/);
    await api('POST', '/apps', { name: 'proc-push' });
    const proc = await repo('proc', 'proc-push', ADMIN, { Procfile: 'web: python3 -m http.server $PORT\n' });
    const p = await git(proc, 'push', 'berth', 'main');
    expect(p.code, p.out).toBe(0);
    expect(p.out).toMatch(/Procfile app detected/);
  });

  it('rejects a failing build: non-zero exit, no release, ref unchanged; a fixed push then succeeds', async () => {
    await api('POST', '/apps', { name: 'fail-push' });
    const path = await repo('fail', 'fail-push', ADMIN, { 'package.json': JSON.stringify({ name: 'f', scripts: { build: 'exit 3' } }) });
    const push = await git(path, 'push', 'berth', 'main');
    expect(push.code).not.toBe(0);
    expect(push.out).toMatch(/Push rejected, failed to compile fail-push/);
    expect(push.out).toMatch(/pre-receive hook declined/);
    expect((await git(path, 'ls-remote', 'berth')).out.trim()).toBe('');
    expect((await releases('fail-push')).map((r) => r.version)).toEqual([1]);
    writeFileSync(join(path, 'package.json'), JSON.stringify({ name: 'f', scripts: { build: 'true' } }));
    await git(path, 'commit', '-qam', 'fix');
    const retry = await git(path, 'push', 'berth', 'main');
    expect(retry.code, retry.out).toBe(0);
    expect((await releases('fail-push')).map((r) => r.version)).toEqual([1, 2]);
  });

  it('refuses other branches and strangers; lets collaborators push and clone', async () => {
    await api('POST', '/apps', { name: 'guarded' });
    const path = await repo('guarded', 'guarded', ADMIN, { Procfile: 'web: sleep 1\n' });
    const branch = await git(path, 'push', 'berth', 'main:feature');
    expect(branch.code).not.toBe(0);
    expect(branch.out).toMatch(/Berth builds main or master only/);
    const stranger = await api<{ token: string }>('POST', '/berth/users', { email: 'stranger@example.com' });
    const theirs = await repo('stranger', 'guarded', stranger.token, { Procfile: 'web: evil\n' });
    const denied = await git(theirs, 'push', 'berth', 'main');
    expect(denied.code).not.toBe(0);
    expect(denied.out).toMatch(/not found|404/i);
    const friend = await api<{ token: string }>('POST', '/berth/users', { email: 'friend@example.com' });
    await api('POST', '/apps/guarded/collaborators', { user: 'friend@example.com' });
    const mine = await repo('friend', 'guarded', friend.token, { Procfile: 'web: sleep 2\n' });
    const ok = await git(mine, 'push', 'berth', 'main');
    expect(ok.code, ok.out).toBe(0);
    const url = new URL(`${berth.apiUrl}/guarded.git`);
    url.username = 'git';
    url.password = friend.token;
    const clone = await git(dir, 'clone', '-q', url.toString(), 'guarded-clone');
    expect(clone.code, clone.out).toBe(0);
  });

  it('serialises two concurrent pushes to one app: the second waits, then is refused cleanly, and a re-push lands', async () => {
    await api('POST', '/apps', { name: 'busy' });
    const slow = { 'package.json': JSON.stringify({ name: 'b', scripts: { build: 'sleep 2' } }) };
    const a = await repo('busy-a', 'busy', ADMIN, slow);
    const b = await repo('busy-b', 'busy', ADMIN, { ...slow, 'other.txt': 'b' });
    const [ra, rb] = await Promise.all([git(a, 'push', 'berth', 'main'), new Promise<Run>((r) => setTimeout(() => void git(b, 'push', 'berth', 'main').then(r), 300))]);
    expect(ra.code, ra.out).toBe(0);
    // git cannot move a ref the pusher saw at another value: Berth says so before building anything.
    expect(rb.code).not.toBe(0);
    expect(rb.out).toMatch(/Waiting for another build of busy to finish/);
    expect(rb.out).toMatch(/main was updated by another push while this one waited/);
    expect((await releases('busy')).map((r) => r.version)).toEqual([1, 2]);
    const again = await git(b, 'push', '--force', 'berth', 'main');
    expect(again.code, again.out).toBe(0);
    expect((await releases('busy')).map((r) => r.version)).toEqual([1, 2, 3]);
  });
});

describe('release phase', () => {
  it('runs release: once per release; a failure marks that release failed and keeps the previous one current', async () => {
    await api('POST', '/apps', { name: 'phased' });
    await api('PATCH', '/apps/phased/config-vars', { MIGRATE: 'ok' });
    const path = await repo('phased', 'phased', ADMIN, {
      Procfile: 'web: sleep 1\nrelease: echo "migrating with $MIGRATE as $DYNO"; test "$MIGRATE" = ok\n',
      'app.json': JSON.stringify({ scripts: { postdeploy: 'echo seeding once' } }),
    });
    const first = await git(path, 'push', 'berth', 'main');
    expect(first.code, first.out).toBe(0);
    expect(first.out).toMatch(/remote: migrating with ok as release\.1/);
    expect(first.out).toMatch(/remote: seeding once/);
    let list = await releases('phased');
    expect(list.map((r) => [r.version, (r as unknown as { status: string }).status, (r as unknown as { current: boolean }).current])).toEqual([
      [1, 'succeeded', false],
      [2, 'succeeded', false],
      [3, 'succeeded', true],
    ]);
    // A config change runs the release phase too; this one fails it.
    await api('PATCH', '/apps/phased/config-vars', { MIGRATE: 'broken' });
    for (let i = 0; i < 100; i++) {
      list = await releases('phased');
      if ((list[3] as unknown as { status: string }).status !== 'pending') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(list.map((r) => [r.version, (r as unknown as { status: string }).status, (r as unknown as { current: boolean }).current]).slice(2)).toEqual([
      [3, 'succeeded', true],
      [4, 'failed', false],
    ]);
    // A second deploy does not run postdeploy again.
    writeFileSync(join(path, 'x.txt'), 'x');
    await git(path, 'add', '.');
    await git(path, 'commit', '-qm', 'second');
    await api('PATCH', '/apps/phased/config-vars', { MIGRATE: 'ok' });
    const second = await git(path, 'push', 'berth', 'main');
    expect(second.code, second.out).toBe(0);
    expect(second.out).not.toMatch(/seeding once/);
  });
});

describe('builds and slugs', () => {
  it('serves slug blobs with byte ranges, streams build output, and cancels a running build', async () => {
    await api('POST', '/apps', { name: 'slugged' });
    const path = await repo('slugged', 'slugged', ADMIN, { Procfile: 'web: sleep 1\n', 'data.txt': 'x'.repeat(5000) });
    expect((await git(path, 'push', 'berth', 'main')).code).toBe(0);
    const list = await releases('slugged');
    const slugId = list[list.length - 1]?.slug?.id;
    const slug = await api<{ blob: { url: string }; checksum: string; size: number }>('GET', `/apps/slugged/slugs/${slugId}`);
    const auth = { authorization: `Bearer ${ADMIN}` };
    const whole = Buffer.from(await (await fetch(slug.blob.url, { headers: auth })).arrayBuffer());
    expect(whole.length).toBe(slug.size);
    const { createHash } = await import('node:crypto');
    expect(`SHA256:${createHash('sha256').update(whole).digest('hex')}`).toBe(slug.checksum);
    const tail = await fetch(slug.blob.url, { headers: { ...auth, range: 'bytes=100-' } });
    expect(tail.status).toBe(206);
    expect(tail.headers.get('content-range')).toBe(`bytes 100-${slug.size - 1}/${slug.size}`);
    expect(Buffer.from(await tail.arrayBuffer()).equals(whole.subarray(100))).toBe(true);
    expect((await fetch(slug.blob.url, { headers: { ...auth, range: `bytes=${slug.size}-` } })).status).toBe(416);
    const stranger = await api<{ token: string }>('POST', '/berth/users', { email: 'slug-stranger@example.com' });
    expect((await fetch(slug.blob.url, { headers: { authorization: `Bearer ${stranger.token}` } })).status).toBe(404);

    // A slow build: follow its output live, then cancel it.
    writeFileSync(join(path, 'package.json'), JSON.stringify({ name: 's', scripts: { build: 'echo started-slow-build; sleep 30' } }));
    await git(path, 'add', '.');
    await git(path, 'commit', '-qm', 'slow');
    const pushing = git(path, 'push', 'berth', 'main');
    let running: { id: string; status: string } | undefined;
    for (let i = 0; i < 100 && !running; i++) {
      await new Promise((r) => setTimeout(r, 100));
      running = (await api<{ id: string; status: string }[]>('GET', '/apps/slugged/builds')).find((b) => b.status === 'pending');
    }
    expect(running).toBeDefined();
    const output = fetch(`${berth.apiUrl}/apps/slugged/builds/${running?.id}/output`, { headers: auth }).then((r) => r.text());
    for (let i = 0; i < 100; i++) {
      const b = await api<{ output: string }>('GET', `/apps/slugged/builds/${running?.id}`);
      if (b.output.includes('started-slow-build')) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    await new Promise((r) => setTimeout(r, 500));
    const cancel = await fetch(`${berth.apiUrl}/apps/slugged/builds/${running?.id}/cancel`, { method: 'POST', headers: auth });
    expect(cancel.status).toBe(202);
    const push = await pushing;
    expect(push.code).not.toBe(0);
    expect(push.out).toMatch(/Build canceled/);
    expect(await output).toMatch(/started-slow-build[\s\S]*Build canceled/);
    const after = await api<{ id: string; status: string }[]>('GET', '/apps/slugged/builds');
    expect(after.find((b) => b.id === running?.id)?.status).toBe('failed');
  }, 60_000);
});

describe('git push over SSH to berth up', () => {
  it('pushes with a key registered through the API', async () => {
    const { execFileSync } = await import('node:child_process');
    const { readFileSync } = await import('node:fs');
    const keyFile = join(dir, 'id_push');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'pusher@ssh', '-f', keyFile]);
    await api('POST', '/account/keys', { public_key: readFileSync(`${keyFile}.pub`, 'utf8') });
    await api('POST', '/apps', { name: 'ssh-push' });
    const path = await repo('ssh-push', 'ssh-push', ADMIN, { Procfile: 'web: sleep 1\n' });
    await git(path, 'remote', 'set-url', 'berth', `ssh://git@127.0.0.1:${String(berth.summary.ssh_port)}/ssh-push.git`);
    const push = await new Promise<Run>((resolve) =>
      execFile('git', ['push', 'berth', 'main'], {
        cwd: path,
        timeout: 60_000,
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: path, GIT_SSH_COMMAND: `ssh -i ${keyFile} -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null` },
      }, (err, stdout, stderr) => resolve({ code: err ? 1 : 0, out: stdout + stderr })),
    );
    expect(push.code, push.out).toBe(0);
    expect(push.out).toMatch(/Released v2/);
  });
});
