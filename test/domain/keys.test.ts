import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { keys } from '../../src/domain/keys.js';

/** Placeholder arguments in the spelling docs/keys.md uses. */
const args: Record<string, string[]> = {
  app: ['<app>'],
  appName: ['<name>'],
  config: ['<app>'],
  appTags: ['<app>'],
  appLimits: ['<app>'],
  appUid: ['<app>'],
  uid: ['<uid>'],
  collaborator: ['<app>', '<user>'],
  build: ['<app>', '<id>'],
  slug: ['<id>'],
  hostname: ['<host>'],
  user: ['<id>'],
  email: ['<email>'],
  token: ['<sha256>'],
  sshKey: ['<user>', '<id>'],
  fingerprint: ['<sha256>'],
  access: ['<user>', '<app>'],
  setting: ['<name>'],
  logSession: ['<id>'],
  release: ['<app>', '<v>'],
  formation: ['<app>'],
  restarts: ['<app>'],
  domain: ['<app>', '<host>'],
  drain: ['<app>', '<id>'],
  machine: ['<id>'],
  unit: ['<machine>', '<unit>@v<n>[-<r>]'],
  status: ['<unit>@v<n>[-<r>]'],
  service: ['<app>', '<unit>@v<n>[-<r>]'],
  router: ['<id>'],
  cert: ['<app>', '<id>'],
  appRouting: ['<app>'],
  routerSetting: ['<setting>'],
  leader: ['<role>'],
  run: ['<app>', '<dyno>'],
};

describe('key layout', () => {
  const documented = readFileSync(join(import.meta.dirname, '../../docs/keys.md'), 'utf8');
  const table = [...documented.matchAll(/^\| `([^`]+)` \|/gm)].map((m) => m[1]);

  it('documents every key that code can build, in docs/keys.md', () => {
    for (const [name, params] of Object.entries(args)) {
      const build = keys[name as keyof typeof keys] as (...a: unknown[]) => string;
      const key = build(...params.map((p) => (p === '<v>' ? 0 : p))).replace('/0000000000', '/<v>');
      const match = table.find((k) => k === key || k?.startsWith(`${key}/`));
      expect(match, `${name} → ${key} is not in docs/keys.md`).toBeDefined();
    }
    expect(table).toContain(keys.platform());
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
