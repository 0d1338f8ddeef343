/**
 * Store benchmark: the same workload against the embedded SQLite backend and a real etcd, in one
 * run, so the ratio compares the two on the same machine, disk and moment.
 *
 *   npm run bench:store
 *
 * Both backends keep their data under os.tmpdir(), so both pay the same disk's fsync cost.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStore, type Store } from '../src/store/index.js';
import { EtcdServer } from '../test/support/etcd-server.js';
import { percentile, printTable as renderTable, runBenchmark, withTimeout } from './lib.js';

const PUTS = 2000;
// Concurrent puts group-commit on sqlite; more of them keep that phase long enough to measure.
const CONC_PUTS = 10_000;
const WRITERS = 32;
const RANGE_KEYS = 100;
const RANGES = 2000;
const WATCH_PUTS = 500;
const WARMUP_PUTS = 50;
const VALUE = 'v'.repeat(128);
// Bounds one phase if a backend stalls, so cleanup still runs and the whole run stays under ~2 min.
const PHASE_TIMEOUT_MS = 30_000;
const EVENT_TIMEOUT_MS = 5_000;

interface Result {
  seqPutsPerSec: number;
  concPutsPerSec: number;
  rangesPerSec: number;
  watchP50Ms: number;
  watchP99Ms: number;
}

const now = (): bigint => process.hrtime.bigint();
const secondsSince = (t0: bigint): number => Number(now() - t0) / 1e9;



async function seqPuts(store: Store, prefix: string): Promise<number> {
  const t0 = now();
  for (let i = 0; i < PUTS; i++) await store.put(`${prefix}${i}`, VALUE);
  return PUTS / secondsSince(t0);
}

async function concurrentPuts(store: Store, prefix: string): Promise<number> {
  // A shared counter rather than CONC_PUTS/WRITERS each, so the total is exactly CONC_PUTS.
  let next = 0;
  const writer = async (): Promise<void> => {
    while (next < CONC_PUTS) {
      const i = next++;
      await store.put(`${prefix}${i}`, VALUE);
    }
  };
  const t0 = now();
  await Promise.all(Array.from({ length: WRITERS }, writer));
  return CONC_PUTS / secondsSince(t0);
}

async function ranges(store: Store, prefix: string): Promise<number> {
  await Promise.all(Array.from({ length: RANGE_KEYS }, (_, i) => store.put(`${prefix}${String(i).padStart(3, '0')}`, VALUE)));
  const t0 = now();
  for (let i = 0; i < RANGES; i++) {
    const r = await store.range(prefix, { prefix: true, limit: RANGE_KEYS });
    // A backend that returns the wrong page would look fast for the wrong reason.
    if (r.kvs.length !== RANGE_KEYS) throw new Error(`range ${prefix} returned ${r.kvs.length} keys, expected ${RANGE_KEYS}`);
  }
  return RANGES / secondsSince(t0);
}

async function watchLatency(store: Store, prefix: string): Promise<{ p50: number; p99: number }> {
  const watch = await store.watch(prefix, { prefix: true });
  const it = watch[Symbol.asyncIterator]();
  const latencies: number[] = [];
  try {
    for (let i = 0; i < WATCH_PUTS; i++) {
      const key = `${prefix}${i}`;
      const t0 = now();
      // Waiting for the event concurrently with the put: a backend may deliver it before the put resolves.
      const seen = (async () => {
        for (;;) {
          const r = await it.next();
          if (r.done) throw new Error(`watch on ${prefix} ended before the event for ${key}`);
          if (r.value.events.some((e) => e.kv.key === key)) return now();
        }
      })();
      const [, t1] = await withTimeout(`event for ${key}`, EVENT_TIMEOUT_MS, Promise.all([store.put(key, VALUE), seen]));
      latencies.push(Number(t1 - t0) / 1e6);
    }
  } finally {
    watch.close();
  }
  latencies.sort((a, b) => a - b);
  return { p50: percentile(latencies, 50), p99: percentile(latencies, 99) };
}

async function bench(name: string, url: string): Promise<Result> {
  // The bench's etcd is a plain one on loopback: accepted as insecure on purpose.
  const store = openStore(url, { insecure: true });
  try {
    const base = `/bench/${process.pid}-${Date.now()}/`;
    const phase = <T>(what: string, p: () => Promise<T>): Promise<T> => {
      process.stderr.write(`  ${name}: ${what}\n`);
      return withTimeout(`${name} ${what}`, PHASE_TIMEOUT_MS, p());
    };
    // First calls pay for connections, statement preparation and page cache; not what we measure.
    await phase('warm-up', async () => {
      for (let i = 0; i < WARMUP_PUTS; i++) await store.put(`${base}warmup/${i}`, VALUE);
    });
    const seqPutsPerSec = await phase('sequential puts', () => seqPuts(store, `${base}seq/`));
    const concPutsPerSec = await phase('concurrent puts', () => concurrentPuts(store, `${base}conc/`));
    const rangesPerSec = await phase('ranges', () => ranges(store, `${base}range/`));
    const w = await phase('watch latency', () => watchLatency(store, `${base}watch/`));
    return { seqPutsPerSec, concPutsPerSec, rangesPerSec, watchP50Ms: w.p50, watchP99Ms: w.p99 };
  } finally {
    await store.close();
  }
}

function printTable(sqlite: Result, etcd: Result): void {
  const fmtRate = (n: number): string => n.toFixed(0);
  const fmtMs = (n: number): string => n.toFixed(3);
  const rows: [string, string, string, string][] = [];
  const add = (metric: string, a: number, b: number, fmt: (n: number) => string, mark = ''): void => {
    rows.push([metric, fmt(a), fmt(b), `${(a / b).toFixed(2)}${mark}`]);
  };
  add(`puts/s, sequential (N=${PUTS})`, sqlite.seqPutsPerSec, etcd.seqPutsPerSec, fmtRate);
  add(`puts/s, ${WRITERS} writers (N=${CONC_PUTS})`, sqlite.concPutsPerSec, etcd.concPutsPerSec, fmtRate);
  add(`range reads/s, ${RANGE_KEYS} keys (N=${RANGES})`, sqlite.rangesPerSec, etcd.rangesPerSec, fmtRate);
  add(`watch latency p50 ms (N=${WATCH_PUTS})`, sqlite.watchP50Ms, etcd.watchP50Ms, fmtMs, ' *');
  add(`watch latency p99 ms (N=${WATCH_PUTS})`, sqlite.watchP99Ms, etcd.watchP99Ms, fmtMs, ' *');
  renderTable(['metric', 'sqlite', 'etcd', 'sqlite/etcd'], rows);
  console.log('');
  console.log('Throughput ratios: higher means sqlite is faster.');
  console.log('* Latency ratios: lower is better for sqlite (below 1 means sqlite delivers events sooner).');
}

async function main(): Promise<void> {
  console.log(`cores: ${availableParallelism()} (${cpus()[0]?.model ?? 'unknown cpu'}), node ${process.version}`);
  console.log(
    `sizes: ${PUTS} sequential puts, ${CONC_PUTS} puts from ${WRITERS} concurrent writers, ${RANGES} ranges over ${RANGE_KEYS} keys, ` +
      `${WATCH_PUTS} watched puts, ${VALUE.length}-byte values; data under ${tmpdir()}`,
  );
  let etcd: EtcdServer | undefined;
  const dir = mkdtempSync(join(tmpdir(), 'berth-bench-'));
  const cleanup = async (): Promise<void> => {
    const server = etcd;
    etcd = undefined;
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  // Ctrl-C would otherwise leave an etcd data dir (and maybe the process) behind.
  process.once('SIGINT', () => void cleanup().finally(() => process.exit(130)));
  try {
    const sqlite = await bench('sqlite', `sqlite://${join(dir, 'state.db')}`);
    // Started only now so an idle etcd does not share the CPU with the sqlite run.
    etcd = await EtcdServer.start();
    const etcdResult = await bench('etcd', etcd.url);
    console.log('');
    printTable(sqlite, etcdResult);
  } finally {
    await cleanup();
  }
}

runBenchmark(main);
