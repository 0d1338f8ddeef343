/**
 * API benchmark: a real `berth up` (every role) on the embedded SQLite store, on one etcd and on a
 * three-member etcd cluster, driven over loopback HTTP by autocannon, so the ratios compare the
 * backends behind the same API.
 *
 *   npm run bench:api            (BENCH_ROUNDS=n, default 3)
 *
 * The three platforms run side by side (each with its own data dir under os.tmpdir()), each with
 * 1,000 apps; the measured phases are interleaved round by round, in a rotating order, so load
 * drift on the machine lands on every backend alike, and each figure is the median over rounds.
 * Besides throughput and latency it reports what the platform asks of etcd: calls per second at
 * rest, and calls per PATCH (etcd's own `grpc_server_handled_total`, summed over members).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import autocannon from 'autocannon';
import { startBerth, type BerthProcess } from '../test/support/berth-process.js';
import { EtcdServer } from '../test/support/etcd-server.js';
import { EtcdCluster, handledCalls } from './etcd-cluster.js';
import { printTable as renderTable, runBenchmark, sleep, withTimeout } from './lib.js';

const APPS = 1000;
const CREATE_CONCURRENCY = 20;
const CONNECTIONS = 10;
const DURATION_S = 8;
const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 3) || 3);
// JIT, connection pools and page cache settle in the first second; not what we measure.
const WARMUP_S = 1;
// Idle calls are counted over this long, after the apps' creation has settled.
const REST_S = 10;
const SETTLE_MS = 5000;
// The API's largest page; anything smaller would make GET /apps answer 206 with a partial list.
const LIST_RANGE = `id ..; max=${APPS}`;
const TOKEN = `bench_${randomBytes(16).toString('hex')}`;
// Bounds the untimed setup if a backend stalls, so cleanup still runs.
const SETUP_TIMEOUT_MS = 120_000;
// Issue 12's target for the three-member cluster.
const TARGET = { p99Ms: 50, reqPerSec: 300 };
const AUTOCANNON_VERSION = (createRequire(import.meta.url)('autocannon/package.json') as { version: string }).version;
const MAIN = join(import.meta.dirname, '../src/cli/main.ts');

const appName = (i: number): string => `bench-${String(i).padStart(4, '0')}`;
const headers = {
  authorization: `Bearer ${TOKEN}`,
  accept: 'application/vnd.heroku+json; version=3',
  'content-type': 'application/json',
};

interface Phase {
  reqPerSec: number;
  p99Ms: number;
  requests: number;
  non2xx: number;
  errors: number;
  /** 2xx other than the one status the endpoint should answer (a 206 would be a partial list). */
  unexpected: number;
}

/** One platform under test: its berth process and, for etcd, a way to count what it asks of etcd. */
interface Backend {
  name: string;
  berth: BerthProcess;
  calls?: () => Promise<number>;
  restPerSec?: number;
  listBytes: number;
  list: Phase[];
  patch: Phase[];
  /** Every connection PATCHing the same app: compare-and-swap contention, which must not fail. */
  hot: Phase[];
  /** etcd calls per PATCH, per round. */
  callsPerPatch: number[];
}

async function createApps(apiUrl: string): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < APPS) {
      const name = appName(next++);
      const res = await fetch(`${apiUrl}/apps`, { method: 'POST', headers, body: JSON.stringify({ name }) });
      if (res.status !== 201) throw new Error(`POST /apps ${name}: ${res.status} ${await res.text()}`);
    }
  };
  await Promise.all(Array.from({ length: CREATE_CONCURRENCY }, worker));
}

/** A list that is short or paged would look fast for the wrong reason; returns the body size. */
async function checkList(apiUrl: string): Promise<number> {
  const res = await fetch(`${apiUrl}/apps`, { headers: { ...headers, range: LIST_RANGE } });
  const text = await res.text();
  const apps = JSON.parse(text) as unknown[];
  if (res.status !== 200 || apps.length !== APPS) throw new Error(`GET /apps answered ${res.status} with ${apps.length} apps, expected 200 with ${APPS}`);
  return Buffer.byteLength(text);
}

function load(title: string, opts: autocannon.Options, durationS: number, expectStatus = 200): Promise<Phase> {
  let instance: autocannon.Instance | undefined;
  const run = new Promise<autocannon.Result>((resolve, reject) => {
    instance = autocannon({ connections: CONNECTIONS, duration: durationS, ...opts }, (err: unknown, result) =>
      err ? reject(err as Error) : resolve(result),
    );
  });
  // Requests still in flight when a stalled server's duration ends would otherwise wait forever.
  return withTimeout(title, (durationS + 30) * 1000, run).then(
    (r) => ({
      reqPerSec: r.requests.average,
      p99Ms: r.latency.p99,
      requests: r.requests.total,
      non2xx: r.non2xx,
      errors: r.errors,
      unexpected: r['2xx'] - (r.statusCodeStats?.[`${expectStatus}`]?.count ?? 0),
    }),
    (err: unknown) => {
      instance?.stop();
      throw err;
    },
  );
}

// Module-level so the SIGINT handler can stop them too: a child left behind would keep its ports.
const running: { berths: BerthProcess[]; etcd?: EtcdServer; cluster?: EtcdCluster } = { berths: [] };

/**
 * Plain etcd (no TLS, no auth) is what the bench measures; once `berth up` refuses that without
 * `--store-insecure`, the flag is given — asked of the CLI's help, so the bench runs either way.
 */
async function insecureFlag(): Promise<string[]> {
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', MAIN, 'up', '--help']);
  return stdout.includes('--store-insecure') ? ['--store-insecure'] : [];
}

async function setUp(name: string, dataDir: string, storeArgs: string[], calls?: () => Promise<number>): Promise<Backend> {
  const step = (what: string): void => void process.stderr.write(`  ${name}: ${what}\n`);
  step('starting berth');
  const berth = await startBerth(['--data-dir', dataDir, ...storeArgs], { BERTH_BOOTSTRAP_TOKEN: TOKEN, BERTH_LOG_LEVEL: 'warn' });
  running.berths.push(berth);
  const backend: Backend = { name, berth, listBytes: 0, list: [], patch: [], hot: [], callsPerPatch: [], ...(calls ? { calls } : {}) };
  try {
    step(`creating ${APPS} apps, ${CREATE_CONCURRENCY} at a time (untimed)`);
    const t0 = Date.now();
    await withTimeout(`${name} creating apps`, SETUP_TIMEOUT_MS, createApps(berth.apiUrl));
    step(`created in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    backend.listBytes = await checkList(berth.apiUrl);
    if (calls) {
      // Whatever the creations set off (scheduler passes, router renders) settles first.
      await sleep(SETTLE_MS);
      const before = await calls();
      await sleep(REST_S * 1000);
      backend.restPerSec = ((await calls()) - before) / REST_S;
      step(`${backend.restPerSec.toFixed(1)} etcd calls/s at rest`);
    }
  } catch (err) {
    process.stderr.write(`  ${name}: berth stderr (tail):\n${berth.stderr().slice(-4000)}\n`);
    throw err;
  }
  return backend;
}

/** One round of a backend: GET /apps, PATCH config-vars round-robin, then all on one app, each after its warm-up. */
async function measure(b: Backend, round: number): Promise<void> {
  const step = (what: string): void => void process.stderr.write(`  round ${round} ${b.name}: ${what}\n`);
  const { apiUrl } = b.berth;
  const listOpts: autocannon.Options = { url: `${apiUrl}/apps`, headers: { ...headers, range: LIST_RANGE } };
  // Round-robin over the apps: with 10 connections no two in-flight PATCHes hit one app, so the
  // numbers measure writes, not compare-and-swap retries on a contended app record.
  let n = round * 100_000;
  const patchOpts: autocannon.Options = {
    url: apiUrl,
    headers,
    requests: [
      {
        method: 'PATCH',
        setupRequest: (req) => {
          const i = n++;
          return { ...req, path: `/apps/${appName(i % APPS)}/config-vars`, body: JSON.stringify({ BENCH: String(i) }) };
        },
      },
    ],
  };
  try {
    step(`GET /apps (${WARMUP_S} s warm-up, ${DURATION_S} s)`);
    await load(`${b.name} GET /apps warm-up`, listOpts, WARMUP_S);
    b.list.push(await load(`${b.name} GET /apps`, listOpts, DURATION_S));
    step(`PATCH config-vars (${WARMUP_S} s warm-up, ${DURATION_S} s)`);
    await load(`${b.name} PATCH warm-up`, patchOpts, WARMUP_S);
    const before = await b.calls?.();
    const patch = await load(`${b.name} PATCH config-vars`, patchOpts, DURATION_S);
    b.patch.push(patch);
    // Includes the reactions (scheduler, agent, router) that land within the phase.
    if (b.calls && before !== undefined) b.callsPerPatch.push(((await b.calls()) - before) / Math.max(1, patch.requests));
    step(`PATCH config-vars of one app (${WARMUP_S} s warm-up, ${DURATION_S} s)`);
    const hotOpts: autocannon.Options = {
      url: apiUrl,
      headers,
      requests: [{ method: 'PATCH', setupRequest: (req) => ({ ...req, path: `/apps/${appName(0)}/config-vars`, body: JSON.stringify({ HOT: String(n++) }) }) }],
    };
    await load(`${b.name} PATCH one app warm-up`, hotOpts, WARMUP_S);
    b.hot.push(await load(`${b.name} PATCH one app`, hotOpts, DURATION_S));
  } catch (err) {
    process.stderr.write(`  ${b.name}: berth stderr (tail):\n${b.berth.stderr().slice(-4000)}\n`);
    throw err;
  }
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] ?? NaN) : ((s[mid - 1] ?? NaN) + (s[mid] ?? NaN)) / 2;
}

function printTable(backends: Backend[]): void {
  const [base, ...others] = backends;
  if (!base) return;
  const rows: string[][] = [];
  const ratio = (a: number, b: number): string => (Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? (a / b).toFixed(2) : '-');
  const metric = (title: string, pick: (b: Backend) => number[], digits = 0, star = ''): void => {
    const m = backends.map((b) => median(pick(b)));
    rows.push([title, ...m.map((v) => (Number.isFinite(v) ? v.toFixed(digits) : '-')), ...m.slice(1).map((v) => {
      const r = ratio(m[0] ?? NaN, v);
      return r === '-' ? r : `${r}${star}`;
    })]);
  };
  const failures = (title: string, pick: (b: Backend) => Phase[]): void =>
    void rows.push([title, ...backends.map((b) => `${pick(b).reduce((s, p) => s + p.non2xx, 0)} / ${pick(b).reduce((s, p) => s + p.errors, 0)}`), ...others.map(() => '-')]);
  const list = `GET /apps (${APPS} per page)`;
  const patch = `PATCH config-vars (round-robin ${APPS} apps)`;
  metric(`${list} req/s`, (b) => b.list.map((p) => p.reqPerSec));
  // autocannon records latency in whole milliseconds; a decimal would claim precision it lacks.
  metric(`${list} p99 ms`, (b) => b.list.map((p) => p.p99Ms), 0, ' *');
  failures(`${list} non-2xx / errors (all rounds)`, (b) => b.list);
  metric(`${patch} req/s`, (b) => b.patch.map((p) => p.reqPerSec));
  metric(`${patch} p99 ms`, (b) => b.patch.map((p) => p.p99Ms), 0, ' *');
  failures(`${patch} non-2xx / errors (all rounds)`, (b) => b.patch);
  const hot = 'PATCH config-vars (one app, every connection)';
  metric(`${hot} req/s`, (b) => b.hot.map((p) => p.reqPerSec));
  metric(`${hot} p99 ms`, (b) => b.hot.map((p) => p.p99Ms), 0, ' *');
  failures(`${hot} non-2xx / errors (all rounds)`, (b) => b.hot);
  metric('etcd calls per PATCH (reactions included)', (b) => b.callsPerPatch, 2);
  metric(`etcd calls/s at rest (${APPS} apps)`, (b) => (b.restPerSec === undefined ? [] : [b.restPerSec]), 1);
  renderTable(['metric', ...backends.map((b) => b.name), ...others.map((b) => `${base.name}/${b.name}`)], rows);
  console.log('');
  console.log(`Medians of ${ROUNDS} interleaved rounds. Throughput ratios: higher means ${base.name} is faster.`);
  console.log(`* Latency ratios: lower is better for ${base.name}.`);
  console.log('etcd calls: grpc_server_handled_total summed over members (a lease keep-alive or watch counts once, when its stream ends).');
  // Each round's figures, so a round disturbed by something else on the machine shows as one.
  console.log('');
  console.log('PATCH config-vars round-robin, each round (req/s, p99 ms):');
  for (const b of backends) console.log(`  ${b.name.padEnd(8)} ${b.patch.map((p) => `${p.reqPerSec.toFixed(0)} / ${p.p99Ms.toFixed(0)}`).join('   ')}`);
}

/** Errors measured as throughput make a benchmark lie; the table is printed, then the run fails. */
function assertClean(backends: Backend[]): void {
  const problems: string[] = [];
  for (const b of backends) {
    for (const [phase, ps] of [['GET /apps', b.list], ['PATCH config-vars', b.patch], ['PATCH config-vars of one app', b.hot]] as const) {
      ps.forEach((p, i) => {
        if (p.non2xx || p.errors || p.unexpected) problems.push(`${b.name} ${phase} round ${i + 1}: ${p.non2xx} non-2xx, ${p.errors} errors, ${p.unexpected} unexpected 2xx`);
      });
    }
  }
  if (problems.length) throw new Error(`the measurements include failed requests:\n  ${problems.join('\n  ')}`);
}

function reportTarget(cluster: Backend | undefined): void {
  if (!cluster) return;
  const rps = median(cluster.patch.map((p) => p.reqPerSec));
  const p99 = median(cluster.patch.map((p) => p.p99Ms));
  const met = rps >= TARGET.reqPerSec && p99 <= TARGET.p99Ms;
  console.log(`target on ${cluster.name} (issue 12): PATCH config-vars >= ${TARGET.reqPerSec} req/s with p99 <= ${TARGET.p99Ms} ms: ${rps.toFixed(0)} req/s, p99 ${p99.toFixed(0)} ms — ${met ? 'met' : 'MISSED'}`);
}

async function main(): Promise<void> {
  console.log(`cores: ${availableParallelism()} (${cpus()[0]?.model ?? 'unknown cpu'}), node ${process.version}, autocannon ${AUTOCANNON_VERSION}`);
  console.log(
    `sizes: ${APPS} apps (created ${CREATE_CONCURRENCY} at a time, untimed); GET /apps with "Range: ${LIST_RANGE}"; ` +
      `PATCH {"BENCH":"<n>"} round-robin over the apps; ${CONNECTIONS} connections, ${DURATION_S} s per phase after ${WARMUP_S} s warm-up; ` +
      `${ROUNDS} rounds; data under ${tmpdir()}`,
  );
  const dir = mkdtempSync(join(tmpdir(), 'berth-bench-api-'));
  const cleanup = async (): Promise<void> => {
    const { berths, etcd, cluster } = running;
    running.berths = [];
    running.etcd = running.cluster = undefined;
    await Promise.all(berths.map((b) => b.stop()));
    await Promise.all([etcd?.stop(), cluster?.stop()]);
    rmSync(dir, { recursive: true, force: true });
  };
  // Ctrl-C would otherwise leave etcd data dirs (and maybe processes) behind.
  process.once('SIGINT', () => void cleanup().finally(() => process.exit(130)));
  try {
    const insecure = await insecureFlag();
    const etcd = (running.etcd = await EtcdServer.start());
    const cluster = (running.cluster = await EtcdCluster.start(3));
    const backends = [
      await setUp('sqlite', join(dir, 'sqlite'), []),
      await setUp('etcd', join(dir, 'etcd'), ['--store', etcd.url, ...insecure], () => handledCalls(etcd.endpoint)),
      await setUp('etcd×3', join(dir, 'etcd3'), ['--store', cluster.url, ...insecure], () => cluster.handledCalls()),
    ];
    for (let round = 0; round < ROUNDS; round++) {
      // Rotated, so no backend always runs first (or right after the heaviest one).
      for (let i = 0; i < backends.length; i++) await measure(backends[(round + i) % backends.length] as Backend, round + 1);
    }
    const kib = (b: Backend): string => `${(b.listBytes / 1024).toFixed(0)} KiB (${b.name})`;
    console.log(`GET /apps response body: ${backends.map(kib).join(', ')}`);
    console.log('');
    printTable(backends);
    console.log('');
    reportTarget(backends[2]);
    assertClean(backends);
  } finally {
    await cleanup();
  }
}

runBenchmark(main);
