import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const exec = promisify(execFile);

/**
 * Networks for tests that run in the host's network namespace, side by side with other suites.
 *
 * `testNetwork()`: what a platform started by a test passes as its network (`berth up
 * --network-name/--overlay/--backend`, or `NetworkRole` in process): kernel names and an overlay
 * range of its own, so two platforms never share a namespace, veth, nft table or route. host-gw:
 * a platform alone on one kernel needs no VXLAN device.
 *
 * `scratchNetns()`: a bare namespace for runtime and sandbox tests, removed by its `remove`.
 */

const pool = (): number => {
  const id = Number(process.env.VITEST_POOL_ID);
  return Number.isInteger(id) && id > 0 ? id : 0;
};

let calls = 0;

export interface TestNetwork {
  /** Kernel object prefix (≤ 6 characters): `bt<pool><counter>`. */
  name: string;
  /** A /16 of its own: `10.<100+n>.0.0/16`. */
  overlay: string;
  backend: 'host-gw';
}

/**
 * Unique per vitest worker and per call within it. A worker runs one file at a time and each file
 * numbers from 0 again, so a name can come back in a later file: by then the platform that had
 * it has stopped (and the network reaps leftovers of its own prefix at start).
 */
export function testNetwork(): TestNetwork {
  const p = pool() % 8;
  const n = calls++ % 16;
  return { name: `bt${p}${n.toString(16)}`, overlay: `10.${100 + p * 16 + n}.0.0/16`, backend: 'host-gw' };
}

/** `berth up` flags for `testNetwork()`. */
export function upFlags(net: TestNetwork = testNetwork()): string[] {
  return ['--network-name', net.name, '--overlay', net.overlay, '--backend', net.backend];
}

/** `berth agent` flags: only the name; the range and backend come from the store. */
export function agentFlags(net: TestNetwork = testNetwork()): string[] {
  return ['--network-name', net.name];
}

/**
 * Removes whatever a platform of this name left in the kernel: its namespaces (their veths and
 * host routes go with them), its nftables table and its VXLAN device. A node that stops cleanly
 * leaves nothing; a SIGKILLed one (a machine failure in a test) leaves all of it, and its routes
 * would then overlap the range of the next platform this worker starts.
 */
export async function removeNetwork(name: string): Promise<void> {
  await reap(`${name}-`);
  await exec('nft', ['delete', 'table', 'inet', name], { timeout: 10_000 }).catch(() => undefined);
  await exec('ip', ['link', 'del', `${name}.vx`], { timeout: 10_000 }).catch(() => undefined);
}

export interface ScratchNetns {
  name: string;
  /** `/run/netns/<name>`: what SandboxSpec.netns and DynoSpec.netns take. */
  path: string;
  remove(): Promise<void>;
}

let scratch = 0;

/** Removes namespaces an earlier, killed run of this worker left behind. */
async function reap(prefix: string): Promise<void> {
  const { stdout } = await exec('ip', ['netns', 'list'], { timeout: 10_000 });
  for (const line of stdout.split('\n')) {
    const name = line.split(' ')[0] ?? '';
    if (name.startsWith(prefix)) await exec('ip', ['netns', 'del', name], { timeout: 10_000 }).catch(() => undefined);
  }
}

/**
 * A namespace holding a veth pair (`probe0`, `probe1`) and nothing else, so a process can tell it
 * is inside it from /proc/net/dev. Named `tns<pool>-<pid>-<n>`; leftovers of this worker's earlier
 * runs are reaped on the first call.
 */
export async function scratchNetns(): Promise<ScratchNetns> {
  const prefix = `tns${pool()}-`;
  if (scratch === 0) await reap(prefix);
  const name = `${prefix}${process.pid}-${scratch++}`;
  await exec('ip', ['netns', 'add', name], { timeout: 10_000 });
  await exec('ip', ['-n', name, 'link', 'add', 'probe0', 'type', 'veth', 'peer', 'name', 'probe1'], { timeout: 10_000 });
  return {
    name,
    path: `/run/netns/${name}`,
    remove: async () => {
      await exec('ip', ['netns', 'del', name], { timeout: 10_000 }).catch(() => undefined);
    },
  };
}
