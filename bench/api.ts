/**
 * API benchmark: a real `berth up` on the embedded SQLite store and on a real etcd, in one run, driven
 * over loopback HTTP by autocannon, so the ratio compares the two backends behind the same API.
 *
 *   npm run bench:api
 *
 * Each backend gets its own berth process and data dir under os.tmpdir(); only one runs at a time.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { startBerth, type BerthProcess } from '../test/support/berth-process.js';
import { EtcdServer } from '../test/support/etcd-server.js';
import { printTable as renderTable, runBenchmark, withTimeout } from './lib.js';

const APPS = 1000;
const CREATE_CONCURRENCY = 20;
const CONNECTIONS = 10;
const DURATION_S = 8;
// JIT, connection pools and page cache settle in the first second; not what we measure.
const WARMUP_S = 1;
// The API's largest page; anything smaller would make GET /apps answer 206 with a partial list.
const LIST_RANGE = `id ..; max=${APPS}`;
const TOKEN = `bench_${randomBytes(16).toString('hex')}`;
// Bounds the untimed setup if a backend stalls, so cleanup still runs and the run stays under ~3 min.
const SETUP_TIMEOUT_MS = 60_000;
const AUTOCANNON_VERSION = (createRequire(import.meta.url)('autocannon/package.json') as { version: string }).version;

const appName = (i: number): string => `bench-${String(i).padStart(4, '0')}`;
const headers = {
  authorization: `Bearer ${TOKEN}`,
  accept: 'application/vnd.heroku+json; version=3',
  'content-type': 'application/json',
};

interface Phase {
  reqPerSec: number;
  p99Ms: number;
  non2xx: number;
  errors: number;
  /** 2xx other than the one status the endpoint should answer (a 206 would be a partial list). */
  unexpected: number;
}

interface Result {
  list: Phase;
  patch: Phase;
  listBytes: number;
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

// Module-level so the SIGINT handler can stop it too: a child left behind would keep its port.
let running: BerthProcess | undefined;

async function bench(name: string, dataDir: string, storeArgs: string[]): Promise<Result> {
  const step = (what: string): void => void process.stderr.write(`  ${name}: ${what}\n`);
  step('starting berth');
  const berth = (running = await startBerth(['--data-dir', dataDir, ...storeArgs], { BERTH_BOOTSTRAP_TOKEN: TOKEN, BERTH_LOG_LEVEL: 'warn' }));
  try {
    const { apiUrl } = berth;
    step(`creating ${APPS} apps, ${CREATE_CONCURRENCY} at a time (untimed)`);
    const t0 = Date.now();
    await withTimeout(`${name} creating apps`, SETUP_TIMEOUT_MS, createApps(apiUrl));
    step(`created in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const listBytes = await checkList(apiUrl);

    const listOpts: autocannon.Options = { url: `${apiUrl}/apps`, headers: { ...headers, range: LIST_RANGE } };
    // Round-robin over the apps: with 10 connections no two in-flight PATCHes hit one app, so the
    // numbers measure writes, not compare-and-swap retries on a contended app record.
    let n = 0;
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
    step(`GET /apps warm-up (${WARMUP_S} s)`);
    await load(`${name} GET /apps warm-up`, listOpts, WARMUP_S);
    step(`GET /apps (${DURATION_S} s)`);
    const list = await load(`${name} GET /apps`, listOpts, DURATION_S);
    step(`PATCH config-vars warm-up (${WARMUP_S} s)`);
    await load(`${name} PATCH warm-up`, patchOpts, WARMUP_S);
    step(`PATCH config-vars (${DURATION_S} s)`);
    const patch = await load(`${name} PATCH config-vars`, patchOpts, DURATION_S);
    step(`${n} PATCHes sent in all`);
    return { list, patch, listBytes };
  } catch (err) {
    process.stderr.write(`  ${name}: berth stderr (tail):\n${berth.stderr().slice(-4000)}\n`);
    throw err;
  } finally {
    running = undefined;
    await berth.stop();
  }
}

function printTable(sqlite: Result, etcd: Result): void {
  const rows: [string, string, string, string][] = [];
  const rate = (metric: string, a: number, b: number): void => void rows.push([metric, a.toFixed(0), b.toFixed(0), (a / b).toFixed(2)]);
  // autocannon records latency in whole milliseconds; a decimal would claim precision it lacks.
  const ms = (metric: string, a: number, b: number): void => void rows.push([metric, a.toFixed(0), b.toFixed(0), `${(a / b).toFixed(2)} *`]);
  const count = (metric: string, a: Phase, b: Phase): void =>
    void rows.push([metric, `${a.non2xx} / ${a.errors}`, `${b.non2xx} / ${b.errors}`, '-']);
  const list = `GET /apps (${APPS} per page)`;
  const patch = `PATCH config-vars (round-robin ${APPS} apps)`;
  rate(`${list} req/s`, sqlite.list.reqPerSec, etcd.list.reqPerSec);
  ms(`${list} p99 ms`, sqlite.list.p99Ms, etcd.list.p99Ms);
  count(`${list} non-2xx / errors`, sqlite.list, etcd.list);
  rate(`${patch} req/s`, sqlite.patch.reqPerSec, etcd.patch.reqPerSec);
  ms(`${patch} p99 ms`, sqlite.patch.p99Ms, etcd.patch.p99Ms);
  count(`${patch} non-2xx / errors`, sqlite.patch, etcd.patch);
  renderTable(['metric', 'sqlite', 'etcd', 'sqlite/etcd'], rows);
  console.log('');
  console.log('Throughput ratios: higher means sqlite is faster.');
  console.log('* Latency ratios: lower is better for sqlite.');
}

/** Errors measured as throughput make a benchmark lie; the table is printed, then the run fails. */
function assertClean(results: Record<string, Result>): void {
  const problems: string[] = [];
  for (const [backend, r] of Object.entries(results)) {
    for (const [phase, p] of [['GET /apps', r.list], ['PATCH config-vars', r.patch]] as const) {
      if (p.non2xx || p.errors || p.unexpected) problems.push(`${backend} ${phase}: ${p.non2xx} non-2xx, ${p.errors} errors, ${p.unexpected} unexpected 2xx`);
    }
  }
  if (problems.length) throw new Error(`the measurements include failed requests:\n  ${problems.join('\n  ')}`);
}

async function main(): Promise<void> {
  console.log(`cores: ${availableParallelism()} (${cpus()[0]?.model ?? 'unknown cpu'}), node ${process.version}, autocannon ${AUTOCANNON_VERSION}`);
  console.log(
    `sizes: ${APPS} apps (created ${CREATE_CONCURRENCY} at a time, untimed); GET /apps with "Range: ${LIST_RANGE}"; ` +
      `PATCH {"BENCH":"<n>"} round-robin over the apps; ${CONNECTIONS} connections, ${DURATION_S} s per phase after ${WARMUP_S} s warm-up; data under ${tmpdir()}`,
  );
  let etcd: EtcdServer | undefined;
  const dir = mkdtempSync(join(tmpdir(), 'berth-bench-api-'));
  const cleanup = async (): Promise<void> => {
    const [berth, server] = [running, etcd];
    [running, etcd] = [undefined, undefined];
    await berth?.stop();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  // Ctrl-C would otherwise leave an etcd data dir (and maybe the process) behind.
  process.once('SIGINT', () => void cleanup().finally(() => process.exit(130)));
  try {
    const sqlite = await bench('sqlite', join(dir, 'sqlite'), []);
    // Started only now so an idle etcd does not share the CPU with the sqlite run.
    etcd = await EtcdServer.start();
    const etcdResult = await bench('etcd', join(dir, 'etcd'), ['--store', etcd.url]);
    const kib = (r: Result): string => `${(r.listBytes / 1024).toFixed(0)} KiB`;
    console.log(`GET /apps response body: ${kib(sqlite)} (sqlite), ${kib(etcdResult)} (etcd)`);
    console.log('');
    printTable(sqlite, etcdResult);
    assertClean({ sqlite, etcd: etcdResult });
  } finally {
    await cleanup();
  }
}

runBenchmark(main);
