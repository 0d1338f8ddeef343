import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CGROUP_ROOT, testSandbox } from '../support/sandbox.js';

const CONTROLLERS = ['memory', 'pids', 'cpu'];
const dirOf = (controller: string, id: string): string => join(CGROUP_ROOT, controller, 'berth', id);

describe('stale cgroups', () => {
  it("reaps an owner's leftover memory, pids and cpu cgroups, but not one a process is still in", async () => {
    const sandbox = testSandbox();
    const stale = `reap-${process.pid}-stale`;
    const busy = `reap-${process.pid}-busy`;
    for (const c of CONTROLLERS) for (const id of [stale, busy]) mkdirSync(dirOf(c, id), { recursive: true });
    const sleeper = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      writeFileSync(join(dirOf('cpu', busy), 'cgroup.procs'), String(sleeper.pid));
      expect(sandbox.reapStaleCgroups(`reap-${process.pid}-`, 0)).toBe(5);
      for (const c of CONTROLLERS) expect(existsSync(dirOf(c, stale)), c).toBe(false);
      expect(existsSync(dirOf('cpu', busy))).toBe(true);
      // Young ones are left alone: their owner may be about to put a process in.
      mkdirSync(dirOf('cpu', stale));
      expect(sandbox.reapStaleCgroups(`reap-${process.pid}-`)).toBe(0);
    } finally {
      sleeper.kill('SIGKILL');
      await new Promise((r) => sleeper.on('exit', r));
      // The sleeper leaves the cgroup as it exits; the reaper takes the rest.
      await new Promise((r) => setTimeout(r, 100));
      sandbox.reapStaleCgroups(`reap-${process.pid}-`, 0);
    }
    for (const c of CONTROLLERS) for (const id of [stale, busy]) expect(existsSync(dirOf(c, id))).toBe(false);
  });
});
