import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tar from 'tar';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { randomInt } from 'node:crypto';
import { ProcessRuntime } from '../../src/agent/runtime/process.js';
import type { DynoSpec, RunningDyno } from '../../src/agent/runtime/types.js';
import { UID_BASE, UID_COUNT } from '../../src/sandbox/index.js';
import { scratchNetns } from '../support/network.js';
import { freePort } from '../support/ports.js';
import { CGROUP_ROOT, testSandbox } from '../support/sandbox.js';
import { until } from '../support/until.js';
import { describeRuntimeConformance, type RuntimeCommands } from './runtime-conformance.js';

const SERVER = `
const http = require('node:http');
process.on('SIGTERM', () => { console.log('graceful'); process.exit(0); });
http.createServer((req, res) => {
  res.end(JSON.stringify({ dyno: process.env.DYNO, ps: process.env.PS, home: process.env.HOME, greeting: process.env.GREETING, profile: process.env.FROM_PROFILE, uid: process.getuid() }));
}).listen(Number(process.env.PORT), () => console.log('listening'));
`;

let dir: string;
let slugPath: string;
let secret: string;
let runtime: ProcessRuntime;
let n = 0;
const started: RunningDyno[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-runtime-'));
  // Dyno uids must traverse the temp root to reach the work dir inside it.
  chmodSync(dir, 0o755);
  const src = join(dir, 'src');
  mkdirSync(join(src, '.profile.d'), { recursive: true });
  writeFileSync(join(src, 'server.js'), SERVER);
  writeFileSync(join(src, '.profile.d', 'x.sh'), 'export FROM_PROFILE=profiled\n');
  slugPath = join(dir, 'slug.tgz');
  await tar.c({ gzip: true, cwd: src, file: slugPath, portable: true }, ['.']);
  // Stands for the platform's data dir: beside the work dir, readable by the world on the host.
  mkdirSync(join(dir, 'data'));
  secret = join(dir, 'data', 'admin.token');
  writeFileSync(secret, 'super-secret');
  chmodSync(secret, 0o644);
  runtime = new ProcessRuntime({ workDir: join(dir, 'work'), sandbox: testSandbox() });
});
afterEach(async () => {
  await Promise.all(started.splice(0).map((d) => d.stop(0)));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// The contract's cases, in bash from the slug above (server.js serves and shuts down on SIGTERM).
const COMMANDS: RuntimeCommands = {
  output: "printf 'one\\ntwo\\r\\n\\npar'; printf 'oops\\n' >&2; sleep 0.2; printf 'tial\\nlast'",
  env: (names) => names.map((v) => `echo "${v}=\${${v}-<unset>}"`).join('; '),
  exit: (code) => `exit ${code}`,
  exitAfter: (ms, code) => `sleep ${ms / 1000}; exit ${code}`,
  serve: 'node server.js',
  ignoreSigterm: `node -e 'process.on("SIGTERM", () => console.log("ignored TERM")); console.log("up"); setInterval(() => {}, 1000)'`,
  allocate: (bytes) => `node -e 'globalThis.held = Buffer.alloc(${bytes}, 1); console.log("allocated")'`,
  fill: (dir, mib) => `out=$(dd if=/dev/zero of=${dir}/fill.$$.$RANDOM bs=1M count=${mib} 2>&1) && echo wrote || case "$out" in *"No space left"*) echo "no space";; *) echo "$out";; esac`,
  prompt: `printf 'name? '; read -r line; echo "hi $line"; echo bye >&2`,
  count: 'wc -c',
  ttyCheck: 'if [ -t 0 ] && [ -t 1 ]; then echo "tty $(stty size)"; else echo "no tty"; fi',
};
// The file's own beforeAll (it runs first) made the runtime and the slug; its afterAll removes them.
describeRuntimeConformance('process', { tty: true }, async () => ({ runtime, slugPath, commands: COMMANDS, teardown: async () => undefined }));

async function start(command: string, extra: Partial<DynoSpec> = {}): Promise<{ dyno: RunningDyno; lines: string[]; spec: DynoSpec }> {
  const lines: string[] = [];
  const spec: DynoSpec = {
    id: `t${process.pid}-${n++}`,
    appId: `app-${process.pid}-${n}`,
    // An app's uid comes from the store (allocateUid); any uid of the app range stands for one here.
    uid: UID_BASE + randomInt(UID_COUNT),
    dyno: 'web.1',
    command,
    slugPath,
    env: { GREETING: 'hello' },
    memoryBytes: 256 * 1024 * 1024,
    pidsMax: 100,
    onOutput: (_stream, line) => lines.push(line),
    ...extra,
  };
  const dyno = await runtime.start(spec);
  started.push(dyno);
  return { dyno, lines, spec };
}

async function run(command: string, extra: Partial<DynoSpec> = {}): Promise<{ code: number | null; oomKilled: boolean; output: string }> {
  const { dyno, lines } = await start(command, extra);
  const r = await dyno.exited;
  return { ...r, output: lines.join('\n') };
}

/**
 * Live host pids running as uid: the test's view of what a dyno left behind, independent of
 * cgroups. Zombies are skipped: bwrap exits as soon as its namespace init reports the exit status,
 * leaving that init for the host's pid 1 to reap, which a bare VM or container init may never do.
 */
/**
 * No process of the uid is left. A killed task leaves its cgroup early in its exit, before /proc
 * shows it as a zombie, so on a busy machine an empty cgroup can briefly meet a /proc entry still
 * exiting: give the kernel a moment to finish, then insist.
 */
async function noneLeft(uid: number): Promise<void> {
  await until('no process of the dyno left', () => pidsOf(uid).length === 0, 2000).catch(() => undefined);
  expect(pidsOf(uid)).toEqual([]);
}

function pidsOf(uid: number): number[] {
  return readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        const status = readFileSync(`/proc/${p}/status`, 'utf8');
        return new RegExp(`^Uid:\\s+${uid}\\s`, 'm').test(status) && !/^State:\s+Z/m.test(status);
      } catch {
        return false;
      }
    })
    .map(Number);
}

function cgroupGone(id: string): boolean {
  return ['pids', 'memory', 'cpu'].every((c) => !existsSync(join(CGROUP_ROOT, c, 'berth', `dyno-${id}`)));
}

describe('process runtime', () => {
  it('serves on PORT with the dyno env and .profile.d, as the app uid, and stops gracefully on SIGTERM', async () => {
    const port = await freePort();
    const { dyno, lines, spec } = await start('node server.js', { port, env: { GREETING: 'hello', PORT: '1', DYNO: 'evil', HOME: '/' } });
    const body = await until('the server', async () => (await fetch(`http://127.0.0.1:${port}/`)).json());
    expect(body).toEqual({ dyno: 'web.1', ps: 'web.1', home: '/app', greeting: 'hello', profile: 'profiled', uid: spec.uid });
    expect(pidsOf(spec.uid).length).toBeGreaterThan(0);

    await dyno.stop(10_000);
    expect(lines).toContain('graceful');
    expect(await dyno.exited).toEqual({ code: 0, oomKilled: false });
    await noneLeft(spec.uid);
    expect(cgroupGone(spec.id)).toBe(true);
    expect(existsSync(join(dir, 'work', spec.id))).toBe(false);
  });

  it('unpacks a fresh /app on every start', async () => {
    const script = 'test -e /app/leftover && echo stale || echo fresh; touch /app/leftover; ls /app';
    const app = { appId: 'fresh-app', uid: UID_BASE + randomInt(UID_COUNT) };
    const first = await run(script, app);
    const second = await run(script, app);
    expect(first.output).toContain('server.js');
    expect(first.output).toMatch(/^fresh/);
    expect(second.output).toMatch(/^fresh/);
  });

  it('sees neither the data dir nor anywhere writable outside /app and /tmp', async () => {
    const r = await run(`cat ${secret} 2>&1; ls ${dir} 2>&1; for d in / /etc /usr /var /home; do touch $d/x 2>/dev/null && echo "wrote $d"; done; touch /tmp/x && echo tmp-ok; touch /app/x && echo app-ok`);
    expect(r.output).not.toContain('super-secret');
    expect(r.output).toMatch(/No such file or directory/);
    expect(r.output).not.toContain('wrote');
    expect(r.output).toContain('tmp-ok');
    expect(r.output).toContain('app-ok');
    expect(r.code).toBe(0);
  });

  it("cannot see another app's /app, files or processes", async () => {
    const other = await start('echo other-secret > /app/secret.txt; echo ready; sleep 30');
    await until('the other dyno', () => (other.lines.includes('ready') ? true : undefined));
    const hostDir = join(dir, 'work', other.spec.id, 'disk', 'app');
    expect(readFileSync(join(hostDir, 'secret.txt'), 'utf8')).toBe('other-secret\n');
    // Same host paths, different app: neither the file, nor the dir, nor its sleep is visible.
    const r = await run(`cat ${hostDir}/secret.txt 2>&1; ls ${join(dir, 'work')} 2>&1; ls /proc | grep -c '^[0-9]'; cat /app/secret.txt 2>&1 || echo own-app-clean`);
    expect(r.output).not.toContain('other-secret');
    expect(r.output).toContain('own-app-clean');
    expect(r.output.match(/No such file or directory/g)?.length).toBeGreaterThanOrEqual(2);
    // Its own pid namespace: only its shell (and bwrap's init) and the commands it runs.
    const procs = Number(r.output.split('\n').find((l) => /^\d+$/.test(l)));
    expect(procs).toBeLessThan(6);
  });

  // The kill itself (timing, exit code) is the conformance suite's; what it leaves on the host is this runtime's.
  it('leaves no process or cgroup behind when it kills a process that ignores SIGTERM', async () => {
    const { dyno, lines, spec } = await start(`node -e 'process.on("SIGTERM", () => console.log("ignored TERM")); console.log("up"); setInterval(() => {}, 1000)'`);
    await until('the process', () => (lines.includes('up') ? true : undefined));
    await dyno.stop(500);
    expect(lines).toContain('ignored TERM');
    await noneLeft(spec.uid);
    expect(cgroupGone(spec.id)).toBe(true);
  });

  it('holds a fork bomb to pidsMax and leaves nothing behind', async () => {
    const { dyno, lines, spec } = await start('for i in $(seq 200); do sleep 30 & done; wait', { pidsMax: 50 });
    await until('a fork failure', () => (lines.some((l) => /Resource temporarily unavailable|fork/i.test(l)) ? true : undefined));
    const count = pidsOf(spec.uid).length;
    expect(count).toBeGreaterThan(40);
    expect(count).toBeLessThanOrEqual(50);
    await dyno.stop(500);
    await noneLeft(spec.uid);
    expect(cgroupGone(spec.id)).toBe(true);
  });

  it('runs a dyno inside the network namespace it is given, with its resolv.conf, unable to reconfigure the namespace', async () => {
    const ns = await scratchNetns();
    const resolvConf = join(dir, 'resolv.conf');
    writeFileSync(resolvConf, 'nameserver 192.0.2.53\n', { mode: 0o644 });
    try {
      const script = 'cut -d: -f1 /proc/net/dev | tr -d " " | tail -n +3 | sort | tr "\\n" " "; echo; cat /etc/resolv.conf; /usr/sbin/ip addr add 10.9.9.9/32 dev probe0 2>&1; echo done';
      const r = await run(script, { netns: ns.path, resolvConf });
      expect(r.code).toBe(0);
      const lines = r.output.split('\n');
      expect(lines[0]?.trim()).toBe('lo probe0 probe1');
      expect(lines[1]).toBe('nameserver 192.0.2.53');
      expect(r.output).toMatch(/Operation not permitted/);

      // Its PORT is in its namespace: nothing answers for it on the host's loopback.
      const port = await freePort();
      const web = await start('node server.js', { port, netns: ns.path, resolvConf });
      await until('listening', () => (web.lines.includes('listening') ? true : undefined));
      const reached = await fetch(`http://127.0.0.1:${port}/`).then(() => true, () => false);
      expect(reached).toBe(false);
      await web.dyno.stop(5000);
    } finally {
      await ns.remove();
    }
  });
});
