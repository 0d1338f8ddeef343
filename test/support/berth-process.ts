import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { agentFlags, removeNetwork, testNetwork, upFlags, type TestNetwork } from './network.js';
import { freePort } from './ports.js';

// Suites poll the API every 100 ms with one token: Heroku's 4,500 an hour would run out mid-suite
// (test/controller/rate-limit.test.ts tests the limit itself).
const NO_RATE_LIMIT = ['--rate-limit', '0'];

/**
 * One per-machine toolchain cache for every Berth the tests start, as on a real machine: Node and
 * the package managers are fetched once, not once per data dir (test/builder/toolchains tests the
 * cache itself in dirs of their own).
 */
export const TEST_TOOLCHAIN_DIR = join(tmpdir(), 'berth-test-toolchains');

const MAIN = join(import.meta.dirname, '../../src/cli/main.ts');

export interface BerthProcess {
  summary: Record<string, unknown>;
  apiUrl: string;
  stderr(): string;
  /** SIGTERM, then the exit code (null if it had to be killed). */
  stop(): Promise<number | null>;
}

/** Waits for a `--json` command's summary line; its stderr is kept for failure messages. */
async function started(child: ChildProcess, what: string): Promise<{ summary: Record<string, unknown>; stderr: () => string; exited: Promise<number | null> }> {
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const summary = await new Promise<Record<string, unknown>>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${what} did not start within 30s:\n${stderr}`)), 30_000);
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n')[0];
      if (out.includes('\n') && line) {
        clearTimeout(timer);
        resolve(JSON.parse(line) as Record<string, unknown>);
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited with ${code}:\n${stderr}`));
    });
  });
  return { summary, stderr: () => stderr, exited };
}

// One network per data dir: a node started again on its data dir (and store) asks for the same
// range, and takes back its own kernel names.
const networks = new Map<string, TestNetwork>();
function networkOf(args: string[]): TestNetwork | undefined {
  // A network the caller named is the caller's to clean up.
  if (args.includes('--network-name')) return undefined;
  const i = args.indexOf('--data-dir');
  const key = i >= 0 ? (args[i + 1] ?? '') : '';
  let net = networks.get(key);
  if (!net) networks.set(key, (net = testNetwork()));
  return net;
}

/**
 * Runs `berth up --json` for real and waits for its summary line. Unless the args name a network,
 * the node gets a test network of its own (suites run side by side on one kernel).
 */
export async function startBerth(args: string[], env: Record<string, string> = {}): Promise<BerthProcess> {
  const apiPort = args.includes('--api-port') ? undefined : await freePort();
  const sshPort = args.includes('--ssh-port') ? undefined : await freePort();
  const httpPort = args.includes('--http-port') ? undefined : await freePort();
  // Not 443/8443: suites run side by side.
  const httpsPort = args.includes('--https-port') ? undefined : await freePort();
  const net = networkOf(args);
  const child: ChildProcess = spawn(
    process.execPath,
    ['--import', 'tsx', MAIN, 'up', '--json', '--api-host', '127.0.0.1', ...NO_RATE_LIMIT, ...(apiPort ? ['--api-port', String(apiPort)] : []), ...(sshPort ? ['--ssh-port', String(sshPort)] : []), ...(httpPort ? ['--http-port', String(httpPort)] : []), ...(httpsPort ? ['--https-port', String(httpsPort)] : []), ...(net ? upFlags(net) : []), ...(args.includes('--toolchain-dir') ? [] : ['--toolchain-dir', TEST_TOOLCHAIN_DIR]), ...args],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } },
  );
  const { summary, stderr, exited } = await started(child, 'berth up');
  return {
    summary,
    apiUrl: String(summary.api_url),
    stderr,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) {
        if (child.signalCode !== null && net) await removeNetwork(net.name);
        return child.exitCode;
      }
      const kill = setTimeout(() => child.kill('SIGKILL'), 10_000);
      child.kill('SIGTERM');
      const code = await exited;
      clearTimeout(kill);
      // Only a node that had to be killed leaves kernel objects behind.
      if (code !== 0 && net) await removeNetwork(net.name);
      return code;
    },
  };
}

/** Runs `berth up` expecting it to fail; resolves with its exit code and stderr. */
export function failBerth(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN, 'up', '--json', '--api-host', '127.0.0.1', ...NO_RATE_LIMIT, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

export interface AgentProcess {
  summary: Record<string, unknown>;
  pid: number;
  stderr(): string;
  /** SIGKILL: a machine failure, not a shutdown. Resolves once the process is gone. */
  kill(): Promise<void>;
  stop(): Promise<number | null>;
}

/** Runs `berth agent --json` as its own process (a machine of a test cluster), with kernel names of its own unless the args name them. */
export async function startAgent(args: string[], env: Record<string, string> = {}): Promise<AgentProcess> {
  const net = networkOf(args);
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', MAIN, 'agent', '--json', ...(net ? agentFlags(net) : []), ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  const { summary, stderr, exited } = await started(child, 'berth agent');
  return {
    summary,
    pid: child.pid ?? 0,
    stderr,
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      // A machine killed earlier: what it left in the kernel goes now.
      if (child.exitCode !== null || child.signalCode !== null) {
        if (child.signalCode !== null && net) await removeNetwork(net.name);
        return child.exitCode;
      }
      const kill = setTimeout(() => child.kill('SIGKILL'), 40_000);
      child.kill('SIGTERM');
      const code = await exited;
      clearTimeout(kill);
      if (code !== 0 && net) await removeNetwork(net.name);
      return code;
    },
  };
}
