/**
 * Real `berth` processes on the hosts of a network lab (test/support/netlab.ts): each one runs
 * inside its host's network namespace, as on a machine of its own, so every agent owns a kernel
 * network (its subnet, nft table, routes, dyno namespaces) the way it would in production.
 *
 * The test process reaches these hosts only through the lab's gateway (`createLab({ gateway:
 * true })`); overlay addresses are routed inside the lab alone, so reaching a dyno directly takes
 * `dialFrom` (a client run inside a host).
 */
import { execFile, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { request } from 'node:http';
import { join } from 'node:path';
import { TEST_TOOLCHAIN_DIR, type AgentProcess, type BerthProcess } from './berth-process.js';
import type { Lab, LabHost } from './netlab.js';

const execFileP = promisify(execFile);
const MAIN = join(import.meta.dirname, '../../src/cli/main.ts');
/** Generous: `berth up` on etcd with two busy cores has taken tens of seconds. */
const START_TIMEOUT_MS = 60_000;

/**
 * Fixed ports: a host's namespace is its own, so nothing else there can hold them. (The API port
 * is not 5000, the dynos' PORT, to keep the two apart when reading a failure.)
 */
export const LAB_PORTS = { api: 7000, http: 8080, https: 8443, ssh: 2222 } as const;

export interface LabBerthProcess extends BerthProcess {
  host: LabHost;
  pid: number;
}

export interface LabAgentProcess extends AgentProcess {
  host: LabHost;
}

/**
 * A `--network-name` of the lab's own (≤ 6 characters): the kernel objects a berth process makes
 * (dyno namespaces above all, which live in /run/netns for every namespace to see) start with the
 * lab's prefix and a letter, so the lab's reaping removes what a killed process left.
 */
export function labNetworkName(lab: Lab, role: string, i: number): string {
  // A letter right after the prefix: `nl1` must not claim `nl10…` (see netlab's belongsTo).
  if (!/^[a-z]$/.test(role)) throw new Error(`role must be one lowercase letter, not "${role}"`);
  const name = `${lab.prefix}${role}${i}`;
  if (!/^[a-z][a-z0-9]{0,5}$/.test(name)) throw new Error(`network name ${name} is not 1-6 lowercase letters and digits`);
  return name;
}

/** Waits for a `--json` command's summary line; stderr is kept (its tail) for failure messages. */
async function started(child: ChildProcess, what: string): Promise<{ summary: Record<string, unknown>; stderr: () => string; exited: Promise<number | null> }> {
  let stderr = '';
  // Only the tail: a node logging at info for minutes would otherwise grow without bound.
  child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-200_000)));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const summary = await new Promise<Record<string, unknown>>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${what} did not start within ${START_TIMEOUT_MS / 1000} s:\n${stderr.slice(-4000)}`)), START_TIMEOUT_MS);
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n')[0];
      if (out.includes('\n') && line) {
        clearTimeout(timer);
        try {
          resolve(JSON.parse(line) as Record<string, unknown>);
        } catch {
          reject(new Error(`${what} printed no JSON summary: ${line}`));
        }
      }
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`${what} could not be spawned: ${err.message}`));
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited with ${code}:\n${stderr.slice(-4000)}`));
    });
  });
  // Nothing reads stdout after the summary; keep the pipe drained so the process never blocks on it.
  child.stdout?.resume();
  return { summary, stderr: () => stderr, exited };
}

const gone = (child: ChildProcess): boolean => child.exitCode !== null || child.signalCode !== null;

/** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code (null when killed). */
async function terminate(child: ChildProcess, exited: Promise<number | null>, graceMs: number): Promise<number | null> {
  if (gone(child)) return child.exitCode;
  const kill = setTimeout(() => child.kill('SIGKILL'), graceMs);
  child.kill('SIGTERM');
  const code = await exited;
  clearTimeout(kill);
  return code;
}

function spawnBerth(host: LabHost, args: string[], env: Record<string, string>): ChildProcess {
  // nsenter execs (no fork for a network namespace): the child's pid is berth's own, so signals
  // (SIGKILL, SIGSTOP) reach berth itself, as they would on a machine.
  return host.spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
}

/**
 * `berth up --json` inside `host`, its API URL naming the host's underlay address; the ports of
 * LAB_PORTS unless `args` names them. Pass the store, data dir, network flags and roles in `args`.
 */
export async function startBerthIn(host: LabHost, args: string[], env: Record<string, string> = {}): Promise<LabBerthProcess> {
  const given = (flag: string): boolean => args.includes(flag);
  const apiPort = given('--api-port') ? args[args.indexOf('--api-port') + 1] : String(LAB_PORTS.api);
  const defaults: [string, string | number][] = [
    // The underlay address only, as on a real machine (the builder's git hook dials it too).
    ['--api-host', host.address],
    ['--api-port', LAB_PORTS.api],
    // What clients, agents on other hosts and log sessions are told to use: the host's address.
    ['--api-url', `http://${host.address}:${apiPort}`],
    ['--http-port', LAB_PORTS.http],
    ['--https-port', LAB_PORTS.https],
    ['--ssh-port', LAB_PORTS.ssh],
    // Suites poll with one token far past Heroku's 4,500 requests an hour.
    ['--rate-limit', 0],
    // The machine's one toolchain cache, shared as by every test Berth.
    ['--toolchain-dir', TEST_TOOLCHAIN_DIR],
  ];
  const flags = defaults.filter(([f]) => !given(f)).flatMap(([f, v]) => [f, String(v)]);
  const child = spawnBerth(host, ['up', '--json', ...flags, ...args], env);
  const { summary, stderr, exited } = await started(child, `berth up in ${host.name}`);
  return {
    host,
    pid: child.pid ?? 0,
    summary,
    apiUrl: String(summary.api_url),
    stderr,
    stop: () => terminate(child, exited, 20_000),
  };
}

/**
 * `berth agent --json` inside `host`, registered at the host's underlay address unless `args`
 * gives `--address`. Rejects (with its stderr) when the agent exits before its summary.
 */
export async function startAgentIn(host: LabHost, args: string[], env: Record<string, string> = {}): Promise<LabAgentProcess> {
  const address = args.includes('--address') ? [] : ['--address', host.address];
  const child = spawnBerth(host, ['agent', '--json', ...address, ...args], env);
  const { summary, stderr, exited } = await started(child, `berth agent in ${host.name}`);
  return {
    host,
    summary,
    pid: child.pid ?? 0,
    stderr,
    async kill() {
      if (gone(child)) return;
      // The agent alone, not its process group: its dynos die with it (bwrap --die-with-parent),
      // as on a machine whose agent crashed.
      child.kill('SIGKILL');
      await exited;
    },
    stop: () => terminate(child, exited, 40_000),
  };
}

/**
 * A machine dies whole: every process in the host's network namespace (berth, its etcd member,
 * nginx) gets SIGKILL at once; dynos, in namespaces of their own, die with their sandbox's parent.
 */
export async function killHost(host: LabHost): Promise<void> {
  const pids = async (): Promise<number[]> => (await execFileP('ip', ['netns', 'pids', host.name])).stdout.split(/\s+/).filter(Boolean).map(Number);
  // Until the host is empty (bounded): a SIGKILLed process lingers while the kernel tears it down,
  // and a machine restarted meanwhile finds its old nginx still holding the router's ports.
  for (let round = 0; round < 100; round++) {
    const left = await pids();
    if (left.length === 0) return;
    for (const pid of left) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Gone already.
      }
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface HttpAnswer {
  status: number;
  body: string;
}

/**
 * One HTTP request from the test process to a server on a lab host (through the gateway), with a
 * Host header of our choosing (an app's hostname, for the router). A fresh connection each time.
 */
export function httpTo(o: { address: string; port: number; host?: string; path?: string; timeoutMs?: number }): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: o.address, port: o.port, path: o.path ?? '/', headers: o.host ? { host: o.host } : {}, agent: false, timeout: o.timeoutMs ?? 10_000 },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer from ${o.address}:${o.port} within ${o.timeoutMs ?? 10_000} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/*
 * A plain HTTP GET made inside a host (the overlay is routed only there): prints the status and
 * the body, exits 0 on any answer and 2 when no connection could be made. Constant; the URL is an
 * argument.
 */
const DIAL = `
const http = require('http');
const req = http.get(process.argv[1], { agent: false, timeout: Number(process.argv[2]) }, (res) => {
  let body = '';
  res.on('data', (d) => (body += d));
  res.on('end', () => { process.stdout.write(res.statusCode + '\\n' + body); process.exit(0); });
});
req.on('timeout', () => req.destroy(new Error('timeout')));
req.on('error', (e) => { process.stderr.write(String(e.message)); process.exit(2); });
`;

/**
 * GET `http://address:port/` from inside `host` (e.g. a dyno's overlay endpoint dialled from a
 * machine of the lab). Resolves with the answer, or undefined when nothing answered.
 */
export async function dialFrom(host: LabHost, endpoint: string, timeoutMs = 2000): Promise<HttpAnswer | undefined> {
  const r = await host.exec(process.execPath, ['-e', DIAL, `http://${endpoint}/`, String(timeoutMs)], { timeoutMs: timeoutMs + 10_000 });
  if (r.code !== 0) return undefined;
  const nl = r.stdout.indexOf('\n');
  return { status: Number(r.stdout.slice(0, nl)), body: r.stdout.slice(nl + 1) };
}
