import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { KEY_RECORDS, keys } from '../../src/domain/keys.js';

/** A unit key's last segment: `unitKey` of `<name>.<type>.<i>` at release `<n>`, restart generation `<r>`. */
const UNIT = '<name>.<type>.<i>@v<n>[-<r>]';

/**
 * Placeholder arguments for every builder in `keys`, in the spelling docs/keys.md uses. A builder
 * added without an entry here fails the first test, so a new key cannot skip the docs.
 */
const args: Record<string, string[]> = {
  all: [],
  platform: [],
  app: ['<app>'],
  allAppKeys: [],
  appKeys: ['<app>'],
  appNames: [],
  appName: ['<name>'],
  config: ['<app>'],
  appTags: ['<app>'],
  appLimits: ['<app>'],
  appUid: ['<app>'],
  uids: [],
  uid: ['<uid>'],
  collaborators: ['<app>'],
  collaborator: ['<app>', '<user>'],
  builds: ['<app>'],
  build: ['<app>', '<id>'],
  slugs: [],
  slug: ['<id>'],
  hostnames: [],
  hostname: ['<host>'],
  users: [],
  user: ['<id>'],
  email: ['<email>'],
  token: ['<sha256>'],
  sshKeys: ['<user>'],
  sshKey: ['<user>', '<id>'],
  fingerprint: ['<sha256>'],
  accessOf: ['<user>'],
  access: ['<user>', '<app>'],
  registration: [],
  bootstrapped: [],
  logSession: ['<sha256>'],
  releases: ['<app>'],
  release: ['<app>', '<v>'],
  restarts: ['<app>'],
  healthchecks: ['<app>'],
  formation: ['<app>'],
  domains: ['<app>'],
  domain: ['<app>', '<host>'],
  drains: ['<app>'],
  drain: ['<app>', '<id>'],
  machines: [],
  machine: ['<id>'],
  allUnits: [],
  unitsOn: ['<machine>'],
  unit: ['<machine>', UNIT],
  statuses: [],
  appStatuses: ['<name>'],
  status: [UNIT],
  allServices: [],
  services: ['<name>'],
  service: ['<name>', UNIT],
  routers: [],
  router: ['<id>'],
  allCerts: [],
  certs: ['<app>'],
  cert: ['<app>', '<id>'],
  routerSettings: [],
  routerSetting: ['<setting>'],
  allAppRouting: [],
  appRouting: ['<app>'],
  allMaintenance: [],
  maintenance: ['<app>'],
  clusterToken: [],
  clusterSettings: [],
  machineCredentials: [],
  machineCredential: ['<machine>'],
  servers: [],
  server: ['<machine>'],
  allSlugCopies: [],
  slugCopies: ['<sha256>'],
  slugCopy: ['<sha256>', '<machine>'],
  allRuns: [],
  runs: ['<app>'],
  run: ['<app>', '<dyno>'],
  runSlots: ['<app>'],
  runSlot: ['<app>', '<n>'],
  leader: ['<role>'],
  network: [],
  networkConfig: [],
  subnets: [],
  subnet: ['<a.b.c.d>/<len>'],
  ips: [],
  ip: ['<a.b.c.d>'],
};

/** Prefixes whose keys someone else completes: `Election` puts each candidate at `<prefix>/<lease>`. */
const completedBy: Record<string, string> = { leader: '/<lease>' };

function build(name: string): string {
  const params = args[name];
  if (!params) throw new Error(`keys.${name} has no placeholder arguments in test/domain/keys.test.ts`);
  const fn = keys[name as keyof typeof keys] as (...a: unknown[]) => string;
  // Release versions are numbers, zero-padded in the key.
  return fn(...params.map((p) => (p === '<v>' ? 0 : p))).replace('/0000000000', '/<v>') + (completedBy[name] ?? '');
}

interface Row {
  key: string;
  /** The first backticked word of the Value column: the record's name. */
  record: string | undefined;
}

describe('key layout', () => {
  const documented = readFileSync(join(import.meta.dirname, '../../docs/keys.md'), 'utf8');
  const rows: Row[] = [...documented.matchAll(/^\| `([^`]+)` \| ([^\n]*)$/gm)].map((m) => ({ key: m[1]!, record: /^`([^`]+)`/.exec(m[2]!)?.[1] }));
  const names = Object.keys(keys);
  const built = new Map(names.map((name) => [name, build(name)]));
  /** Builders whose output is a documented key; the rest must be prefixes of documented keys. */
  const keyBuilders = names.filter((name) => rows.some((r) => r.key === built.get(name)));

  it('has placeholder arguments for every builder, and nothing else', () => {
    expect(Object.keys(args).sort()).toEqual([...names].sort());
    expect(Object.keys(KEY_RECORDS).sort()).toEqual([...names].sort());
  });

  it('documents every key and prefix that code can build, in docs/keys.md', () => {
    for (const name of names) {
      const key = built.get(name)!;
      const match = rows.find((r) => r.key === key || r.key.startsWith(key));
      expect(match, `keys.${name} → ${key} is not in docs/keys.md`).toBeDefined();
    }
  });

  it('has a builder for every documented key', () => {
    for (const row of rows) {
      const builders = keyBuilders.filter((name) => built.get(name) === row.key);
      expect(builders, `${row.key} in docs/keys.md has no builder in src/domain/keys.ts`).not.toEqual([]);
    }
  });

  it('names, for every documented key, the record its builder is typed to', () => {
    for (const row of rows) {
      expect(row.record, `${row.key}: the Value column must start with the record's name in backticks`).toBeDefined();
      for (const name of keyBuilders.filter((n) => built.get(n) === row.key)) {
        expect(row.record, `${row.key} (keys.${name})`).toBe(KEY_RECORDS[name as keyof typeof KEY_RECORDS].name);
      }
    }
  });

  it('types every prefix to a record some key under it holds (or to untyped JSON, for a prefix over several)', () => {
    for (const name of names.filter((n) => !keyBuilders.includes(n))) {
      const record = KEY_RECORDS[name as keyof typeof KEY_RECORDS].name;
      if (record === 'JSON') continue;
      const under = rows.filter((r) => r.key.startsWith(built.get(name)!)).map((r) => r.record);
      expect(under, `keys.${name} (${built.get(name)}) is typed to ${record}`).toContain(record);
    }
  });

  it('orders releases numerically under a prefix range', () => {
    const sorted = [10, 9, 100, 2].map((v) => keys.release('web', v)).sort();
    expect(sorted.map((k) => Number(k.split('/').pop()))).toEqual([2, 9, 10, 100]);
  });

  it('refuses a segment that would escape its place in the layout', () => {
    expect(() => keys.app('a/b')).toThrow(/invalid key segment/);
    expect(() => keys.service('', 'web.1')).toThrow(/invalid key segment/);
  });
});
