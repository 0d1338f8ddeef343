/**
 * Router benchmark (`npm run bench:router`): one upstream app, directly, through a hand-written
 * minimal nginx reverse proxy (keep-alive upstream) — bare, and setting the same headers Berth
 * sets, so the ratio compares like with like — and through Berth's router, without and with its
 * per-request log lines (`berth up` runs it with them), in one run, so the ratios compare them on
 * the same machine and moment; then how long an endpoint change written to the store takes until
 * the router serves it. Upstreams are separate Node processes, off autocannon's event loop; every
 * proxy stays up and the rounds interleave them (one is loaded at a time); configs, pids and logs
 * live under os.tmpdir().
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { createRequire } from 'node:module';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { createLogger } from '../src/domain/log.js';
import { Router } from '../src/router/index.js';
import { openStore, type Store } from '../src/store/index.js';
import { freePort } from '../test/support/ports.js';
import { percentile, printTable, runBenchmark, sleep, step, withTimeout } from './lib.js';

const CONNECTIONS = 50;
const DURATION_S = 8;
// Interleaved rounds, the median shown: one 8 s sample per path moved ratios by several percent.
const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 3) || 3);
// JIT, keep-alive pools and nginx's worker settle in the first second; not what we measure.
const WARMUP_S = 1;
const CHANGES = 50;
// Both nginx configs close a client connection after keepalive_requests (1000); autocannon 8 then
// keeps the lost request's start in its queue (httpClient.js: 'end' -> _connect, no clear), so every
// later latency on that connection is inflated, and the late write can ECONNRESET. Reconnecting
// first (which clears the queue) costs the same reconnects; 1 response in 999 goes uncounted.
const RECONNECT_EVERY = 999;
const APP = 'bench';
const HOST = `${APP}.berth.test`;
const SERVICE_KEY = `/berth/services/${APP}/${APP}.web.1@v1`;
const NGINX = '/usr/sbin/nginx';
// Bounds every wait, so cleanup still runs and the whole run stays under ~2 min.
const START_TIMEOUT_MS = 10_000;
const CHANGE_TIMEOUT_MS = 5_000;
const AUTOCANNON_VERSION = (createRequire(import.meta.url)('autocannon/package.json') as { version: string }).version;
// CommonJS under `node -e`; answers its own name; its keep-alive outlasts nginx's idle upstream connections.
const UPSTREAM_JS = `const [name, port] = process.argv.slice(1);
const srv = require('node:http').createServer((req, res) => res.setHeader('content-type', 'text/plain').end(name));
srv.keepAliveTimeout = 65000; srv.listen(Number(port), '127.0.0.1');`;

interface Phase { reqPerSec: number; p50Ms: number; p99Ms: number; non2xx: number; errors: number; cpuPct: number }
interface Upstream { name: string; port: number; proc: ChildProcess }



/** node:http, not fetch: fetch will not send a Host header of our choosing. */
function get(port: number, agent?: Agent): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const req = request({ host: '127.0.0.1', port, path: '/', headers: { host: HOST }, agent }, (res) => {
      res.on('data', (d: Buffer) => chunks.push(d)).on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject).end();
  });
}

async function waitServing(what: string, port: number, body: string, proc?: ChildProcess): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (proc && proc.exitCode !== null) throw new Error(`${what} exited with ${proc.exitCode}`);
    const r = await get(port).catch(() => undefined);
    if (r?.status === 200 && r.body === body) return;
    if (Date.now() > deadline) throw new Error(`${what} did not serve "${body}" within ${START_TIMEOUT_MS} ms`);
    await sleep(20);
  }
}

async function stopChild(proc: ChildProcess | undefined, signal: NodeJS.Signals): Promise<void> {
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
  const timer = setTimeout(() => proc.kill('SIGKILL'), 5_000);
  await new Promise((r) => proc.once('exit', r).kill(signal)).finally(() => clearTimeout(timer));
}

async function startUpstream(name: string): Promise<Upstream> {
  const port = await freePort();
  const proc = spawn(process.execPath, ['-e', UPSTREAM_JS, name, String(port)], { stdio: ['ignore', 'ignore', 'inherit'] });
  await waitServing(`upstream ${name}`, port, name, proc);
  return { name, port, proc };
}

/** What Berth's router sets on every request (src/router/nginx-template.ts), for the fair baseline. */
const BERTH_HEADERS = `
  map $http_upgrade $berth_connection { default upgrade; '' ''; }
  map $http_x_request_id $berth_request_id { default $request_id; "~^[A-Za-z0-9+/=._:-]{1,200}$" $http_x_request_id; }`;
const BERTH_PROXY_HEADERS = `proxy_set_header Host $host; proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme; proxy_set_header X-Forwarded-Port $server_port;
    proxy_set_header X-Request-Id $berth_request_id; proxy_set_header Upgrade $http_upgrade;
    proxy_set_header Connection $berth_connection; add_header X-Request-Id $berth_request_id always;`;

type Baseline = 'bare' | 'headers' | 'headers+log';

async function startNginx(dir: string, port: number, upstreamPort: number, mode: Baseline): Promise<ChildProcess> {
  const berthHeaders = mode !== 'bare';
  for (const sub of ['logs', 'tmp']) mkdirSync(join(dir, sub), { recursive: true });
  // Root's nginx runs its worker as nobody, which must reach tmp/ (as the router does).
  chmodSync(dir, 0o711);
  const conf = join(dir, 'nginx.conf');
  // Same process model, logging and temp paths as the router's config (src/router/nginx-template.ts).
  writeFileSync(conf, `worker_processes 1; pid nginx.pid; error_log logs/error.log warn;
events { worker_connections 4096; }
http {
  ${mode === 'headers+log' ? `log_format timed '$remote_addr [$time_iso8601] "$request" $status $bytes_sent $request_id $upstream_connect_time $upstream_response_time "$http_user_agent"';
  access_log logs/access.log timed buffer=64k flush=200ms;` : 'access_log off;'}
  client_body_temp_path tmp/body; proxy_temp_path tmp/proxy; fastcgi_temp_path tmp/fastcgi; uwsgi_temp_path tmp/uwsgi; scgi_temp_path tmp/scgi;
  upstream u { server 127.0.0.1:${upstreamPort}; keepalive 64; }${berthHeaders ? BERTH_HEADERS : ''}
  server { listen ${port}; location / { proxy_pass http://u; proxy_http_version 1.1;
    ${berthHeaders ? BERTH_PROXY_HEADERS : 'proxy_set_header Connection "";'} } }
}
`);
  const proc = spawn(NGINX, ['-p', dir, '-c', conf, '-e', join(dir, 'logs', 'error.log'), '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'inherit'] });
  await waitServing('hand-written nginx', port, 'A', proc);
  return proc;
}

/**
 * A warm-up, then the measured run with the app's Host header (autocannon is raw HTTP). Latencies
 * from per-response times (its histogram keeps whole ms); CPU is this process's (+ the Router's).
 */
async function measure(title: string, port: number): Promise<Phase> {
  let latencies: number[] = [];
  const load = async (what: string, durationS: number): Promise<autocannon.Result> => {
    step(`${what} (${durationS} s)`);
    latencies = [];
    let instance: autocannon.Instance | undefined;
    const run = new Promise<autocannon.Result>((resolve, reject) => {
      const opts = { url: `http://127.0.0.1:${port}/`, headers: { host: HOST }, connections: CONNECTIONS, duration: durationS, reconnectRate: RECONNECT_EVERY };
      instance = autocannon(opts, (err: unknown, result) => (err ? reject(err as Error) : resolve(result)));
      instance.on('response', (_client, _status, _bytes, ms) => void latencies.push(ms));
    });
    // Requests still in flight when a stalled proxy's duration ends would otherwise wait forever.
    return withTimeout(what, (durationS + 15) * 1000, run).catch((err: unknown) => {
      instance?.stop();
      throw err;
    });
  };
  await load(`${title} warm-up`, WARMUP_S);
  const cpu0 = process.cpuUsage();
  const r = await load(title, DURATION_S);
  const cpu = process.cpuUsage(cpu0);
  latencies.sort((x, y) => x - y);
  return { reqPerSec: r.requests.average, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99), non2xx: r.non2xx, errors: r.errors, cpuPct: (cpu.user + cpu.system) / 1e4 / DURATION_S };
}

/** Flips the app's one endpoint between A and B; times each store write until the router serves the new one. */
async function changeLatency(store: Store, port: number, a: Upstream, b: Upstream): Promise<{ latencies: number[]; badPolls: number }> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const latencies: number[] = [];
  let badPolls = 0;
  for (let i = 0; i < CHANGES; i++) {
    const to = i % 2 === 0 ? b : a;
    const t0 = performance.now();
    await store.put(SERVICE_KEY, `127.0.0.1:${to.port}`);
    for (;;) {
      const r = await get(port, agent);
      if (r.status !== 200) badPolls++;
      else if (r.body === to.name) break;
      if (performance.now() - t0 > CHANGE_TIMEOUT_MS) throw new Error(`change ${i} to ${to.name} not served within ${CHANGE_TIMEOUT_MS} ms`);
      await sleep(1);
    }
    latencies.push(performance.now() - t0);
    // Lets the router settle, so one change's apply does not overlap the next one's write.
    await sleep(20);
  }
  agent.destroy();
  return { latencies: latencies.sort((x, y) => x - y), badPolls };
}

/** The run whose req/s is the median of a path's rounds (its latencies come with it). */
function median(phases: Phase[]): Phase {
  const sorted = [...phases].sort((x, y) => x.reqPerSec - y.reqPerSec);
  return sorted[Math.floor((sorted.length - 1) / 2)] as Phase;
}

async function main(): Promise<void> {
  const nginxVersion = spawnSync(NGINX, ['-v'], { encoding: 'utf8' }).stderr.trim().replace(/^nginx version: /, '');
  console.log(`cores: ${availableParallelism()} (${cpus()[0]?.model ?? 'unknown cpu'}), node ${process.version}, ${nginxVersion}, autocannon ${AUTOCANNON_VERSION}`);
  console.log(`load: ${CONNECTIONS} connections, ${DURATION_S} s per path after ${WARMUP_S} s warm-up, ${ROUNDS} interleaved rounds (median shown), GET / with Host: ${HOST}; ${CHANGES} endpoint changes`);
  const dir = mkdtempSync(join(tmpdir(), 'berth-bench-router-'));
  const upstreams: Upstream[] = [];
  const nginxes: ChildProcess[] = [];
  const routers: Router[] = [];
  let store: Store | undefined;
  const cleanup = async (): Promise<void> => {
    const [rs, s, ns] = [routers.splice(0), store, nginxes.splice(0)];
    store = undefined;
    for (const r of rs) await r.stop().catch(() => undefined);
    await s?.close().catch(() => undefined);
    await Promise.all(ns.map((n) => stopChild(n, 'SIGQUIT')));
    await Promise.all(upstreams.splice(0).map((u) => stopChild(u.proc, 'SIGTERM')));
    rmSync(dir, { recursive: true, force: true });
  };
  // Ctrl-C would otherwise leave nginx and the upstreams (and their ports) behind.
  process.once('SIGINT', () => void cleanup().finally(() => process.exit(130)));
  try {
    step('starting upstreams A and B');
    upstreams.push(await startUpstream('A'), await startUpstream('B'));
    const [a, b] = upstreams as [Upstream, Upstream];
    // Every proxy runs for the whole benchmark (idle ones cost nothing), and the rounds interleave
    // them, so a drift of the machine during the run touches every path alike.
    const paths: { title: string; port: number }[] = [{ title: 'direct to upstream', port: a.port }];
    for (const [title, mode] of [['hand-written nginx (keepalive 64)', 'bare'], ['hand-written nginx + Berth headers', 'headers'], ['hand-written nginx + headers + access log', 'headers+log']] as const) {
      step(`starting ${title}`);
      const port = await freePort();
      nginxes.push(await startNginx(join(dir, `nginx-${mode.replace('+', '-')}`), port, a.port, mode));
      paths.push({ title, port });
    }
    store = openStore('memory://');
    await Promise.all([store.put(`/berth/app-names/${APP}`, `id-${APP}`), store.put(SERVICE_KEY, `127.0.0.1:${a.port}`)]);
    let logLines = 0;
    for (const [title, logs] of [['berth router, no logs', false], ['berth router + logs (berth up)', true]] as const) {
      step(`starting ${title}`);
      const port = await freePort();
      const r = new Router({
        store,
        log: createLogger('bench', { level: 'silent' }),
        id: logs ? 'bench-logs' : 'bench',
        dir: join(dir, logs ? 'router-logs' : 'router'),
        httpPort: port,
        controlPort: await freePort(),
        domain: 'berth.test',
        // As `berth up` wires it, minus the log store: each line is formatted and handed over.
        ...(logs ? { appLog: () => void logLines++ } : {}),
      });
      routers.push(r);
      await withTimeout('router start', START_TIMEOUT_MS * 2, r.start());
      await waitServing(title, port, 'A');
      paths.push({ title, port });
    }
    const rev0 = await store.currentRevision();
    const samples = new Map<string, Phase[]>(paths.map((p) => [p.title, []]));
    for (let round = 0; round < ROUNDS; round++) {
      // A different path goes first each round: no path always measures a fresh (or tired) machine.
      const order = paths.map((_, i) => paths[(i + round) % paths.length] as { title: string; port: number });
      for (const p of order) samples.get(p.title)?.push(await measure(`round ${round + 1}: ${p.title}`, p.port));
    }
    const revisions = (await store.currentRevision()) - rev0;
    const result = (title: string): Phase => median(samples.get(title) ?? []);
    const [direct, bare, fair, logging, quiet, berth] = paths.map((p) => result(p.title)) as [Phase, Phase, Phase, Phase, Phase, Phase];
    const loggedPort = paths.at(-1)?.port ?? 0;
    step(`${CHANGES} endpoint changes A <-> B`);
    const change = await withTimeout('endpoint changes', CHANGES * (CHANGE_TIMEOUT_MS + 100), changeLatency(store, loggedPort, a, b));
    const row = (path: string, p: Phase): string[] => [path, p.reqPerSec.toFixed(0), p.p50Ms.toFixed(2), p.p99Ms.toFixed(2), `${p.non2xx} / ${p.errors}`, `${p.cpuPct.toFixed(0)}%`, (p.reqPerSec / direct.reqPerSec).toFixed(2), (p.reqPerSec / bare.reqPerSec).toFixed(2), (p.reqPerSec / fair.reqPerSec).toFixed(2)];
    const table: [string, Phase][] = [
      [paths[0]?.title ?? '', direct],
      [paths[1]?.title ?? '', bare],
      [paths[2]?.title ?? '', fair],
      [paths[3]?.title ?? '', logging],
      [paths[4]?.title ?? '', quiet],
      [paths[5]?.title ?? '', berth],
    ];
    console.log('');
    printTable(['path', 'req/s', 'p50 ms', 'p99 ms', 'non-2xx / errors', 'bench cpu', 'vs direct', 'vs nginx', 'vs nginx+headers'], table.map(([name, p]) => row(name, p)));
    const perRound = (title: string): string => (samples.get(title) ?? []).map((p) => p.reqPerSec.toFixed(0)).join(' / ');
    console.log(`\nreq/s per round: ${paths.map((p) => `${p.title}: ${perRound(p.title)}`).join('; ')}`);
    const met = (ok: boolean): string => (ok ? 'met' : 'NOT met');
    const [fairRatio, quietRatio] = [berth.reqPerSec / fair.reqPerSec, quiet.reqPerSec / fair.reqPerSec];
    const [p50, p99, max] = [percentile(change.latencies, 50), percentile(change.latencies, 99), change.latencies.at(-1) ?? NaN];
    console.log(`\nberth (as berth up runs it, with router logs) / hand-written nginx with the same headers, req/s: ${fairRatio.toFixed(3)} (goal >= 0.95: ${met(fairRatio >= 0.95)}); without logs: ${quietRatio.toFixed(3)}; vs bare nginx: ${(berth.reqPerSec / bare.reqPerSec).toFixed(3)}`);
    console.log(`berth (with router logs) / hand-written nginx with the same headers and a buffered access log, req/s: ${(berth.reqPerSec / logging.reqPerSec).toFixed(3)} (goal >= 0.95: ${met(berth.reqPerSec / logging.reqPerSec >= 0.95)})`);
    console.log(`router log lines handed to the app's stream: ${logLines} (one per request, read from nginx's buffered access log)`);
    console.log(`endpoint change -> served by the router (N=${CHANGES}): p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms, max ${max.toFixed(1)} ms (goal p99 <= 100 ms: ${met(p99 <= 100)}); non-200 answers while switching: ${change.badPolls}`);
    console.log(`store revisions written while the routers served ${ROUNDS} rounds of load, with no changes made: ${revisions}`);
    // Errors measured as throughput make a benchmark lie; the table is printed, then the run fails.
    const failed = [...samples].filter(([, ps]) => ps.some((p) => p.non2xx || p.errors)).map(([name]) => name);
    if (failed.length) throw new Error(`the measurements include failed requests: ${failed.join(', ')}`);
  } finally {
    await cleanup();
  }
}

runBenchmark(main);
