import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBerth, type BerthProcess } from '../support/berth-process.js';
import { apiClient } from '../support/api.js';
import { git } from '../support/e2e.js';
import { untilWith } from '../support/until.js';
import { runHeroku } from '../support/heroku.js';

const ADMIN = 'one-off-admin-token-0123456789abcdef';
const APP = 'one-off-app';
const ROOT = join(import.meta.dirname, '../..');
const MAIN = join(ROOT, 'src/cli/main.ts');
let berth: BerthProcess;
let dir: string;
let dataDir: string;
let home: string;

interface Run {
  code: number | null;
  out: string;
  err: string;
}

const api = apiClient(() => berth.apiUrl, ADMIN);

/**
 * `berth ARGS` as its own process, as a user runs it; the child is handed out for live checks.
 * With `input`, that is its stdin (a pipe); `onTerminal` runs it on a pseudo-terminal instead
 * (util-linux script), as a person at a terminal would, and hands out a way to type.
 */
function berthCli(args: string[], onStart?: (child: ChildProcess) => void, o: { input?: string | Buffer; onTerminal?: boolean } = {}): Promise<Run> {
  return new Promise((resolve) => {
    // From the project, where `--import tsx` resolves; -a names the app.
    const argv = [process.execPath, '--import', 'tsx', MAIN, ...args];
    const quoted = argv.map((a) => `'${a.replaceAll("'", `'\\''`)}'`).join(' ');
    // script's terminal has no size unless told: give it a usual one.
    const [bin = '', ...rest] = o.onTerminal ? ['script', '-qefc', `stty rows 30 cols 100; exec ${quoted}`, '/dev/null'] : argv;
    const child = spawn(bin, rest, {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, BERTH_API_URL: berth.apiUrl, BERTH_API_KEY: ADMIN, TERM: 'xterm' },
      stdio: [o.input !== undefined || o.onTerminal ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    });
    if (o.input !== undefined) child.stdin?.end(o.input);
    const run: Run = { code: null, out: '', err: '' };
    child.stdout?.on('data', (d: Buffer) => (run.out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (run.err += d.toString()));
    child.on('exit', (code) => resolve({ ...run, code }));
    onStart?.(Object.assign(child, { run }));
  });
}

/** The official heroku CLI, as test/e2e/heroku-cli.test.ts drives it. */
const heroku = (args: string[], env: Record<string, string> = {}, input?: string): Promise<Run> =>
  runHeroku({ apiUrl: berth.apiUrl, token: ADMIN, home, timeoutMs: 60_000, env, ...(input !== undefined ? { input } : {}) }, args);

const until = untilWith({ timeoutMs: 30_000, intervalMs: 150, context: () => berth.stderr().slice(-3000) });

interface DynoJson {
  name: string;
  type: string;
  state: string;
  command: string;
  attach_url: string | null;
}
const runDynos = async (): Promise<DynoJson[]> => (await api<DynoJson[]>('GET', `/apps/${APP}/dynos`)).body.filter((d) => d.type === 'run');

async function logs(): Promise<string> {
  const session = await api<{ logplex_url: string }>('POST', `/apps/${APP}/log-sessions`, { lines: 1500 });
  return (await fetch(session.body.logplex_url)).text();
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-one-off-'));
  chmodSync(dir, 0o755);
  dataDir = join(dir, 'data');
  home = join(dir, 'home');
  mkdirSync(home);
  berth = await startBerth(['--data-dir', dataDir], { BERTH_BOOTSTRAP_TOKEN: ADMIN });
  await api('POST', '/apps', { name: APP });
  await api('PATCH', `/apps/${APP}/config-vars`, { GREETING: 'hello' });
  const repo = join(dir, 'repo');
  mkdirSync(repo);
  // No web process: nothing but the one-off dynos under test runs.
  writeFileSync(join(repo, 'Procfile'), 'worker: sleep 3600\ngreet: echo greeting-$GREETING\n');
  writeFileSync(join(repo, 'hello.txt'), 'from the slug\n');
  for (const args of [['init', '-q', '-b', 'main'], ['add', '.'], ['-c', 'user.email=a@b', '-c', 'user.name=a', 'commit', '-qm', 'one'], ['remote', 'add', 'berth', `${berth.apiUrl.replace('http://', `http://git:${ADMIN}@`)}/${APP}.git`]]) {
    await git(repo, ...args);
  }
  const push = await git(repo, 'push', 'berth', 'main');
  if (push.code !== 0) throw new Error(`push failed:\n${push.out}`);
}, 120_000);
afterAll(async () => {
  await berth?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('one-off dynos', () => {
  it('berth run streams the output live, lists the dyno in ps while it runs, and exits with its status', async () => {
    let seenLive = '';
    let listed: DynoJson[] = [];
    const run = await berthCli(['run', '-a', APP, '--', 'echo first; sleep 3; echo second >&2; exit 3'], (child) => {
      const live = child as ChildProcess & { run: Run };
      void until('the first line, live', async () => (live.run.out.includes('first') ? true : undefined)).then(async () => {
        seenLive = live.run.out + live.run.err;
        listed = await runDynos();
      }, () => undefined);
    });
    expect(run.code, run.err).toBe(3);
    // Before the dyno wrote its second line, the first was already on the terminal.
    expect(seenLive).toMatch(/^first$/m);
    expect(seenLive).not.toMatch(/^second$/m);
    expect(listed).toEqual([expect.objectContaining({ type: 'run', state: 'up', name: expect.stringMatching(/^run\.\d+$/) as string, command: 'echo first; sleep 3; echo second >&2; exit 3' })]);
    expect(run.out).toBe('first\n');
    expect(run.err).toContain('second\n');
    expect(run.err).toContain(`Running echo first; sleep 3; echo second >&2; exit 3 on ⬢ ${APP}... up, ${listed[0]?.name}`);
    // Gone from ps once it has exited; its lines are in the app's logs.
    expect(await runDynos()).toEqual([]);
    const text = await logs();
    const name = listed[0]?.name ?? '';
    expect(text).toContain(`berth[${name}]: Starting process with command \`echo first; sleep 3; echo second >&2; exit 3\` by user admin@berth.localhost`);
    // An attached session's output is its client's alone, as on Heroku; run:detached's is logged.
    expect(text).not.toContain(`app[${name}]: first`);
    expect(text).toContain(`berth[${name}]: Process exited with status 3`);
  }, 60_000);

  it('berth run gives the command its stdin: piped input, then EOF', async () => {
    const run = await berthCli(['run', '-a', APP, '--', 'read name; echo hello-$name; wc -l; tty || true'], undefined, { input: 'world\nl1\nl2\nl3\n' });
    expect(run.code, run.err).toBe(0);
    // From a pipe, no terminal: the dyno reads the lines as sent and its stdin ends with them.
    expect(run.out).toBe('hello-world\n3\nnot a tty\n');
    // Bytes arrive as sent, however many: 3 MiB of every byte value, through the pipe's backpressure.
    const bytes = Buffer.alloc(3 * 1024 * 1024, Buffer.from(Array.from({ length: 256 }, (_, i) => i)));
    const sum = await berthCli(['run', '-a', APP, '--', 'sha256sum'], undefined, { input: bytes });
    expect(sum.code, sum.err).toBe(0);
    expect(sum.out).toBe(`${createHash('sha256').update(bytes).digest('hex')}  -\n`);
  }, 30_000);

  it('berth run on a terminal runs the dyno on a tty: a shell answers what is typed, Ctrl-C interrupts', async () => {
    const type = (child: ChildProcess, after: RegExp, text: string): void => {
      const live = child as ChildProcess & { run: Run };
      void until(`${after} on the terminal`, async () => (after.test(live.run.out) ? true : undefined)).then(() => child.stdin?.write(text), () => child.kill());
    };
    const shell = await berthCli(['run', '-a', APP, 'bash'], (child) => type(child, /up, run\.\d+/, 'tty; stty size; echo answer-$((6*7))\nexit 3\n'), { onTerminal: true });
    expect(shell.code).toBe(3);
    // Lines end \r\n, as a tty writes them (this side's own tty adds another \r: as heroku's).
    expect(shell.out).toMatch(/\/dev\/pts\/\d+\r+\n/);
    // The size of this side's terminal.
    expect(shell.out).toMatch(/30 100\r+\n/);
    expect(shell.out).toMatch(/answer-42\r+\n/);
    expect(shell.out).toMatch(/\$ exit 3\r+\n/);

    // Ctrl-C reaches the dyno's tty, which interrupts its foreground process (128 + SIGINT).
    const started = Date.now();
    const interrupted = await berthCli(['run', '-a', APP, '--', 'echo ready; sleep 60; echo never'], (child) => type(child, /\nready\r/, '\u0003'), { onTerminal: true });
    expect(interrupted.code).toBe(130);
    expect(interrupted.out).not.toMatch(/\nnever\r/);
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(await runDynos()).toEqual([]);
  }, 60_000);

  it("sees the release's config vars, --env overrides, DYNO and the Procfile's process types", async () => {
    const env = await berthCli(['run', '-a', APP, '-e', 'EXTRA=x;GREETING=over', '--', 'echo', '$GREETING $EXTRA $DYNO', '$PS']);
    expect(env.code, env.err).toBe(0);
    expect(env.out).toMatch(/^over x (run\.\d+) \1\n$/);
    const plain = await berthCli(['run', '-a', APP, 'echo $GREETING; cat hello.txt']);
    expect(plain.out).toBe('hello\nfrom the slug\n');
    const type = await berthCli(['run', '-a', APP, 'greet']);
    expect(type.out).toBe('greeting-hello\n');
  }, 60_000);

  it('runs in a namespace of its own at an overlay address (HEROKU_PRIVATE_IP, which --env cannot bend), gone when the run ends', async () => {
    const run = await berthCli(['run', '-a', APP, '-e', 'HEROKU_PRIVATE_IP=6.6.6.6', '--', 'echo $HEROKU_PRIVATE_IP; /usr/sbin/ip -o -4 addr show dev eth0']);
    expect(run.code, run.err).toBe(0);
    const [ip = '', addr = ''] = run.out.split('\n');
    const subnet = (berth.summary.network as { subnet: string }).subnet;
    expect(ip.startsWith(subnet.replace(/0\/24$/, ''))).toBe(true);
    expect(addr).toContain(`inet ${ip}/32`);
    // Its host route went with its namespace.
    await until('the route gone', () => (execFileSync('ip', ['route', 'show', `${ip}/32`]).toString().trim() === '' ? true : undefined));
  }, 30_000);

  it("runs in the app's sandbox: not root, no view of the data dir", async () => {
    const run = await berthCli(['run', '-a', APP, '--', `id -u; whoami; ls ${dataDir}; cat ${join(dataDir, 'admin.token')}`]);
    expect(run.code).not.toBe(0);
    const uid = Number(run.out.split('\n')[0]);
    expect(uid).toBeGreaterThan(0);
    // Named as on Heroku, though the host has no such user.
    expect(run.out.split('\n')[1]).toBe(`u${uid}`);
    expect(run.out + run.err).not.toContain(ADMIN);
    expect(run.err).toMatch(/No such file or directory/);
  }, 30_000);

  it('stops on DELETE, and when its client hangs up', async () => {
    const created = await api<DynoJson>('POST', `/apps/${APP}/dynos`, { command: 'sleep 600', attach: false });
    expect(created.status).toBe(201);
    const name = created.body.name;
    expect(created.body).toMatchObject({ type: 'run', command: 'sleep 600', attach_url: null });
    await until('the detached dyno up', async () => ((await runDynos()).some((d) => d.name === name && d.state === 'up') ? true : undefined));
    expect((await api('GET', `/apps/${APP}/dynos/${name}`)).body).toMatchObject({ name, state: 'up' });
    const stop = await api('DELETE', `/apps/${APP}/dynos/${name}`);
    expect(stop.status).toBe(202);
    await until('the dyno gone', async () => ((await runDynos()).length === 0 ? true : undefined));
    await until('its exit in the logs', async () => ((await logs()).includes(`berth[${name}]: Process exited with status 143`) ? true : undefined));
    expect((await api('DELETE', `/apps/${APP}/dynos/${name}`)).status).toBe(404);

    // time_to_live bounds a dyno however it runs.
    const bounded = await api<DynoJson>('POST', `/apps/${APP}/dynos`, { command: 'sleep 600', attach: false, time_to_live: 1 });
    await until('the bounded dyno gone', async () => ((await runDynos()).length === 0 ? true : undefined), 10_000);
    expect(await logs()).toContain(`berth[${bounded.body.name}]: Stopping process (time to live exceeded)`);

    let attached: DynoJson[] = [];
    const hungUp = await berthCli(['run', '-a', APP, '--', 'sleep 600'], (child) => {
      void until('the attached dyno up', async () => {
        const up = (await runDynos()).filter((d) => d.state === 'up');
        return up.length > 0 ? up : undefined;
      }).then((up) => {
        attached = up;
        child.kill('SIGKILL');
      }, () => child.kill('SIGKILL'));
    });
    expect(hungUp.code).toBeNull();
    expect(attached).toHaveLength(1);
    await until('the hung-up dyno gone', async () => ((await runDynos()).length === 0 ? true : undefined));
    expect(await logs()).toContain(`berth[${attached[0]?.name}]: Stopping process (client disconnected)`);
  }, 60_000);

  it('answers 404 to a stranger and 422 for an app without a slug or an empty command', async () => {
    const bob = await api<{ token: string }>('POST', '/berth/users', { email: 'bob@example.com' });
    const stranger = await api<{ id: string }>('POST', `/apps/${APP}/dynos`, { command: 'ls', attach: true }, { token: bob.body.token });
    expect(stranger.status).toBe(404);
    expect(stranger.body.id).toBe('not_found');
    expect((await api('DELETE', `/apps/${APP}/dynos/run.1234`, undefined, { token: bob.body.token })).status).toBe(404);
    await api('POST', '/apps', { name: 'bare-app' });
    const bare = await api<{ id: string; message: string }>('POST', '/apps/bare-app/dynos', { command: 'ls' });
    expect(bare.status).toBe(422);
    expect(bare.body).toEqual({ id: 'invalid_params', message: expect.stringMatching(/no release with a slug/) as string });
    for (const command of ['', '   ']) {
      const empty = await api<{ id: string }>('POST', `/apps/${APP}/dynos`, { command });
      expect(empty.status).toBe(422);
      expect(empty.body.id).toBe('invalid_params');
    }
    const cli = await berthCli(['run', '-a', 'bare-app', 'ls']);
    expect(cli.code).toBe(1);
    expect(cli.err).toMatch(/no release with a slug/);
  }, 30_000);

  it('works with the official heroku CLI through the rendezvous port, trusting its certificate', async () => {
    const cert = String(berth.summary.rendezvous_cert);
    const trusted = { NODE_EXTRA_CA_CERTS: cert };
    // -x appends `; echo <marker> $?` to the command, so the status must come from a command, not `exit`.
    const withCode = await heroku(['run', '-a', APP, '-x', '--', 'echo from-heroku $GREETING; sh -c "exit 4"'], trusted);
    expect(withCode.code, withCode.err).toBe(4);
    expect(withCode.out).toContain('from-heroku hello');
    const plain = await heroku(['run', '-a', APP, '--', 'echo', 'plain', '$DYNO'], trusted);
    expect(plain.code, plain.err).toBe(0);
    expect(plain.out).toMatch(/plain run\.\d+/);
    expect(plain.err).toMatch(/Running echo plain \$DYNO on (⬢ )?one-off-app\.\.\. up, run\.\d+/);
    // Its stdin reaches the dyno: a shell on a tty (the default) reads the commands piped in, and
    // --no-tty gets a plain pipe whose end (the CLI's ^D) the command reads as EOF.
    const shell = await heroku(['run', '-a', APP, 'bash'], trusted, 'tty\necho answer-$((6*7))\nexit\n');
    expect(shell.code, shell.err).toBe(0);
    expect(shell.out).toMatch(/^\/dev\/pts\/\d+$/m);
    expect(shell.out).toMatch(/^answer-42$/m);
    const piped = await heroku(['run', '-a', APP, '--no-tty', '--', 'wc -l; tty'], trusted, 'a\nb\nc\n');
    expect(piped.out).toBe('3\nnot a tty\n');
    // run:detached and ps:stop: the output goes to the logs; ps:stop ends the dyno.
    const detached = await heroku(['run:detached', '-a', APP, '--', 'echo detached-$GREETING; sleep 600']);
    expect(detached.code, detached.err).toBe(0);
    const started = /(run\.\d+)/.exec(detached.out + detached.err)?.[1] ?? '';
    await until('the detached output in the logs', async () => ((await logs()).includes(`app[${started}]: detached-hello`) ? true : undefined));
    expect((await heroku(['ps:stop', started, '-a', APP])).code).toBe(0);
    await until('the detached dyno gone', async () => ((await runDynos()).length === 0 ? true : undefined));

    // The CLI verifies the certificate and offers no switch to skip that.
    const untrusted = await heroku(['run', '-a', APP, '--', 'echo', 'never']);
    expect(untrusted.code).not.toBe(0);
    expect(untrusted.out).not.toContain('never');
    expect(untrusted.err).toMatch(/self[- ]signed certificate/);
    // Its dyno waits for a client that never came (Heroku's attach window): stop it.
    const [waiting] = await runDynos();
    expect(waiting).toMatchObject({ state: 'starting', attach_url: null });
    expect((await api('DELETE', `/apps/${APP}/dynos/${waiting?.name}`)).status).toBe(202);
    await until('no dyno left behind', async () => ((await runDynos()).length === 0 ? true : undefined));
  }, 120_000);
});
