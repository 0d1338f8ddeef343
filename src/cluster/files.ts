import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { BerthError } from '../domain/errors.js';

/**
 * What a machine keeps of its cluster in `<data-dir>/cluster/` (0700, files 0600): the CA (its key
 * on servers only), this machine's leaf and key, its credential, and `cluster.json`, which is what
 * lets a restart with the same data dir rejoin by itself.
 */
export interface ClusterState {
  role: 'server' | 'agent';
  name: string;
  advertise: string;
  /** This machine's etcd member, if it runs one. */
  member: { name: string; client_port: number; peer_port: number } | null;
  /** Client URLs of the etcd voters, refreshed from the member list at every start. */
  endpoints: string[];
  /** The servers' API URLs this machine last knew (an agent's way back in). */
  servers: string[];
  /** The apps' domain, from the join (an agent's router needs it). */
  domain?: string;
}

const stateSchema = z.object({
  role: z.enum(['server', 'agent']),
  name: z.string().min(1),
  advertise: z.string().min(1),
  member: z.object({ name: z.string(), client_port: z.number().int(), peer_port: z.number().int() }).nullable(),
  endpoints: z.array(z.string().url()),
  servers: z.array(z.string()),
  domain: z.string().optional(),
});

export class ClusterFiles {
  readonly dir: string;

  constructor(dataDir: string) {
    this.dir = join(dataDir, 'cluster');
  }

  path(name: 'ca.crt' | 'ca.key' | 'node.crt' | 'node.key' | 'credential' | 'cluster.json' | 'etcd.log' | 'config.key'): string {
    return join(this.dir, name);
  }

  get etcdDir(): string {
    return join(this.dir, 'etcd');
  }

  exists(): boolean {
    return existsSync(this.path('cluster.json'));
  }

  read(name: 'ca.crt' | 'ca.key' | 'node.crt' | 'node.key' | 'credential' | 'config.key'): string {
    return readFileSync(this.path(name), 'utf8');
  }

  has(name: 'ca.key' | 'config.key'): boolean {
    return existsSync(this.path(name));
  }

  /** Written whole and renamed into place, 0600: a crash leaves the old file or the new one. */
  write(name: 'ca.crt' | 'ca.key' | 'node.crt' | 'node.key' | 'credential' | 'cluster.json' | 'config.key', content: string): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const tmp = `${this.path(name)}.tmp`;
    writeFileSync(tmp, content, { mode: 0o600 });
    renameSync(tmp, this.path(name));
  }

  state(): ClusterState {
    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(this.path('cluster.json'), 'utf8'));
    } catch (err) {
      throw new BerthError('cluster_state_unreadable', `${this.path('cluster.json')} cannot be read: ${(err as Error).message}`);
    }
    const parsed = stateSchema.safeParse(raw);
    if (!parsed.success) throw new BerthError('cluster_state_unreadable', `${this.path('cluster.json')} is not a Berth cluster state: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
    return parsed.data;
  }

  saveState(s: ClusterState): void {
    this.write('cluster.json', `${JSON.stringify(s, null, 2)}\n`);
  }

  /** The key app configs and releases are sealed with (servers only), or undefined. */
  configKey(): Buffer | undefined {
    return this.has('config.key') ? Buffer.from(this.read('config.key').trim(), 'base64') : undefined;
  }

  tls(): { ca: string; cert: string; key: string } {
    return { ca: this.read('ca.crt'), cert: this.read('node.crt'), key: this.read('node.key') };
  }
}
