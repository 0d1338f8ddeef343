/**
 * The one-machine half of `npm run bench:network`: a dyno's start (scale 0 → 1 until it answers
 * through the router) and the router's throughput to it, with the dyno in a network namespace of
 * its own behind a real OverlayNetwork, against the host-port path the overlay replaced (the
 * LoopbackNetwork: the dyno in the host's network on 127.0.0.1:<free port>).
 *
 * Both run the real parts in process, wired as src/node/platform.ts wires them: a memory store,
 * the Scheduler, an Agent with the ProcessRuntime and Sandbox (bubblewrap), and the Router (nginx).
 * Each round builds a fresh stack per path and tears it down again, so the host-port rounds never
 * run with the overlay's nftables table (and the conntrack it brings) loaded in the host.
 */
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import * as tar from 'tar';
import { Agent } from '../src/agent/index.js';
import { ProcessRuntime } from '../src/agent/runtime/process.js';
import { Apps } from '../src/controller/services/apps.js';
import { Formations } from '../src/controller/services/formation.js';
import { Releases } from '../src/controller/services/releases.js';
import { Users } from '../src/controller/services/users.js';
import { list } from '../src/domain/codec.js';
import { keys } from '../src/domain/keys.js';
import { createLogger } from '../src/domain/log.js';
import { codecs } from '../src/domain/records.js';
import { LoopbackNetwork, OverlayNetwork, type Networks } from '../src/network/index.js';
import { defaultSourceAddress } from '../src/node/network.js';
import { Router } from '../src/router/index.js';
import { Scheduler } from '../src/scheduler/index.js';
import { openStore, type Store } from '../src/store/index.js';
import { freePort } from '../test/support/ports.js';
import { testSandbox } from '../test/support/sandbox.js';
import { until } from '../test/support/until.js';
import { sleep, step, withTimeout } from './lib.js';

export type Path = 'host-port' | 'namespace';

const APP = 'bench';
const DOMAIN = 'berth.test';
const HOST = `${APP}.${DOMAIN}`;
/** The overlay's kernel names (`bn0-d…`, `bn0…`, `table inet bn0`) and a range no test suite uses (they take 10.100–10.227). */
const NET_NAME = 'bn0';
const NET_RANGE = '10.231.0.0/16';
const CONNECTIONS = 50;
const WARMUP_S = 1;
const START_TIMEOUT_MS = 30_000;
const STACK_TIMEOUT_MS = 30_000;
// CommonJS, as a slug's server.js: keep-alive outlasting nginx's idle upstream connections.
const SERVER_JS = `const srv = require('node:http').createServer((req, res) => res.end('ok'));
srv.keepAliveTimeout = 65000;
srv.listen(Number(process.env.PORT));
`;

export interface DynoRound {
  path: Path;
  /** ms from the formation write (web 0 → 1) until the router answers 200, per start. */
  starts: number[];
  rps: number;
  p50Ms: number;
  p99Ms: number;
  non2xx: number;
  /** wrk's socket errors (connect, read, write, timeout), summed. */
  errors: number;
}

/** The slug every dyno runs: a tiny Node HTTP server listening on $PORT. */
export async function makeSlug(dir: string): Promise<string> {
  const src = join(dir, 'slug-src');
  mkdirSync(src, { recursive: true });
  writeFileSync(join(src, 'server.js'), SERVER_JS);
  const file = join(dir, 'slug.tgz');
  await tar.c({ gzip: true, cwd: src, file, portable: true }, ['.']);
  return file;
}

interface Stack {
  port: number;
  store: Store;
  scale(quantity: number): Promise<void>;
  stop(): Promise<void>;
}

/** node:http, not fetch: fetch will not send a Host header of our choosing. A fresh connection each time. */
function status(port: number): Promise<number> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/', headers: { host: HOST, connection: 'close' }, timeout: 2000 }, (res) => {
      res.resume().on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy()).on('error', () => resolve(0)).end();
  });
}

/** A store, the scheduler, an agent on `path`'s network, a router; the app deployed at web=0. */
async function startStack(path: Path, dir: string, slugPath: string): Promise<Stack> {
  mkdirSync(dir, { recursive: true });
  const log = createLogger('bench', { level: 'silent' });
  const store = openStore('memory://');
  const stops: (() => Promise<void>)[] = [() => store.close()];
  let stopping: Promise<void> | undefined;
  // One teardown however often it is asked for (Ctrl-C and the round's finally): every caller waits for all of it.
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      // Reverse order, as the node's shutdown: the router and agent (its dynos) before the network.
      for (const s of stops.splice(0).reverse()) await withTimeout('stopping a part of the stack', STACK_TIMEOUT_MS, s()).catch((err: unknown) => step(`cleanup: ${String(err)}`));
    })());
  try {
    const owner = (await new Users(store).create('bench@example.com')).user;
    const apps = new Apps(store);
    const releases = new Releases(store, apps);
    const formations = new Formations(store, apps, releases);
    await apps.create(owner, APP);
    await releases.deploy(owner, await apps.resolve(owner, APP), { id: 'slug-bench', process_types: { web: 'node server.js' }, commit: null });
    const httpPort = await freePort();
    let network: Networks = new LoopbackNetwork();
    let address = '127.0.0.1';
    if (path === 'namespace') {
      address = (await defaultSourceAddress()) ?? '127.0.0.1';
      // The dynos' resolv.conf lives here and is bound as their uid: traversable (src/node/network.ts).
      const netDir = join(dir, 'network');
      mkdirSync(netDir, { recursive: true, mode: 0o711 });
      chmodSync(netDir, 0o711);
      const overlay = new OverlayNetwork({ store, log, machine: 'bench', dir: netDir, name: NET_NAME, publicIp: address, request: { network: NET_RANGE, backend: 'host-gw' }, publicPorts: [httpPort], internalAddresses: [] });
      stops.push(() => overlay.stop());
      await overlay.start();
      network = overlay;
    }
    const scheduler = new Scheduler({ store, log, id: 'bench' });
    stops.push(() => scheduler.stop());
    await scheduler.start();
    const agent = new Agent({
      store,
      log,
      machine: { id: 'bench', name: 'bench', address, tags: {}, capacity: { memoryBytes: 8 * 1024 ** 3, cpus: 2 } },
      runtime: new ProcessRuntime({ workDir: join(dir, 'dynos'), sandbox: testSandbox() }),
      network,
      slugPath: () => Promise.resolve(slugPath),
      appLog: () => undefined,
    });
    stops.push(() => agent.stop());
    await agent.start();
    // As `berth up` runs it: with its per-request log lines handed on.
    const router = new Router({ store, log, id: 'bench', dir: join(dir, 'router'), httpPort, controlPort: await freePort(), domain: DOMAIN, appLog: () => undefined });
    stops.push(() => router.stop());
    await withTimeout('router start', STACK_TIMEOUT_MS, router.start());
    const scale = async (quantity: number): Promise<void> => void (await formations.update(owner, await apps.resolve(owner, APP), [{ type: 'web', quantity }]));
    return { port: httpPort, store, scale, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Scale 0 → 1, timed until the router answers 200 for the app (a fresh connection every 10 ms). */
async function timeStart(stack: Stack): Promise<number> {
  const t0 = performance.now();
  await stack.scale(1);
  for (;;) {
    if ((await status(stack.port)) === 200) return performance.now() - t0;
    if (performance.now() - t0 > START_TIMEOUT_MS) throw new Error(`the dyno did not answer through the router within ${START_TIMEOUT_MS} ms`);
    await sleep(10);
  }
}

/**
 * Scale 1 → 0 and wait until the dyno is gone: unpublished and its status removed. Not until its
 * overlay address is released: that waits for every router to report a store revision past the
 * removal, and a router reports only revisions that change what it serves, so with nothing else
 * happening the address stays held until the next start publishes an endpoint. The next start
 * takes another address meanwhile, as it would on a busy machine.
 */
async function scaleDown(stack: Stack): Promise<void> {
  await stack.scale(0);
  await until(
    'the dyno stopped and unpublished',
    async () => {
      const [endpoints, statuses] = await Promise.all([list(stack.store, keys.services(APP), codecs.endpoint), list(stack.store, keys.appStatuses(APP), codecs.status)]);
      return endpoints.length === 0 && statuses.length === 0;
    },
    { timeoutMs: START_TIMEOUT_MS, intervalMs: 20 },
  );
}

interface WrkResult {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  non2xx: number;
  errors: number;
}

function toMs(v: string, unit: string): number {
  return Number(v) * (unit === 'us' ? 0.001 : unit === 's' ? 1000 : 1);
}

/** wrk (2 threads, `CONNECTIONS` connections) through the router with the app's Host header. */
function wrk(port: number, seconds: number): Promise<WrkResult> {
  const args = ['-t2', `-c${CONNECTIONS}`, `-d${seconds}s`, '--latency', '-H', `Host: ${HOST}`, `http://127.0.0.1:${port}/`];
  return new Promise((resolve, reject) => {
    execFile('wrk', args, { timeout: (seconds + 15) * 1000 }, (err, out, stderr) => {
      if (err) return reject(new Error(`wrk failed: ${err.message} ${stderr}`));
      const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
      const p50 = /\s50%\s+([\d.]+)(us|ms|s)/.exec(out);
      const p99 = /\s99%\s+([\d.]+)(us|ms|s)/.exec(out);
      const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
      if (!rps || !p50 || !p99) return reject(new Error(`cannot read wrk's output:\n${out}`));
      resolve({
        rps: Number(rps[1]),
        p50Ms: toMs(p50[1] ?? '', p50[2] ?? ''),
        p99Ms: toMs(p99[1] ?? '', p99[2] ?? ''),
        non2xx: Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0),
        errors: sock ? sock.slice(1).reduce((s, n) => s + Number(n), 0) : 0,
      });
    });
  });
}

/**
 * One round of one path on a fresh stack: `starts` timed starts (each scaled down again, all but
 * the last), then wrk through the router to the last one, after a warm-up.
 */
export async function dynoRound(path: Path, dir: string, slugPath: string, o: { starts: number; seconds: number; label: string; cleanups: Set<() => Promise<void>> }): Promise<DynoRound> {
  step(`${o.label}: ${path} stack`);
  const stack = await startStack(path, dir, slugPath);
  // On Ctrl-C: the agent stops its dyno, the overlay removes its namespace and table.
  o.cleanups.add(stack.stop);
  try {
    const starts: number[] = [];
    for (let i = 0; i < o.starts; i++) {
      if (i > 0) await scaleDown(stack);
      starts.push(await timeStart(stack));
      step(`${o.label}: ${path} start ${i + 1}: ${starts.at(-1)?.toFixed(0)} ms`);
    }
    await wrk(stack.port, WARMUP_S);
    step(`${o.label}: ${path} wrk ${CONNECTIONS} connections, ${o.seconds} s`);
    const w = await wrk(stack.port, o.seconds);
    return { path, starts, ...w };
  } finally {
    await stack.stop();
    o.cleanups.delete(stack.stop);
  }
}
