import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * A lower component never imports a higher one. Each component lists the components it may use;
 * anything else found in an import fails here, naming the file and the import.
 */
const ALLOWED: Record<string, string[]> = {
  // The store's errors are domain errors (coded, with `retryable`); nothing else of the domain.
  store: [],
  domain: ['store'],
  loop: ['domain', 'store'],
  sandbox: ['domain', 'store'],
  // The overlay: subnet leases, namespaces, nftables; below whatever runs tenant code.
  network: ['domain', 'store', 'loop'],
  templater: ['domain', 'store', 'loop'],
  // The cluster's machinery: its CA and certificates, the join token, the etcd member Berth runs.
  cluster: ['domain', 'store', 'loop'],
  agent: ['domain', 'store', 'loop', 'sandbox', 'network'],
  scheduler: ['domain', 'store', 'loop'],
  router: ['domain', 'store', 'loop', 'templater'],
  builder: ['domain', 'store', 'loop', 'sandbox', 'network'],
  // One-off dynos run in an agent runtime; sizes and memory limits are the scheduler's vocabulary.
  controller: ['domain', 'store', 'loop', 'sandbox', 'network', 'cluster', 'builder', 'agent', 'scheduler'],
  node: ['domain', 'store', 'loop', 'sandbox', 'network', 'cluster', 'templater', 'agent', 'scheduler', 'router', 'builder', 'controller'],
  cli: ['domain', 'store', 'loop', 'sandbox', 'network', 'cluster', 'templater', 'agent', 'scheduler', 'router', 'builder', 'controller', 'node'],
};
const EXCEPTIONS = new Set(['store → domain/errors.ts']);

const SRC = resolve(import.meta.dirname, '../../src');

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(join(dir, e.name)) : /\.(c?ts|cjs)$/.test(e.name) ? [join(dir, e.name)] : []));
}

describe('component layering', () => {
  const components = readdirSync(SRC, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);

  it('knows every component folder under src/', () => {
    expect(components.filter((c) => !(c in ALLOWED))).toEqual([]);
  });

  it('has no import from a component that is not below', () => {
    const bad: string[] = [];
    for (const component of components) {
      for (const file of files(join(SRC, component))) {
        for (const m of readFileSync(file, 'utf8').matchAll(/(?:from|import)\s*\(?\s*'(\.[^']+)'/g)) {
          const target = relative(SRC, resolve(dirname(file), m[1] as string)).replace(/\.js$/, '.ts');
          const other = target.split('/')[0] ?? '';
          if (other === component || other.startsWith('..')) continue;
          if (ALLOWED[component]?.includes(other) || EXCEPTIONS.has(`${component} → ${target}`)) continue;
          bad.push(`${relative(SRC, file)} imports ${m[1]}`);
        }
      }
    }
    expect(bad).toEqual([]);
  });
});
