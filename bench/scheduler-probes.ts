/**
 * What bench:scheduler asks of the host around the cluster it runs: whether an endpoint answers,
 * how much memory dynos hold, what a SIGKILLed agent left in the cgroup tree, and which warnings
 * the processes logged. No cluster state lives here.
 */
import { existsSync, readFileSync, readdirSync, rmdirSync } from 'node:fs';
import { connect } from 'node:net';
import { freemem } from 'node:os';
import { join } from 'node:path';
import { sleep } from './lib.js';

const CGROUP_ROOT = process.env.BERTH_CGROUP_ROOT ?? '/sys/fs/cgroup';

/** The bench's tiny app answers `ok <dyno>`. */
export async function answersHttp(ep: string): Promise<boolean> {
  const res = await fetch(`http://${ep}/`, { signal: AbortSignal.timeout(2000) }).catch(() => undefined);
  if (!res) return false;
  const body = await res.text().catch(() => '');
  return res.status === 200 && body.startsWith('ok ');
}

/** How many of `eps` answer HTTP, probed 50 at a time. */
export async function countAnswering(eps: string[]): Promise<number> {
  let ok = 0;
  for (let i = 0; i < eps.length; i += 50) ok += (await Promise.all(eps.slice(i, i + 50).map(answersHttp))).filter(Boolean).length;
  return ok;
}

/** Whether `address:port` accepts a TCP connection (within 2 s). */
export function connects(ep: string): Promise<boolean> {
  const at = ep.lastIndexOf(':');
  return new Promise((resolve) => {
    const s = connect({ host: ep.slice(0, at), port: Number(ep.slice(at + 1)) }, () => {
      s.end();
      resolve(true);
    });
    s.setTimeout(2000, () => {
      s.destroy();
      resolve(false);
    });
    s.on('error', () => resolve(false));
  });
}

/** MemAvailable from /proc/meminfo, in bytes: what the host could still give without swapping. */
export function memAvailable(): number {
  const m = /^MemAvailable:\s+(\d+) kB$/m.exec(readFileSync('/proc/meminfo', 'utf8'));
  return m ? Number(m[1]) * 1024 : freemem();
}

/** Sum of the memory cgroups' usage of these apps' dynos, and how many there are. */
export function dynoMemory(of: string[]): { count: number; bytes: number } {
  const root = join(CGROUP_ROOT, 'memory', 'berth');
  let count = 0;
  let bytes = 0;
  for (const entry of existsSync(root) ? readdirSync(root) : []) {
    if (!of.some((a) => entry.startsWith(`dyno-${a}.`))) continue;
    try {
      bytes += Number(readFileSync(join(root, entry, 'memory.usage_in_bytes'), 'utf8'));
      count++;
    } catch {
      // Gone meanwhile.
    }
  }
  return { count, bytes };
}

/**
 * A SIGKILLed agent cannot remove its dynos' cgroups (its dynos die with it, their cgroup dirs
 * stay). Removes what is left of this run's dyno cgroups, killing any process still in one.
 */
export async function removeLeftoverCgroups(apps: string[]): Promise<{ removed: number; killed: number }> {
  let removed = 0;
  const killed = new Set<number>();
  for (const ctl of ['pids', 'memory']) {
    const root = join(CGROUP_ROOT, ctl, 'berth');
    if (!existsSync(root)) continue;
    for (const entry of readdirSync(root)) {
      if (!apps.some((a) => entry.startsWith(`dyno-${a}.`))) continue;
      const cg = join(root, entry);
      for (let attempt = 0; attempt < 50; attempt++) {
        try {
          for (const pid of readFileSync(join(cg, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
            try {
              process.kill(Number(pid), 'SIGKILL');
              killed.add(Number(pid));
            } catch {
              // Exited meanwhile.
            }
          }
          rmdirSync(cg);
          removed++;
          break;
        } catch {
          if (!existsSync(cg)) break;
          await sleep(20);
        }
      }
    }
  }
  return { removed, killed: killed.size };
}

/** Warnings and errors in a process's pino output, counted by message. */
export function problems(stderr: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of stderr.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const rec = JSON.parse(line) as { level?: number; msg?: string; err?: string };
      if ((rec.level ?? 0) < 40) continue;
      const key = `${rec.level === 40 ? 'warn' : 'error'}: ${rec.msg ?? '?'}${rec.err ? ` (${rec.err.slice(0, 120)})` : ''}`;
      out.set(key, (out.get(key) ?? 0) + 1);
    } catch {
      // Not a log record.
    }
  }
  return out;
}
