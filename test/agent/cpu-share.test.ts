import { randomInt } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tar from 'tar';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProcessRuntime } from '../../src/agent/runtime/process.js';
import type { DynoSpec, RunningDyno } from '../../src/agent/runtime/types.js';
import { Sandbox, UID_BASE, UID_COUNT } from '../../src/sandbox/index.js';
import { freePort } from '../support/ports.js';
import { CGROUP_ROOT } from '../support/sandbox.js';
import { until } from '../support/until.js';

/**
 * A busy-loop dyno beside a serving one. Without a cpu cgroup per dyno, CPU time goes per
 * scheduling entity: per process, or per session where the kernel groups sessions (autogroup, on
 * here), and a tenant can start a session per busy loop (setsid), so eight loops take eight ninths.
 * With one, the two dynos split the CPU by their shares (equal here) however many processes and
 * sessions each has. Measured as CPU time each dyno got while both wanted more than they had, so
 * the figure does not move with other load on the machine; the serving dyno's throughput beside
 * the neighbour against alone is reported too.
 */

// Each request costs the server a few milliseconds of CPU, so its throughput is its CPU time.
const SERVER = `
const { createHash } = require('node:crypto');
require('node:http').createServer((req, res) => {
  let h = Buffer.alloc(64);
  for (let i = 0; i < 20000; i++) h = createHash('sha256').update(h).digest();
  res.end(h.toString('hex').slice(0, 8));
}).listen(Number(process.env.PORT), '127.0.0.1', () => console.log('listening'));
`;
const BUSY = "for i in 1 2 3 4 5 6 7 8; do setsid bash -c 'while :; do :; done' & done; echo busy; wait";
const WINDOW_MS = 3000;

let dir: string;
let slugPath: string;
const started: RunningDyno[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-cpu-'));
  chmodSync(dir, 0o755);
  const src = join(dir, 'src');
  mkdirSync(src);
  writeFileSync(join(src, 'server.js'), SERVER);
  slugPath = join(dir, 'slug.tgz');
  await tar.c({ gzip: true, cwd: src, file: slugPath, portable: true }, ['.']);
});
afterAll(async () => {
  await Promise.all(started.map((d) => d.stop(0)));
  rmSync(dir, { recursive: true, force: true });
});

let n = 0;
async function start(runtime: ProcessRuntime, command: string, port?: number): Promise<{ dyno: RunningDyno; lines: string[]; id: string }> {
  const lines: string[] = [];
  const spec: DynoSpec = {
    id: `cpu${process.pid}-${n++}`,
    appId: `cpu-app-${n}`,
    uid: UID_BASE + randomInt(UID_COUNT),
    dyno: port !== undefined ? 'web.1' : 'worker.1',
    command,
    slugPath,
    env: {},
    ...(port !== undefined ? { port } : {}),
    // Both standard-1x: equal weights.
    memoryBytes: 512 * 1024 * 1024,
    pidsMax: 100,
    diskBytes: 64 * 1024 * 1024,
    onOutput: (_s, line) => lines.push(line),
  };
  const dyno = await runtime.start(spec);
  started.push(dyno);
  return { dyno, lines, id: `dyno-${spec.id}` };
}

function get(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve());
    });
    req.on('error', reject);
    req.end();
  });
}

/** Requests answered in the window, two at a time: more than the server's one core can take. */
async function throughput(port: number): Promise<number> {
  let done = 0;
  const end = Date.now() + WINDOW_MS;
  const worker = async (): Promise<void> => {
    while (Date.now() < end) {
      await get(port);
      done++;
    }
  };
  await Promise.all([worker(), worker()]);
  return (done * 1000) / WINDOW_MS;
}

/** CPU seconds the sandbox's live processes have used (utime + stime). */
function cpuSeconds(sandbox: Sandbox, id: string): number {
  let ticks = 0;
  for (const pid of sandbox.processes(id)) {
    try {
      // Fields after the command's ")" (which may hold spaces): state is 3rd, utime 14th, stime 15th.
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // Exited meanwhile.
    }
  }
  return ticks / 100;
}

interface Measure {
  alone: number;
  beside: number;
  /** The serving dyno's CPU time over the busy one's while both ran flat out. */
  cpuRatio: number;
}

/** The serving dyno alone, then beside the busy one, on a runtime with or without cpu cgroups. */
async function measure(name: string, cpu: boolean): Promise<Measure> {
  const sandbox = new Sandbox({ cgroupRoot: CGROUP_ROOT, cpu });
  const runtime = new ProcessRuntime({ workDir: join(dir, name), sandbox });
  const port = await freePort();
  const web = await start(runtime, 'node server.js', port);
  await until('listening', () => (web.lines.includes('listening') ? true : undefined), 20_000);
  await throughput(port); // warm-up
  const alone = await throughput(port);
  const busy = await start(runtime, BUSY);
  await until('busy', () => (busy.lines.includes('busy') ? true : undefined), 20_000);
  await new Promise((r) => setTimeout(r, 300));
  const before = { web: cpuSeconds(sandbox, web.id), busy: cpuSeconds(sandbox, busy.id) };
  const beside = await throughput(port);
  const used = { web: cpuSeconds(sandbox, web.id) - before.web, busy: cpuSeconds(sandbox, busy.id) - before.busy };
  await busy.dyno.stop(0);
  await web.dyno.stop(0);
  return { alone, beside, cpuRatio: used.web / used.busy };
}

describe('cpu shares', () => {
  it('keeps a serving dyno its share of the CPU beside a dyno running eight busy loops in sessions of their own', async () => {
    const without = await measure('without', false);
    const withCgroups = await measure('with', true);
    const fmt = (m: Measure): string => `CPU time ${m.cpuRatio.toFixed(2)}× the busy dyno's; ${m.alone.toFixed(0)} req/s alone, ${m.beside.toFixed(0)} beside it (${((m.beside / m.alone) * 100).toFixed(0)}%)`;
    console.log(`cpu share of the serving dyno — with a cpu cgroup per dyno: ${fmt(withCgroups)}; without: ${fmt(without)}`);
    // Equal shares: as much CPU as the neighbour, all its one thread can use (2 cores); per
    // process or session it gets an eighth of the neighbour's.
    expect(withCgroups.cpuRatio).toBeGreaterThan(0.5);
  }, 90_000);
});
