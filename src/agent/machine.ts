import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, hostname, totalmem } from 'node:os';
import { join } from 'node:path';
import { invalid } from '../domain/errors.js';
import type { MachineInfo } from '../domain/units.js';

/** This node's stable id, kept in the data dir so a restart is the same machine. */
export function machineId(dataDir: string, name?: string): string {
  const file = join(dataDir, 'machine-id');
  if (!existsSync(file)) writeFileSync(file, `${(name ?? hostname()).replace(/[^A-Za-z0-9-]/g, '-')}-${randomBytes(3).toString('hex')}\n`, { mode: 0o600 });
  return readFileSync(file, 'utf8').trim();
}

/** `k=v,k2=v2` as `berth agent --tags` takes them. */
export function parseTags(text: string | undefined): Record<string, string> {
  const tags: Record<string, string> = {};
  for (const pair of (text ?? '').split(',').filter((p) => p.trim() !== '')) {
    const m = /^\s*([A-Za-z0-9_.-]{1,63})=([A-Za-z0-9_.-]{0,63})\s*$/.exec(pair);
    if (!m?.[1]) throw invalid(`--tags must look like key=value,key2=value2, got "${pair}".`);
    tags[m[1]] = m[2] ?? '';
  }
  return tags;
}

export function localMachine(o: { dataDir: string; name?: string; address?: string; tags?: Record<string, string>; memoryBytes?: number }): MachineInfo {
  return {
    id: machineId(o.dataDir, o.name),
    name: o.name ?? hostname(),
    address: o.address ?? '127.0.0.1',
    tags: o.tags ?? {},
    capacity: { memoryBytes: o.memoryBytes ?? totalmem(), cpus: availableParallelism() },
  };
}
