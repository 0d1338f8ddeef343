/**
 * How tenant code runs on a node, shared by the builder and the agent: bubblewrap in cgroups as the
 * app's own uid (`Sandbox`, made once by the composition root from a `SandboxConfig`), the app's
 * uid allocated in the store (`allocateUid`), and root's careful handling of tenant files.
 */
export { Sandbox, DEFAULT_CGROUP_ROOT, DEFAULT_CPU_SHARES, bwrapArgs, cpuSharesFor, MAX_CPU_SHARES, oneOffCpuSharesFor, type Bind, type SandboxConfig, type SandboxProcess, type SandboxResult, type SandboxSpec } from './sandbox.js';
export { allocateUid, UID_BASE, UID_COUNT } from './uids.js';
export { extractAs, readTenantFile } from './safe-fs.js';
export { mountVolume, reapVolumes, hostReserveBytes, MIN_VOLUME_BYTES, NO_SPACE, type Volume, type VolumeOptions } from './volume.js';
