import { DEFAULT_CGROUP_ROOT, Sandbox } from '../../src/sandbox/index.js';

/** The host's cgroup root, as `berth up` takes it (BERTH_CGROUP_ROOT, else /sys/fs/cgroup). */
export const CGROUP_ROOT = process.env.BERTH_CGROUP_ROOT ?? DEFAULT_CGROUP_ROOT;

/** A sandbox configured the way `berth up` configures one on this host. */
export function testSandbox(): Sandbox {
  return new Sandbox({ cgroupRoot: CGROUP_ROOT });
}
