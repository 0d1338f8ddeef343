/**
 * Scheduler benchmark (`npm run bench:scheduler`, issue 5): a real cluster on one host — `berth up
 * --no-agent` and three `berth agent` processes, as test/e2e/cluster.test.ts builds it — running a
 * tiny Node.js HTTP app (Procfile buildpack, no npm dependencies). In one run:
 *
 *   1. dyno start: one dyno, scale request → its published endpoint answering HTTP, against a bare
 *      `node server.js` until its port answers HTTP (N runs each, p50 and the ratio); measured
 *      first, on the quiet cluster, so nothing else competes for the two cores;
 *   2. place and start BENCH_DYNOS dynos (default 200) across the three agents: until every unit is
 *      assigned, every dyno is `up` in the API, and every endpoint is published in the store;
 *   3. failover: SIGKILL one agent; until its lease is gone, every unit it ran is `up` on another
 *      machine, and the published endpoints are all back (none on the dead machine).
 *
 * The formation API caps one process type at 100 dynos (MAX_QUANTITY), so N dynos are spread over
 * ceil(N/100) apps pushed from the same source. Memory limit web=64M (the API's minimum), so N
 * dynos fit the three machines' reported memory (each reports the host's total).
 *
 *   BENCH_DYNOS=200 BENCH_TTL=5 BENCH_STARTS=10 npm run bench:scheduler
 *
 * Everything lives in one temp dir under os.tmpdir(); every process and the dyno cgroups are
 * removed at the end, on failure, on Ctrl-C and at the global timeout (BENCH_TIMEOUT_S).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, cpus, freemem, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { openStore, type Store } from '../src/store/index.js';
import { startAgent, startBerth, type AgentProcess, type BerthProcess } from '../test/support/berth-process.js';
import { appRepo, git } from '../test/support/e2e.js';
import { freePort } from '../test/support/ports.js';
import { percentile, printTable, runBenchmark, sleep, step, withTimeout } from './lib.js';
import { answersHttp, connects, countAnswering, dynoMemory, memAvailable, problems, removeLeftoverCgroups } from './scheduler-probes.js';

const intEnv = (name: string, def: number, min: number, max: number): number => {
  const raw = process.env[name];
  const n = raw === undefined || raw === '' ? def : Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name} must be a whole number between ${min} and ${max}, got "${raw}"`);
  return n;
};

const REQUESTED_DYNOS = intEnv('BENCH_DYNOS', 200, 3, 600);
const TTL = intEnv('BENCH_TTL', 5, 1, 60);
const STARTS = intEnv('BENCH_STARTS', 10, 1, 100);
const TIMEOUT_S = intEnv('BENCH_TIMEOUT_S', 900, 60, 3600);
const AGENTS = ['m1', 'm2', 'm3'];
const PER_APP = 100; // src/controller/model/formation.ts MAX_QUANTITY
const LIMIT = '64M';
// Each dyno's disk is allocated on the host when it starts (1 GiB by default): 200 of those would
// not fit this machine's disk, and a tiny app needs a few MB.
const DISK_LIMIT = '64M';
// What one idle dyno (bwrap + bash + node http server) costs, with headroom: N is capped to fit.
const DYNO_RSS_ESTIMATE = 60 * 1024 * 1024;
// Phase bounds, so a stuck phase fails (and cleans up) instead of hanging.
const PUSH_TIMEOUT_MS = 120_000;
const SCALE_TIMEOUT_MS = 300_000;
const FAILOVER_TIMEOUT_MS = 180_000;
const START_TIMEOUT_MS = 60_000;
const DRAIN_TIMEOUT_MS = 60_000;

const ADMIN = `bench_${randomBytes(16).toString('hex')}`;
const TAG = randomBytes(3).toString('hex');
const ONE = `sched-${TAG}-one`;
const SERVER_JS = `require('http').createServer((q, s) => s.end('ok ' + process.env.DYNO)).listen(process.env.PORT);\n`;
const HOST_PATH = '/usr/local/bin:/usr/bin:/bin';

interface Dyno {
  name: string;
  state: string;
  machine: string | null;
}

const now = (): number => performance.now();
const median = (xs: number[]): number => percentile([...xs].sort((a, b) => a - b), 50);
const secs = (ms: number): string => (ms / 1000).toFixed(2);


// Module-level so cleanup (finally, SIGINT, the global timeout) reaches them.
let dir: string | undefined;
let berth: BerthProcess | undefined;
let store: Store | undefined;
const agents = new Map<string, AgentProcess>();
const children = new Set<ChildProcess>();
const apps: string[] = [];


/** Polls `fn` every `everyMs` until it returns a value; throws after `ms`. */
async function until<T>(what: string, ms: number, everyMs: number, fn: () => Promise<T | undefined>): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms / 1000} s waiting for ${what}`);
    await sleep(everyMs);
  }
}

async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  if (!berth) throw new Error('berth is not running');
  const res = await fetch(`${berth.apiUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json', range: 'name ..; max=1000' },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    signal: AbortSignal.timeout(15_000),
  });
  if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

const scale = (app: string, quantity: number): Promise<unknown> => api('PATCH', `/apps/${app}/formation`, { updates: [{ type: 'web', quantity }] });
const dynosOf = (app: string): Promise<Dyno[]> => api<Dyno[]>('GET', `/apps/${app}/dynos`);

function need(): { store: Store; dir: string } {
  if (!store || !dir) throw new Error('not set up');
  return { store, dir };
}

/** `address:port` of every published endpoint of `app`. */
async function endpoints(app: string): Promise<string[]> {
  return (await need().store.range(`/berth/services/${app}/`, { prefix: true })).kvs.map((kv) => kv.value);
}

/** Unit assignments (`/berth/units/<machine>/<app>.…`) of these apps. */
async function assignments(of: string[]): Promise<number> {
  const kvs = (await need().store.range('/berth/units/', { prefix: true })).kvs;
  return kvs.filter((kv) => of.some((a) => (kv.key.split('/')[4] ?? '').startsWith(`${a}.`))).length;
}

/** Creates the app, sets web's memory and disk limits (before the first release) and pushes the tiny app. */
async function deploy(app: string): Promise<void> {
  const { dir: base } = need();
  if (!berth) throw new Error('berth is not running');
  await api('POST', '/apps', { name: app });
  await api('PATCH', `/apps/${app}/limits`, { web: LIMIT, 'web.disk': DISK_LIMIT });
  const repo = join(base, `repo-${app}`);
  await appRepo(repo, berth.apiUrl, ADMIN, app, { 'server.js': SERVER_JS, Procfile: 'web: node server.js\n' });
  const pushed = await git(repo, 'push', 'berth', 'main');
  if (pushed.code !== 0 || !/Released v\d+/.test(pushed.out)) throw new Error(`git push ${app} failed:\n${pushed.out.slice(-3000)}`);
}

/** Waits until an app runs nothing: no assignment, no status, no endpoint. */
async function drained(app: string): Promise<void> {
  await until(`${app} to run no dyno`, DRAIN_TIMEOUT_MS, 50, async () => {
    const [d, e, u] = await Promise.all([dynosOf(app), endpoints(app), assignments([app])]);
    return d.length === 0 && e.length === 0 && u === 0 ? true : undefined;
  });
}




/** One bare `node server.js`: spawn → its port answers HTTP. The process is killed after. */
async function bareStart(appDir: string): Promise<number> {
  const port = await freePort();
  const t0 = now();
  const child = spawn('node', ['server.js'], { cwd: appDir, env: { PATH: HOST_PATH, LANG: 'C.UTF-8', HOME: appDir, PORT: String(port), DYNO: 'web.1', PS: 'web.1' }, stdio: 'ignore' });
  children.add(child);
  const exited = new Promise((r) => child.once('exit', r));
  try {
    await until('bare node server.js to answer', START_TIMEOUT_MS, 10, async () => {
      if (child.exitCode !== null) throw new Error(`bare node exited with ${child.exitCode}`);
      return (await connects(`127.0.0.1:${port}`)) && (await answersHttp(`127.0.0.1:${port}`)) ? true : undefined;
    });
    return now() - t0;
  } finally {
    child.kill('SIGKILL');
    await exited;
    children.delete(child);
  }
}

interface StartTimes {
  assigned: number;
  starting: number;
  up: number;
  published: number;
  http: number;
}

/** One dyno through Berth: scale 0 → 1 → its endpoint answers HTTP; then back to 0 (untimed). */
async function berthStart(): Promise<StartTimes> {
  const { store: s } = need();
  const t: Partial<StartTimes> = {};
  const t0 = now();
  await scale(ONE, 1);
  await until(`${ONE}.web.1 to answer HTTP`, START_TIMEOUT_MS, 10, async () => {
    const at = now() - t0;
    if (t.assigned === undefined && (await assignments([ONE])) > 0) t.assigned = at;
    const status = (await s.range(`/berth/status/${ONE}.web.1@`, { prefix: true })).kvs.map((kv) => (JSON.parse(kv.value) as { state: string }).state);
    if (t.starting === undefined && status.length > 0) t.starting = at;
    if (t.up === undefined && status.includes('up')) t.up = at;
    const [ep] = await endpoints(ONE);
    if (!ep) return undefined;
    t.published ??= at;
    if (!(await answersHttp(ep))) return undefined;
    t.http = now() - t0;
    return true;
  });
  await scale(ONE, 0);
  await drained(ONE);
  // A stage seen only together with a later one (within one poll) took no longer than that one.
  const http = t.http ?? NaN;
  const published = t.published ?? http;
  const up = t.up ?? published;
  const starting = t.starting ?? up;
  return { assigned: t.assigned ?? starting, starting, up, published, http };
}





let cleaning: Promise<void> | undefined;
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const c of children) c.kill('SIGKILL');
    // Graceful: each agent stops its dynos (and removes their cgroups); SIGKILL after 40 s.
    await Promise.all([...agents.values()].map((a) => a.stop().catch(() => undefined)));
    agents.clear();
    await store?.close().catch(() => undefined);
    store = undefined;
    await berth?.stop().catch(() => undefined);
    berth = undefined;
    const left = await removeLeftoverCgroups(apps);
    if (left.removed > 0) step(`removed ${left.removed} dyno cgroup dirs left behind (a SIGKILLed agent cannot remove its dynos' cgroups)`);
    if (left.killed > 0) step(`WARNING: killed ${left.killed} processes still running in this run's dyno cgroups after the agents stopped`);
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  })();
  return cleaning;
}

async function run(): Promise<void> {
  // Cap N by the host's free memory: every dyno really runs here, whatever the machines report.
  const fit = Math.floor((freemem() * 0.8) / DYNO_RSS_ESTIMATE);
  const N = Math.min(REQUESTED_DYNOS, fit);
  const cores = availableParallelism();
  console.log(`cores: ${cores} (${cpus()[0]?.model ?? 'unknown cpu'}), memory ${(totalmem() / 1024 ** 3).toFixed(1)} GiB (${(freemem() / 1024 ** 3).toFixed(1)} GiB free), node ${process.version}`);
  console.log(`cluster: berth up --no-agent + ${AGENTS.length} berth agent processes on this host, sqlite store, lease TTL ${TTL} s, web memory limit ${LIMIT}`);
  if (N < REQUESTED_DYNOS) console.log(`NOTE: ${REQUESTED_DYNOS} dynos requested, but only ~${fit} fit this host's free memory (~${DYNO_RSS_ESTIMATE / 1024 ** 2} MiB each): running ${N}.`);
  console.log('');

  dir = mkdtempSync(join(tmpdir(), 'berth-bench-scheduler-'));
  // Builds and dynos run as unprivileged uids that must traverse the data dir's parents.
  chmodSync(dir, 0o755);
  const data = join(dir, 'data');

  step('starting berth up --no-agent and three agents');
  berth = await startBerth(['--data-dir', data, '--no-agent'], { BERTH_BOOTSTRAP_TOKEN: ADMIN, BERTH_LOG_LEVEL: 'info' });
  store = openStore(`sqlite://${join(data, 'state.db')}`);
  for (const name of AGENTS) {
    // Each agent its own kernel names (startAgent), its own /24 of the platform's overlay.
    agents.set(name, await startAgent(['--controller', berth.apiUrl, '--token-file', join(data, 'cluster.token'), '--name', name, '--data-dir', join(dir, name), '--ttl', String(TTL)], { BERTH_LOG_LEVEL: 'info' }));
  }
  const machines = await until('three machines registered', 30_000, 100, async () => {
    const ms = await api<{ id: string; name: string; subnet: string | null }[]>('GET', '/berth/machines');
    return ms.length === AGENTS.length ? ms : undefined;
  });
  const nameOf = new Map(machines.map((m) => [m.id, m.name]));

  const appCount = Math.ceil(N / PER_APP);
  const bulk = Array.from({ length: appCount }, (_, i) => `sched-${TAG}-${String.fromCharCode(97 + i)}`);
  const quantities = bulk.map((_, i) => Math.floor(N / appCount) + (i < N % appCount ? 1 : 0));
  apps.push(ONE, ...bulk);
  step(`pushing the tiny app as ${apps.join(', ')} (web limit ${LIMIT})`);
  await withTimeout('pushes', PUSH_TIMEOUT_MS * 2, Promise.all(apps.map(deploy)));
  // The first deploy starts web=1: back to nothing, so every phase starts from zero dynos.
  await Promise.all(apps.map((a) => scale(a, 0)));
  await Promise.all(apps.map(drained));

  // ---- Dyno start vs bare start (on the quiet cluster) ----
  const appDir = join(dir, `repo-${ONE}`);
  step(`bare node server.js start x ${STARTS} (+1 warm-up)`);
  await bareStart(appDir);
  const bare: number[] = [];
  for (let i = 0; i < STARTS; i++) bare.push(await bareStart(appDir));
  step(`one dyno through berth, scale 0 -> 1 -> answering HTTP, x ${STARTS} (+1 warm-up: slug fetch)`);
  const warm = await berthStart();
  const starts: StartTimes[] = [];
  for (let i = 0; i < STARTS; i++) {
    starts.push(await berthStart());
    step(`  run ${i + 1}: ${secs(starts[starts.length - 1]?.http ?? NaN)} s`);
  }

  // ---- Place and start N dynos ----
  step(`scaling ${bulk.map((a, i) => `${a} web=${quantities[i]}`).join(', ')}`);
  const availBefore = memAvailable();
  const t0 = now();
  let tAssigned = NaN;
  let tUp = NaN;
  let tPublished = NaN;
  let tFirstUp = NaN;
  let lastLog = 0;
  await Promise.all(bulk.map((a, i) => scale(a, quantities[i] ?? 0)));
  const tRequested = now() - t0;
  let upByApp = new Map<string, Dyno[]>();
  await until(`${N} dynos up and published`, SCALE_TIMEOUT_MS, 250, async () => {
    const at = now() - t0;
    if (Number.isNaN(tAssigned) && (await assignments(bulk)) === N) tAssigned = at;
    if (Number.isNaN(tUp)) {
      const lists = await Promise.all(bulk.map(async (a) => [a, await dynosOf(a)] as const));
      const all = lists.flatMap(([, l]) => l);
      const up = all.filter((d) => d.state === 'up');
      if (Number.isNaN(tFirstUp) && up.length > 0) tFirstUp = at;
      if (up.length === N && all.length === N) {
        tUp = at;
        upByApp = new Map(lists);
      }
      if (at - lastLog > 10_000) {
        lastLog = at;
        step(`  ${secs(at)} s: ${up.length}/${N} up`);
      }
    }
    if (Number.isNaN(tPublished) && (await Promise.all(bulk.map(endpoints))).flat().length === N) tPublished = at;
    return Number.isNaN(tUp) || Number.isNaN(tPublished) ? undefined : true;
  });
  const hostGrowth = availBefore - memAvailable();
  const upDynos = [...upByApp.values()].flat();
  const spread = new Map<string, number>();
  for (const d of upDynos) spread.set(nameOf.get(d.machine ?? '') ?? '?', (spread.get(nameOf.get(d.machine ?? '') ?? '?') ?? 0) + 1);
  const spreadText = [...spread.entries()].sort().map(([m, n]) => `${m} ${n}`).join(', ');
  const eps = (await Promise.all(bulk.map(endpoints))).flat();
  const answering = await countAnswering(eps);
  const mem = dynoMemory(bulk);
  step(`  all up at ${secs(tUp)} s (${spreadText}); ${answering}/${eps.length} endpoints answer HTTP; ${(mem.bytes / 1024 ** 3).toFixed(2)} GiB in ${mem.count} dyno cgroups`);

  // ---- Failover: SIGKILL the agent running the most dynos ----
  const victimId = [...new Set(upDynos.map((d) => d.machine ?? ''))].sort((a, b) => upDynos.filter((d) => d.machine === b).length - upDynos.filter((d) => d.machine === a).length)[0] ?? '';
  const victimName = nameOf.get(victimId) ?? '';
  const victim = agents.get(victimName);
  if (!victim) throw new Error(`no agent runs machine ${victimId}`);
  // Its dynos' endpoints are the addresses of its /24.
  const victimNet = (machines.find((m) => m.id === victimId)?.subnet ?? '').replace(/0\/24$/, '');
  const onVictim = (ep: string): boolean => victimNet !== '' && ep.startsWith(victimNet);
  const moved = new Map(bulk.map((a) => [a, new Set((upByApp.get(a) ?? []).filter((d) => d.machine === victimId).map((d) => d.name))]));
  const movedCount = [...moved.values()].reduce((n, s) => n + s.size, 0);
  step(`SIGKILL agent ${victimName} (${movedCount} dynos)`);
  const victimEps = (await Promise.all(bulk.map(endpoints))).flat().filter(onVictim);
  const k0 = now();
  await victim.kill();
  agents.delete(victimName);
  let tLease = NaN;
  let tMovedUp = NaN;
  let tRepublished = NaN;
  lastLog = 0;
  await until(`the ${movedCount} dynos of ${victimName} up elsewhere`, FAILOVER_TIMEOUT_MS, 100, async () => {
    const at = now() - k0;
    if (Number.isNaN(tLease) && !(await need().store.get(`/berth/machines/${victimId}`))) tLease = at;
    if (Number.isNaN(tMovedUp)) {
      const lists = await Promise.all(bulk.map(async (a) => [a, await dynosOf(a)] as const));
      let still = 0;
      for (const [a, list] of lists) {
        const want = moved.get(a) ?? new Set<string>();
        const upElsewhere = new Set(list.filter((d) => want.has(d.name) && d.state === 'up' && d.machine !== victimId).map((d) => d.name));
        still += want.size - upElsewhere.size;
      }
      if (still === 0) tMovedUp = at;
      if (at - lastLog > 5_000) {
        lastLog = at;
        step(`  ${secs(at)} s: ${movedCount - still}/${movedCount} up elsewhere${Number.isNaN(tLease) ? '' : `, lease gone at ${secs(tLease)} s`}`);
      }
    }
    if (Number.isNaN(tRepublished)) {
      const all = (await Promise.all(bulk.map(endpoints))).flat();
      const stale = all.filter(onVictim);
      if (all.length === N && stale.length === 0) tRepublished = at;
    }
    return Number.isNaN(tMovedUp) || Number.isNaN(tRepublished) ? undefined : true;
  });
  const after = (await Promise.all(bulk.map(endpoints))).flat();
  const answeringAfter = await countAnswering(after);
  // Its dynos die with it (bwrap --die-with-parent): none of their old addresses should still answer.
  const orphans = (await Promise.all(victimEps.map(connects))).filter(Boolean).length;
  if (orphans > 0) step(`  WARNING: ${orphans} of ${victimEps.length} endpoints of ${victimName}'s dynos still accept connections after the kill`);
  // What the killed agent left in the kernel (namespaces, its nftables table) goes now.
  await victim.stop();
  step(`  healed at ${secs(Math.max(tMovedUp, tRepublished))} s; ${answeringAfter}/${after.length} endpoints answer HTTP`);

  // ---- Report ----
  const bareP50 = median(bare);
  console.log(`Scheduler benchmark: ${N} dynos over ${appCount} app(s) (${bulk.map((a, i) => `web=${quantities[i]}`).join(' + ')}), 3 agents, TTL ${TTL} s`);
  console.log('');
  printTable(
    ['metric', 'seconds', 'detail'],
    [
      [`scale to ${N}: formation PATCH answered`, (tRequested / 1000).toFixed(3), ''],
      [`scale to ${N}: all ${N} units assigned`, secs(tAssigned), 'scheduler writes /berth/units/...'],
      [`scale to ${N}: first dyno up`, secs(tFirstUp), ''],
      [`scale to ${N}: all ${N} dynos up (API)`, secs(tUp), `${(N / (tUp / 1000)).toFixed(1)} dynos/s; ${spreadText}`],
      [`scale to ${N}: all ${N} endpoints published`, secs(tPublished), `${answering}/${eps.length} answer HTTP; MemAvailable fell ${(hostGrowth / 1024 ** 3).toFixed(2)} GiB (~${Math.round(hostGrowth / N / 1024 ** 2)} MiB/dyno, ~${mem.count ? Math.round(mem.bytes / mem.count / 1024 ** 2) : 0} MiB charged to its cgroup)`],
      [`failover: ${victimName}'s lease gone`, secs(tLease), `SIGKILL of ${victimName} (${movedCount} dynos); TTL ${TTL} s, less the time since its last keep-alive`],
      [`failover: its ${movedCount} dynos up elsewhere`, secs(tMovedUp), `issue bound: 2xTTL + boot = ${2 * TTL} s + boot`],
      [`failover: ${N} endpoints published again`, secs(tRepublished), `${answeringAfter}/${after.length} answer HTTP; ${orphans}/${victimEps.length} old endpoints of ${victimName} still open`],
    ],
  );
  console.log('');
  // Milliseconds matter here: three decimals.
  const row = (label: string, xs: number[], ratio: string): string[] => [label, ...[median(xs), Math.min(...xs), Math.max(...xs)].map((x) => (x / 1000).toFixed(3)), ratio];
  const stage = (f: (s: StartTimes) => number): number[] => starts.map(f);
  printTable(
    [`single dyno start (${STARTS} runs)`, 'p50 s', 'min s', 'max s', 'ratio vs bare (p50)'],
    [
      row('bare: spawn node server.js -> answers HTTP', bare, '1.00'),
      row('berth: scale 0->1 -> unit assigned', stage((s) => s.assigned), '-'),
      row('berth:   -> status starting', stage((s) => s.starting), '-'),
      row('berth:   -> status up', stage((s) => s.up), '-'),
      row('berth:   -> endpoint published', stage((s) => s.published), '-'),
      row('berth: scale 0->1 -> endpoint answers HTTP', stage((s) => s.http), (median(stage((s) => s.http)) / bareP50).toFixed(2)),
    ],
  );
  console.log('');
  console.log(`Warm-up dyno start (first on its machine: slug fetched) ${secs(warm.http)} s, not counted. Stages are polled (store every 10 ms); a stage`);
  console.log('seen together with a later one is reported at that one. Ratio: Berth p50 / bare p50, lower is better.');
  const issues = new Map<string, number>();
  for (const [who, text] of [['berth up', berth.stderr()], ...[...agents.entries()].map(([n, a]) => [n, a.stderr()] as const), [`${victimName} (killed)`, victim.stderr()]] as const) {
    for (const [msg, n] of problems(text)) issues.set(`${who}: ${msg}`, (issues.get(`${who}: ${msg}`) ?? 0) + n);
  }
  if (issues.size > 0) {
    console.log('');
    console.log('Warnings/errors logged during the run:');
    for (const [msg, n] of issues) console.log(`  ${n} x ${msg}`);
  }
}

async function main(): Promise<void> {
  const started = Date.now();
  process.once('SIGINT', () => void cleanup().finally(() => process.exit(130)));
  try {
    await withTimeout('the scheduler benchmark', TIMEOUT_S * 1000, run());
  } catch (err) {
    if (berth) process.stderr.write(`  berth stderr (tail):\n${berth.stderr().slice(-3000)}\n`);
    for (const [name, a] of agents) process.stderr.write(`  agent ${name} stderr (tail):\n${a.stderr().slice(-2000)}\n`);
    throw err;
  } finally {
    step('cleaning up');
    await cleanup();
    console.log(`(whole run, setup and cleanup included: ${secs(Date.now() - started)} s)`);
  }
}

runBenchmark(main);
